"""Explainable deepfake face detector: the Gradio 6 UI and API (layout and event wiring only).

Run ``python app.py`` (settings: ``detector.settings``; ``GRADIO_SERVER_NAME`` /
``GRADIO_SERVER_PORT`` / ``GRADIO_SHARE`` are Gradio's). The tabs, checkboxes and sliders
are generated from the two registries (``detector.specs``, ``explainers``); every request
goes through :class:`analysis.AnalysisService` (verdicts, streamed maps, cache, report and
zip) and the page's text comes from :mod:`analysis.text`. Importing this module builds
nothing: ``app.demo`` is built on first access.

API (see the "Use via API" page and the README):

* ``/predict(image, detector, whole_image)`` -> JSON verdict(s), each with ``verdict``
  (fake/real/inconclusive), ``reliability`` and ``warnings``; ``consensus`` for "all";
* ``/explain(image, detector, methods, ig_steps, shap_samples, lime_samples, whole_image)`` ->
  (gallery of overlays, JSON report, zip). ``methods`` is a JSON object
  ``{method: {parameter: value}}``; a list of names with the three positional numbers is the
  deprecated form, kept for existing clients.

An omitted detector is the most reliable one (``detector.reliability.default_detector``).
``detector="all"`` ("Compare all") scores the image with every detector that has weights, most
reliable first, plus their combined verdict; explanations are then computed for the detector
picked in "Explain with" (UI), else the most reliable available one.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

try:  # Hugging Face ZeroGPU (imported before torch): only decorated calls get a GPU. No hard dependency.
    import spaces  # type: ignore # noqa: F401
except ImportError:
    pass

import gradio as gr  # noqa: E402

from analysis import ALL, AUTO, AnalysisService, Done, MapReady, VerdictsReady  # noqa: E402
from analysis import params as method_params  # noqa: E402
from analysis import text  # noqa: E402
from analysis import trust  # noqa: E402
from analysis.video_tab import build_video_tab  # noqa: E402
from detector.errors import DetectorError  # noqa: E402

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "examples"
#: Explanation jobs (UI runs, /explain) at once: 1, as the explainers hook into one shared model copy.
EXPLAIN_CONCURRENCY = 1
CSS = """
.verdict table { width: 100%; font-size: 0.92em; }
.verdict th { word-break: keep-all; overflow-wrap: normal; hyphens: none; }
/* Names and verdicts break only at spaces and hyphens (Gradio's Markdown breaks anywhere: "EfficientNet-Li / te0");
   the long reliability sentence may still break anywhere, so the table fits a 390-px phone. */
.verdict td { word-break: normal; overflow-wrap: normal; hyphens: manual; }
.verdict td:last-child { overflow-wrap: anywhere; }
@media (max-width: 480px) { #verdict th, #verdict td { padding: 6px 4px; } }
/* Examples gallery: as many ~120-px (phone: 90-px) thumbnails per row as fit, no inner scrollbar, each whole
   caption under its thumbnail. */
#examples [data-testid=block-label] { position: static; }
#examples .grid-wrap { min-height: 0; max-height: none; overflow-y: visible; }
#examples .grid-container { grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)); padding-top: 0; }
@media (max-width: 480px) { #examples .grid-container { grid-template-columns: repeat(auto-fill, minmax(90px, 1fr)); }
                            #examples .caption-label { font-size: 11px; } }
#examples .thumbnail-lg { aspect-ratio: auto; display: flex; flex-direction: column; }
#examples .thumbnail-lg > img { height: 110px; flex: none; }
#examples .caption-label { position: static; max-width: none; white-space: normal; overflow-wrap: anywhere;
                           border: 0; border-radius: 0; padding: 4px 5px; }
.method-info { font-size: 0.92em; }
#status p { margin: 0.2em 0; }
/* Gradio marks a cancelled job's outputs with a red "Error" badge (in 6.31, when Stop lands at some moments of the
   job). The analysis never raises into Gradio (its errors are written in #status), so on these outputs the badge
   can only mean "stopped", which #status says in words. */
#status .error, #verdict .error, #face-raw .error, #face-clahe .error, #map-grid .error, #zip .error,
#report .error, [id^="map-"] .error, [id^="info-"] .error { display: none !important; }
"""
_STATE: dict[str, Any] = {}


def service() -> AnalysisService:
    """The process's analysis service, built on first use from the environment's settings."""
    if "service" not in _STATE:
        from detector.settings import current

        _STATE["service"] = AnalysisService(current())
    return _STATE["service"]


def __getattr__(name: str) -> Any:
    """Lazy module attributes: ``demo`` (the Blocks), ``CACHE``, ``SETTINGS``, ``CONCURRENCY``."""
    if name == "demo":
        if "demo" not in _STATE:
            _STATE["demo"] = build(service())
        return _STATE["demo"]
    if name == "CACHE":
        return service().cache
    if name == "SETTINGS":
        return service().settings
    if name == "CONCURRENCY":
        return service().settings.concurrency
    raise AttributeError(f"module 'app' has no attribute {name!r}")


# ---------------------------------------------------------------- API handlers
def _api_error(e: Exception) -> gr.Error:
    if isinstance(e, DetectorError):
        return gr.Error(e.message, print_exception=False)
    if isinstance(e, KeyError):
        return gr.Error(str(e.args[0]) if e.args else str(e), print_exception=False)
    log.exception("internal error")
    return gr.Error(f"Internal error ({type(e).__name__}); the request was not completed. Try again.",
                    print_exception=False)


def api_predict(image: Any, detector: str | None = None, whole_image: bool = False) -> dict:
    """Verdict of one detector (default: the most reliable), or of every detector with weights ("all").

    Returns {"detector", "face_crop", "image_sha256", "results": [{model, display_name, label,
    p_fake, p_real, verdict, reliability, warnings, face, weights, timings_ms, notes}],
    "unavailable": {name: why}}, plus "label", "p_fake", "p_real", "verdict" at the top level
    for one detector and "consensus" for "all" (see the README's API section).
    """
    try:
        v = service().verdicts(image, detector or trust.available_default().name, not bool(whole_image))
    except Exception as e:
        raise _api_error(e) from None
    return trust.predict_json(v)


def api_explain(image: Any, detector: str | None = None, methods: Any = None, ig_steps: float | None = None,
                shap_samples: float | None = None, lime_samples: float | None = None,
                whole_image: bool = False) -> tuple[list, dict | None, str | None]:
    """Verdict(s) plus one saliency map per method.

    ``methods``: ``{method: {parameter: value}}`` (None: every method, default parameters), or
    (deprecated) a list of names whose parameters are ``ig_steps``, ``shap_samples``,
    ``lime_samples``. Returns (gallery of [overlay, "<method>: <display name>"] for the maps
    that could be computed, JSON report, zip with maps as PNG + .npy and report.json).
    """
    from explainers import METHOD_ORDER

    try:
        names, params = method_params.method_params(list(METHOD_ORDER) if methods is None else methods,
                                                    (ig_steps, shap_samples, lime_samples))
        done = None
        detector = detector or trust.available_default().name
        for ev in service().explain(image, detector, names, params, face_crop=not bool(whole_image)):
            done = ev if isinstance(ev, Done) else done
    except Exception as e:
        raise _api_error(e) from None
    maps = [(r.overlay, f"{r.method}: {r.display_name}") for r in done.results if r.overlay is not None
            and not r.error]
    return maps, done.report, done.zip_path


# ---------------------------------------------------------------- UI
def build(svc: AnalysisService) -> gr.Blocks:
    """The Blocks: layout from the registries, events wired to ``svc``."""
    from detector.specs import get_spec
    from detector.weights import weights_status
    from explainers import METHOD_ORDER

    status0, sliders = weights_status(), method_params.sliders()
    specs = [get_spec(n) for n in trust.detector_order()]  # most reliable first
    examples = text.example_files(EXAMPLES_DIR)
    info = {m: text.method_info(m) for m in METHOD_ORDER}
    choice = trust.available_default()

    with gr.Blocks(title="Deepfake face detector that explains itself", delete_cache=(3600, 3600),
                   fill_width=True) as demo:
        gr.Markdown(text.intro_md())
        weights_md = gr.Markdown(text.weights_overview(), elem_id="weights-status")
        with gr.Tabs() as tabs:
            with gr.Tab("Analyse", id="analyse"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=300):
                        image = gr.Image(
                            label="Photo or face crop (upload, drop, paste, webcam)", type="filepath",
                            sources=["upload", "webcam", "clipboard"], image_mode=None, height=300,
                            elem_id="input-image")
                        detector = gr.Radio(text.detector_choices(specs) + [("Compare all", ALL)],
                                            value=choice.name, label="Detector (most reliable first)",
                                            elem_id="detector")
                        gr.Markdown(text.default_note(choice), elem_id="detector-note")
                        methods = gr.CheckboxGroup([(info[m]["display_name"], m) for m in METHOD_ORDER],
                                                   value=list(METHOD_ORDER), label="Explanations", elem_id="methods")
                        whole = gr.Checkbox(False, label="Analyse whole image (no face detection)",
                                            info="For images that are already a tight face crop (like the dataset "
                                                 "examples), or when no face is found.", elem_id="whole-image")
                        with gr.Accordion("Advanced", open=False):
                            slider_boxes = [gr.Slider(s.tunable.minimum, s.tunable.maximum, value=s.default, step=1,
                                                      precision=0, label=s.tunable.label, elem_id=s.elem_id)
                                            for s in sliders]
                            explain_with = gr.Dropdown(
                                [("Most reliable available detector", AUTO)] + text.detector_choices(specs),
                                value=AUTO, label="Explain with (Compare all)", elem_id="explain-with",
                                info="With 'Compare all', maps are computed for this detector.")
                        with gr.Row():
                            run = gr.Button("Analyse", variant="primary", elem_id="run")
                            stop = gr.Button("Stop", variant="stop", elem_id="stop")
                        expected = gr.Markdown(text.expected_time_md(svc, choice.name, AUTO, list(METHOD_ORDER)),
                                               elem_id="expected-time", elem_classes=["method-info"])
                    with gr.Column(scale=6, min_width=320):
                        status = gr.Markdown("", elem_id="status")
                        verdict = gr.Markdown("", elem_id="verdict", elem_classes=["verdict"])
                        with gr.Row():
                            face_raw = gr.Image(label="Face crop (before CLAHE)", interactive=False, height=180,
                                                elem_id="face-raw", format="png", buttons=["download"])
                            face_eq = gr.Image(label="After CLAHE (what the model sees)", interactive=False,
                                               height=180, elem_id="face-clahe", format="png", buttons=["download"])
                        gr.Markdown(text.CLAHE_LINE, elem_classes=["method-info"])
                        with gr.Tabs(elem_id="map-tabs"):
                            with gr.Tab("Side by side", id="grid", render_children=True):
                                grid_img = gr.Image(label="All maps", show_label=False, interactive=False,
                                                    elem_id="map-grid",
                                                    format="png", buttons=["download", "fullscreen"])
                            tab_imgs, tab_mds = {}, {}
                            for m in METHOD_ORDER:
                                with gr.Tab(info[m]["display_name"], id=f"tab-{m}", render_children=True):
                                    tab_imgs[m] = gr.Image(label=info[m]["display_name"], interactive=False,
                                                           elem_id=f"map-{m}", format="png",
                                                           buttons=["download", "fullscreen"])
                                    tab_mds[m] = gr.Markdown(info[m].get("meaning", ""), elem_id=f"info-{m}",
                                                             elem_classes=["method-info"])
                        zip_file = gr.DownloadButton("Download maps and report (zip)", value=None, elem_id="zip",
                                                     size="md")
                        with gr.Accordion("Report (JSON)", open=False):
                            report_json = gr.JSON(elem_id="report")
                # Below the result (on a phone the columns stack: input, result, then examples).
                # A gallery, not gr.Examples: in Gradio 6.31 example_labels replace the thumbnails with text.
                ex = None
                if examples:
                    ex = gr.Gallery(text.example_gallery(examples), columns=3, height="auto", allow_preview=False,
                                    interactive=False, object_fit="cover", buttons=[], elem_id="examples",
                                    label="Examples (click one to run it; true label in the caption)")
                else:
                    gr.Markdown("*No example images in `examples/` yet.*")
                gr.Markdown(f"Images up to {svc.settings.max_pixels / 1e6:.0f} megapixels and "
                            f"{svc.settings.max_file_size}. Uploads are kept only in Gradio's temporary "
                            "files (deleted after about an hour).")
            video_tab = build_video_tab(svc, image, tabs=tabs, whole_image=whole)
            with gr.Tab("About", id="about"):
                about_md = gr.Markdown(text.about_md(status0), elem_id="about")

        # Hidden components that only define the API endpoints' signatures.
        with gr.Column(visible=False):
            api_trigger = gr.Button("api")
            api_detector = gr.Dropdown([n for n in trust.detector_order()] + [ALL], value=None, label="detector",
                                       allow_custom_value=True, info="default: the most reliable detector")
            api_methods = gr.JSON(label="methods")
            api_legacy = [gr.Number(None, label=f"{m} {k} (deprecated)") for m, k in method_params.LEGACY_POSITIONAL]
            api_verdict = gr.JSON(label="verdicts")
            api_maps = gr.Gallery(label="maps", format="png")
            api_report = gr.JSON(label="report")
            api_zip = gr.File(label="zip")

        outputs = [status, verdict, face_raw, face_eq, grid_img, zip_file, report_json,
                   *tab_imgs.values(), *tab_mds.values()]

        def analyse(data: dict, progress=gr.Progress()):
            # Every yield carries the full state: Gradio 6.31 drops a value sent to a component in a
            # not-yet-opened tab when a later yield of the same event omits that component.
            meths = [m for m in METHOD_ORDER if m in (data[methods] or [])]
            st = {status: "Scoring the image…", verdict: "", face_raw: None, face_eq: None, grid_img: None,
                  zip_file: None, report_json: None}
            for m in METHOD_ORDER:
                st[tab_imgs[m]] = None
                st[tab_mds[m]] = "Waiting for the verdict…" if m in meths else "Not selected."
            yield dict(st)
            t0 = time.perf_counter()
            try:
                params = method_params.slider_params([data[b] for b in slider_boxes])
                for ev in svc.explain(data[image], data[detector], meths, params, not data[whole],
                                      data[explain_with], stream_grid=True, progress=progress):
                    if isinstance(ev, VerdictsReady):
                        raw_label, eq_label = text.crop_labels(ev.verdicts)
                        st.update({verdict: text.verdict_md(ev.verdicts, ev.explained.model),
                                   face_raw: gr.update(value=ev.explained.face_raw, label=raw_label),
                                   face_eq: gr.update(value=ev.explained.face, label=eq_label),
                                   status: ("Computing maps…" if meths else "Done.")
                                   + "".join(" " + n for n in ev.notes)})
                        st.update({tab_mds[m]: "Computing…" for m in meths})
                    elif isinstance(ev, MapReady):
                        res = ev.result
                        st.update({tab_imgs[res.method]: None if res.error else res.overlay,
                                   tab_mds[res.method]: text.method_md(res, ev.cached), grid_img: ev.grid,
                                   status: f"{ev.done} of {ev.total} maps done ({time.perf_counter() - t0:.1f} s)…"})
                    else:
                        st.update({status: text.done_status(ev.report, time.perf_counter() - t0),
                                   report_json: ev.report, zip_file: ev.zip_path, grid_img: ev.grid})
                    yield dict(st)
            except DetectorError as e:
                gr.Warning(e.message)
                st[status] = f"**Error:** {e.message}"
                st.update({tab_mds[m]: "Not run." for m in meths
                           if st[tab_mds[m]] in ("Waiting for the verdict…", "Computing…")})
                yield dict(st)
            except Exception as e:  # never show a stack trace; the log has it
                log.exception("analysis failed")
                st[status] = (f"**Error:** something went wrong ({type(e).__name__}). The error was logged; "
                              "try again or with another image.")
                yield dict(st)

        ui_inputs = {image, detector, methods, *slider_boxes, whole, explain_with}
        # "always_last": clicks while a job runs collapse into at most one follow-up run (served from the
        # cache). "once" would fit too, but in Gradio 6.31 a job stopped during its first step leaves the
        # button ignoring every later click.
        run_kw = dict(api_visibility="private", trigger_mode="always_last", concurrency_limit=EXPLAIN_CONCURRENCY,
                      concurrency_id="explain", show_progress="minimal", preprocess=False)
        running = [run.click(analyse, ui_inputs, outputs, **run_kw)]
        if ex is not None:
            def pick(evt: gr.SelectData) -> tuple[str, bool]:
                return text.example_inputs(examples, evt.index)

            running.append(ex.select(pick, None, [image, whole], api_visibility="private", queue=False,
                                     show_progress="hidden").then(analyse, ui_inputs, outputs, **run_kw))
        running += [ev_.then(analyse, ui_inputs, outputs, **run_kw)  # a video frame sent to the Analyse tab
                    for ev_ in (video_tab.send_event, video_tab.pick_event)]
        stop.click(lambda: text.STOPPED, None, status, cancels=running, api_visibility="private", queue=False,
                   show_progress="hidden")

        def expect(det: str, meths: list, with_: str) -> str:
            return text.expected_time_md(svc, det, with_, [m for m in METHOD_ORDER if m in (meths or [])])

        for comp in (detector, methods, explain_with):
            comp.change(expect, [detector, methods, explain_with], expected, api_visibility="private", queue=False,
                        show_progress="hidden")
        for ev_ in running:
            ev_.then(expect, [detector, methods, explain_with], expected, api_visibility="private", queue=False,
                     show_progress="hidden")

        def refresh():
            return text.weights_overview(), text.about_md(weights_status())

        demo.load(refresh, None, [weights_md, about_md], api_visibility="private", queue=False,
                  show_progress="hidden")
        api_trigger.click(api_predict, [image, api_detector, whole], api_verdict, api_name="predict",
                          concurrency_limit=svc.settings.concurrency, concurrency_id="verdict", preprocess=False)
        api_trigger.click(api_explain, [image, api_detector, api_methods, *api_legacy, whole],
                          [api_maps, api_report, api_zip], api_name="explain", concurrency_limit=EXPLAIN_CONCURRENCY,
                          concurrency_id="explain", preprocess=False)
    demo.queue(default_concurrency_limit=1, max_size=svc.settings.queue_size)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` (theme, css, limits); server name/port come from GRADIO_* env vars."""
    return {"theme": gr.themes.Soft(), "css": CSS, "max_file_size": service().settings.max_file_size,
            "allowed_paths": [str(EXAMPLES_DIR)], "show_error": False}


if __name__ == "__main__":
    from analysis.memory import limit_malloc_arenas

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_malloc_arenas(service().settings.malloc_arenas)
    ui = __getattr__("demo")  # built before the preload thread starts importing the model libraries
    if service().settings.preload:
        service().start_preload()
    ui.launch(**launch_kwargs())
