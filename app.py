"""Explainable deepfake face detector: Gradio 6 UI and API.

Run ``python app.py`` (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` / ``GRADIO_SHARE``
are honoured). This file only lays out the UI from the two registries (detector specs,
explainers) and calls library code: verdicts come from :mod:`detector.predict`, maps
from :mod:`explainers.panel`, caching from :mod:`explainers.cache` and the downloadable
report from :mod:`explainers.report`. Importing it builds the UI but loads no model.

API (see the "Use via API" page):

* ``/predict`` (image, detector, whole_image) -> JSON verdict(s);
* ``/explain`` (image, detector, methods, ig_steps, shap_samples, lime_samples,
  whole_image) -> (gallery of overlays, JSON report, zip).

``detector="all"`` ("Compare all") scores the image with every detector that has
weights; explanations are then computed for one detector: the one picked in
"Explain with" (UI), else the first available in registry order (VGGFace16,
DenseNet-121, Custom CNN).

Serving: verdicts (/predict) run up to ``DEEPFAKE_CONCURRENCY`` (2) at once;
explanations (UI runs, /explain) one at a time on a private copy of the model, so a
verdict never waits for a minute-long explanation. Results are cached per (image
sha256, detector, method, parameters) (``DEEPFAKE_CACHE_ENTRIES`` / ``DEEPFAKE_CACHE_MB``).
Other settings: ``DEEPFAKE_MAX_FILE_SIZE`` (20mb), ``DEEPFAKE_QUEUE_SIZE`` (64),
``DEEPFAKE_PRELOAD=0`` (do not load the detectors and import the explainer libraries at
start-up), ``DEEPFAKE_MALLOC_ARENAS`` (glibc arena cap, default 2), and the pixel limit
``DEEPFAKE_MAX_PIXELS`` of :mod:`detector.preprocess`.
"""
from __future__ import annotations

import base64
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

try:  # Hugging Face ZeroGPU (imported before torch): only decorated calls get a GPU. No hard dependency.
    import spaces as _spaces  # type: ignore
except ImportError:
    _spaces = None
ON_ZERO_GPU = _spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() == "true"

import gradio as gr  # noqa: E402

from detector.errors import DetectorError, InputError, WeightsError  # noqa: E402
from detector.preprocess import MAX_PIXELS, load_image  # noqa: E402
from detector.specs import get_spec, list_specs  # noqa: E402
from detector.weights import hub_failures, hub_repo_for, load_model, weights_status  # noqa: E402
from explainers import METHOD_ORDER, get_explainer  # noqa: E402
from explainers import report as reports  # noqa: E402
from explainers.cache import (ResultCache, cached_panel, cached_predict, limit_malloc_arenas, release_memory,  # noqa: E402
                              source_sha256)

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "examples"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
ALL = "all"
AUTO = "auto"
#: Verdict requests (/predict) served at once; they run beside an explanation, on their own model copy.
CONCURRENCY = int(os.environ.get("DEEPFAKE_CONCURRENCY", 2))
#: Explanation jobs (UI runs, /explain) at once: 1, as the explainers hook into one shared model copy.
EXPLAIN_CONCURRENCY = 1
MAX_FILE_SIZE = os.environ.get("DEEPFAKE_MAX_FILE_SIZE", "20mb")
REPORT_DIR = Path(tempfile.gettempdir()) / "deepfake-app-reports"

SPECS = list_specs()
CACHE = ResultCache()

# ---------------------------------------------------------------- optional ZeroGPU
def _gpu(fn):
    """``@spaces.GPU`` on ZeroGPU, identity elsewhere."""
    return _spaces.GPU(duration=120)(fn) if ON_ZERO_GPU else fn


# ---------------------------------------------------------------- registries -> UI
def _method_info(name: str) -> dict[str, Any]:
    try:
        ex = get_explainer(name)
        return {"display_name": ex.display_name, "meaning": ex.meaning, "defaults": dict(ex.default_params)}
    except Exception as e:  # an explainer that cannot even be built shows why in its tab
        return {"display_name": name, "meaning": "", "defaults": {}, "error": f"{type(e).__name__}: {e}"}


METHODS = {m: _method_info(m) for m in METHOD_ORDER}
#: (method, parameter key, label, minimum, maximum, fallback default) of the "Advanced" sliders.
SLIDERS = [
    ("integrated_gradients", "n_steps", "Integrated Gradients: steps", 2, 128, 12),
    ("shap", "nsamples", "SHAP: samples", 8, 1024, 16),
    ("lime", "num_samples", "LIME: samples", 16, 2000, 96),
]


def _slider_default(method: str, key: str, fallback: int) -> int:
    return int(METHODS.get(method, {}).get("defaults", {}).get(key, fallback))


def _params(ig_steps: float, shap_samples: float, lime_samples: float) -> dict[str, dict[str, int]]:
    """Per-method parameters from the "Advanced" sliders (clamped to the sliders' ranges)."""
    out = {}
    for (m, k, *_), v in zip(SLIDERS, (ig_steps, shap_samples, lime_samples)):
        v = _clamp(v, m)
        if v is not None:
            out[m] = {k: v}
    return out


def _display(name: str) -> str:
    return get_spec(name).display_name


def _weights_overview() -> str:
    """One line for the top of the page: which detectors cannot run yet (details in "About")."""
    status = weights_status()
    lines = []
    failed = hub_failures()
    local = [s for s in SPECS if hub_repo_for(s) in failed]
    if local:
        repos = ", ".join(f"`{hub_repo_for(s)}`" for s in local)
        reason = failed[hub_repo_for(local[0])]
        lines.append(f"The Hub could not be used for {repos} ({reason}); those detectors run on their local "
                     "checkpoints.")
    missing = [s for s in SPECS if status.get(s.name) and not hub_repo_for(s)]
    if missing:
        names = ", ".join(f"**{s.display_name}**" for s in missing)
        rest = "The other detectors work." if len(missing) < len(SPECS) else "No detector can run yet."
        lines.append(f"Not available yet: {names} (no weights in `{missing[0].local_dir.parent.name}/`; "
                     f"see the About tab). {rest}")
    return "\n\n".join(lines)


def _default_detector() -> str:
    status = weights_status()
    return next((s.name for s in SPECS if status.get(s.name) is None), SPECS[0].name)


def _example_files() -> list[Path]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in EXAMPLES_DIR.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


#: File-name prefixes of examples taken from the datasets: those images are already face crops and
#: the detectors were trained and evaluated on them whole, so they run in "whole image" mode.
DATASET_SOURCES = ("gan140k", "dfdc")


def _example_tokens(path: Path) -> list[str]:
    return [t for t in re.split(r"[_\-\s.]+", path.stem.lower()) if t]


def _example_label(path: Path) -> str:
    """E.g. ``dfdc_fake_xxx.jpg`` -> "dfdc · true label: fake"."""
    tokens = _example_tokens(path)
    truth = "fake" if "fake" in tokens else "real" if "real" in tokens else "unknown"
    source = tokens[0] if tokens and tokens[0] not in ("fake", "real") else "photo"
    return f"{source} · true label: {truth}"


def _example_is_crop(path: Path) -> bool:
    tokens = _example_tokens(path)
    return bool(tokens) and (tokens[0] in DATASET_SOURCES or "crop" in tokens)


# ---------------------------------------------------------------- formatting
def _pct(p: float) -> str:
    return f"{p:.3f}"


def _verdict_md(verdicts: list, unavailable: dict[str, str], explained: str | None) -> str:
    head = verdicts[0]
    badge = head.label.upper()
    title = (f"### Verdict: {badge} according to {_display(head.model)} (p(fake) = {_pct(head.p_fake)})"
             if len(verdicts) == 1 else f"### Verdicts of {len(verdicts)} detectors")
    rows = ["| Detector | Verdict | p(fake) | p(real) |", "|---|---|---|---|"]
    for p in verdicts:
        rows.append(f"| {_display(p.model)} | **{p.label.upper()}** | {_pct(p.p_fake)} | {_pct(p.p_real)} |")
    for name in unavailable:
        rows.append(f"| {_display(name)} | not available (no weights) | | |")
    notes = sorted({n for p in verdicts for n in p.notes})
    weights = "; ".join(f"{_display(p.model)} `{p.weights}`" for p in verdicts)
    out = [title, "", *rows, "",
           "Probabilities are temperature-calibrated on validation data. A score is evidence, not proof. "
           f"Weights: {weights}."]
    if explained and len(verdicts) > 1:
        out.append(f"Maps below explain **{_display(explained)}**.")
    if notes:
        out += ["", "**Notes:** " + " ".join(notes)]
    return "\n".join(out)


def _method_md(res, cached: bool) -> str:
    info = METHODS.get(res.method, {})
    if res.error:
        return f"**{res.display_name} could not run.**\n\n{res.error}"
    a = res.attribution
    lines = []
    f = res.faithfulness
    if getattr(res, "pending", False):
        lines.append("**Faithfulness score:** computing…")
    elif f and f.get("score") is not None:
        lines.append(f"**Faithfulness score:** {f['score']:+.3f} (insertion AUC − deletion AUC; higher = the map "
                     f"points at pixels the detector really relies on). {f.get('meaning', '')}")
    else:
        lines.append("**Faithfulness score:** not computed.")
    runtime = f"{a.runtime_s:.2f} s" if a is not None and a.runtime_s is not None else "?"
    params = ", ".join(f"{k}={v}" for k, v in (a.params or {}).items()) if a is not None else ""
    lines.append(f"**Runtime:** {runtime}{' (cached result)' if cached else ''}"
                 + (f" · **Parameters:** {params}" if params else ""))
    if a is not None and a.notes:
        lines.append("**Notes:** " + " ".join(a.notes))
    if info.get("meaning"):
        lines.append(f"*What it shows:* {info['meaning']}")
    return "\n\n".join(lines)


def _grid(face, results: dict) -> Any:
    from explainers.render import grid

    # The overlays carry their own title, so the grid's tile titles stay empty.
    items = [("", r.overlay) for m in METHOD_ORDER if m in results
             for r in [results[m][0]] if r.overlay is not None and not r.error]
    if not items:
        return None
    try:
        return grid(face, items)
    except Exception:  # the tabs still show each map
        log.exception("side-by-side grid failed")
        return None


# ---------------------------------------------------------------- analysis (no UI)
def _image_source(payload: Any) -> tuple[str | bytes, str]:
    """(path or bytes, name) of the uploaded image.

    Events that take the image run with ``preprocess=False``: ``gr.Image`` would decode
    and re-encode the file with PIL first and fail with a generic error on a non-image,
    while the detector's loader (EXIF, alpha, 16-bit, pixel limit) says what is wrong.
    Gradio has already moved the upload into its cache and checked the path.
    """
    if payload is None:
        raise InputError("Upload an image first (or click an example).", "no_image")
    if isinstance(payload, (str, Path)):
        return str(payload), Path(payload).name
    get = payload.get if isinstance(payload, dict) else lambda k, d=None: getattr(payload, k, d)
    url, path = get("url") or "", get("path")
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1]), get("orig_name") or "pasted image"
        except (IndexError, ValueError):
            raise InputError("The pasted image could not be decoded.", "not_image") from None
    if not path:
        raise InputError("The upload did not arrive; please try again.", "no_image")
    return str(path), get("orig_name") or Path(path).name


def _choice(value: Any, allowed: list[str], what: str) -> str:
    if value not in allowed:
        raise InputError(f"Unknown {what} {value!r}; choose one of: {', '.join(allowed)}.", "bad_choice")
    return value


def _clamp(value: Any, method: str) -> int | None:
    for m, _, label, lo, hi, _fb in SLIDERS:
        if m == method:
            if value is None or value == "":
                return None
            try:
                return int(min(max(float(value), lo), hi))
            except (TypeError, ValueError):
                raise InputError(f"{label} must be a number, got {value!r}.", "bad_param") from None
    return None


@_gpu
def _verdicts(source: str | bytes, sha: str, detector: str, face_crop: bool) -> tuple[list, dict[str, str]]:
    """Verdicts of one detector (errors raise) or of all (missing weights are listed)."""
    _await_models()
    detector = _choice(detector, [s.name for s in SPECS] + [ALL], "detector")
    names = [s.name for s in SPECS] if detector == ALL else [detector]
    loaded_img = []

    def load():  # decode once, only if some verdict is not cached
        if not loaded_img:
            loaded_img.append(load_image(source))
        return loaded_img[0]

    verdicts, unavailable = [], {}
    for name in names:
        try:
            verdicts.append(cached_predict(CACHE, sha, name, face_crop, load)[0])
        except WeightsError as e:
            if detector != ALL:
                raise
            unavailable[name] = e.message
    if not verdicts:
        raise WeightsError("No detector has weights yet: " + " ".join(unavailable.values()))
    return verdicts, unavailable


@_gpu
def _panel(sha: str, pred, methods: list[str], params: dict, face_crop: bool) -> Iterator[tuple[Any, bool]]:
    _await_preload()
    lm = load_model(pred.model)
    computed = False
    try:
        for res, cached in cached_panel(CACHE, sha, pred, lm, methods, params=params, face_crop=face_crop,
                                        preview_first=True):
            computed |= not cached
            yield res, cached
    finally:
        if computed:
            release_memory()


_PRELOAD: threading.Thread | None = None  #: set by ``python app.py``
#: Set by the start-up thread once every detector with weights is loaded (phase 1 of 2).
_MODELS_READY = threading.Event()


def _await_models() -> None:
    """Verdict requests wait only for the detectors (phase 1), not for the explainer libraries."""
    t = _PRELOAD
    if t is not None and t is not threading.current_thread():
        while t.is_alive() and not _MODELS_READY.wait(0.1):
            pass


def _await_preload() -> None:
    """Explanation requests wait for the whole start-up: two threads importing the same
    libraries at once can deadlock."""
    t = _PRELOAD
    if t is not None and t.is_alive() and t is not threading.current_thread():
        t.join()


def preload_explainer_libraries() -> None:
    """Load every detector whose weights are available, then import the explainers' optional
    libraries (captum, zennit, shap, lime...) ahead of time.

    ``python app.py`` runs this in a background thread at start-up (``DEEPFAKE_PRELOAD=0``
    turns it off). Verdicts wait only for the first phase (:func:`_await_models`), so the
    first verdict after start does not pay for the explainer imports; explanations wait for
    both (:func:`_await_preload`). The server's memory then does not jump on the first
    request. Importing ``app`` does not call it and loads no model.
    """
    import importlib

    try:
        for lib in ("timm", "detector.models", "detector.predict"):
            importlib.import_module(lib)
        status = weights_status()
        for s in SPECS:
            if status.get(s.name) is None or hub_repo_for(s):
                try:
                    lm = load_model(s.name)
                    log.info("loaded %s from %s", s.name, lm.source)
                except DetectorError as e:  # its verdict will report the error
                    log.warning("detector %s unavailable: %s", s.name, e.message)
    finally:
        _MODELS_READY.set()
    for m in METHOD_ORDER:
        for lib in getattr(get_explainer(m), "requires", ()):
            try:
                importlib.import_module(lib)
            except Exception as e:  # the method's tab will say what is missing
                log.info("preloading %s for %s failed: %s", lib, m, e)


def _pick_explained(verdicts: list, explain_with: str | None) -> tuple[Any, list[str]]:
    by_name = {p.model: p for p in verdicts}
    if explain_with and explain_with != AUTO:
        if explain_with in by_name:
            return by_name[explain_with], []
        return verdicts[0], [f"{_display(explain_with)} is not available; maps explain {_display(verdicts[0].model)}."]
    return verdicts[0], []


def _write_zip(sha: str, report: dict, pred, results: list, grid_img) -> str:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in REPORT_DIR.glob("*.zip"):  # keep our own temp files for an hour at most
        try:
            if now - old.stat().st_mtime > 3600:
                old.unlink()
        except OSError:
            pass
    dest = REPORT_DIR / f"deepfake-report-{sha[:12]}-{pred.model}-{int(now * 1000)}.zip"
    return str(reports.write_zip(report, dest, face_raw=pred.face_raw, face=pred.face, results=results,
                                 side_by_side=grid_img))


def _analysis(image, detector, methods, params, face_crop, explain_with=None, progress=None) -> Iterator[tuple]:
    """The whole analysis as events: ("verdicts", ...), ("result", ...) per method, ("done", ...)."""
    source, name = _image_source(image)
    sha = source_sha256(source)
    methods = [m for m in METHOD_ORDER if m in (methods or [])]
    if progress:
        progress(0.0, desc="Scoring the image")
    verdicts, unavailable = _verdicts(source, sha, detector, bool(face_crop))
    pred, notes = _pick_explained(verdicts, explain_with)
    yield ("verdicts", verdicts, unavailable, pred, notes)
    results: dict[str, tuple[Any, bool]] = {}
    if methods:
        for res, cached in _panel(sha, pred, methods, params, bool(face_crop)):
            results[res.method] = (res, cached)
            if progress and not res.pending:
                progress((sum(1 for r, _ in results.values() if not r.pending), len(methods)),
                         desc=f"{res.display_name} done", unit="maps")
            yield ("result", res, cached, results)
    ordered = [results[m][0] for m in METHOD_ORDER if m in results]
    grid_img = _grid(pred.face, results)
    spec = get_spec(pred.model)
    report = reports.build_report(
        image_sha256=sha, image_name=name, face_crop=bool(face_crop),
        verdicts=[(p, _display(p.model)) for p in verdicts], explained_with=pred.model if methods else None,
        target=(spec.label_names.index(pred.label), pred.label) if methods else None, results=ordered,
        cached_methods=[m for m, (_, c) in results.items() if c], unavailable=unavailable,
        params={m: params.get(m, {}) for m in methods}, notes=notes)
    zip_path = _write_zip(sha, report, pred, ordered, grid_img)
    yield ("done", report, zip_path, grid_img)


# ---------------------------------------------------------------- API handlers
def _api_error(e: Exception) -> gr.Error:
    if isinstance(e, DetectorError):
        return gr.Error(e.message, print_exception=False)
    if isinstance(e, KeyError):
        return gr.Error(str(e.args[0]) if e.args else str(e), print_exception=False)
    log.exception("internal error")
    return gr.Error(f"Internal error ({type(e).__name__}); the request was not completed. Try again.",
                    print_exception=False)


def api_predict(image, detector: str, whole_image: bool = False) -> dict:
    """Verdict of one detector, or of every detector with weights when detector is "all".

    Returns {"detector", "face_crop", "image_sha256", "results": [{model, display_name,
    label, p_fake, p_real, face, weights, timings_ms, notes}], "unavailable": {name: why}}
    plus "label", "p_fake", "p_real" at the top level when one detector was asked for.
    """
    try:
        source, _ = _image_source(image)
        sha = source_sha256(source)
        verdicts, unavailable = _verdicts(source, sha, detector, not bool(whole_image))
    except Exception as e:
        raise _api_error(e) from None
    out = {"detector": detector, "face_crop": not bool(whole_image), "image_sha256": sha,
           "results": [reports.verdict_record(p, _display(p.model)) for p in verdicts], "unavailable": unavailable}
    if detector != ALL:
        out.update({"label": verdicts[0].label, "p_fake": verdicts[0].p_fake, "p_real": verdicts[0].p_real})
    return out


def api_explain(image, detector: str, methods: list[str], ig_steps: float, shap_samples: float,
                lime_samples: float, whole_image: bool = False):
    """Verdict(s) plus one saliency map per method.

    Returns (gallery of [overlay image, "<method>: <display name>"] for the maps that
    could be computed, JSON report (verdicts, per-method status/error/faithfulness/
    runtime/params/notes), zip with maps as PNG + .npy and report.json).
    """
    report, zip_path, maps = None, None, {}
    try:
        for ev in _analysis(image, detector, methods, _params(ig_steps, shap_samples, lime_samples),
                            not bool(whole_image)):
            if ev[0] == "result" and ev[1].overlay is not None and not ev[1].error:
                maps[ev[1].method] = (ev[1].overlay, f"{ev[1].method}: {ev[1].display_name}")
            elif ev[0] == "done":
                report, zip_path = ev[1], ev[2]
    except Exception as e:
        raise _api_error(e) from None
    return [maps[m] for m in METHOD_ORDER if m in maps], report, zip_path


# ---------------------------------------------------------------- UI
CSS = """
.verdict table { width: 100%; font-size: 0.92em; }
.method-info { font-size: 0.92em; }
#status p { margin: 0.2em 0; }
"""


def build() -> gr.Blocks:
    status0 = weights_status()
    examples = _example_files()
    method_choices = [(METHODS[m]["display_name"], m) for m in METHOD_ORDER]
    detector_choices = [(s.display_name, s.name) for s in SPECS] + [("Compare all", ALL)]

    with gr.Blocks(title="Deepfake face detector that explains itself", delete_cache=(3600, 3600),
                   fill_width=True) as demo:
        gr.Markdown("# Deepfake face detector that explains itself\n"
                    "Upload a face photo. Three detectors give a calibrated verdict; six attribution methods show "
                    "which pixels drove it. Evidence, not proof: see the **About** tab for the limits.")
        weights_md = gr.Markdown(_weights_overview(), elem_id="weights-status")
        with gr.Tabs():
            with gr.Tab("Analyse", id="analyse"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=300):
                        image = gr.Image(
                            label="Photo or face crop (upload, drop, paste, webcam)", type="filepath",
                            sources=["upload", "webcam", "clipboard"], image_mode=None, height=300,
                            elem_id="input-image")
                        detector = gr.Radio(detector_choices, value=_default_detector(), label="Detector",
                                            elem_id="detector")
                        methods = gr.CheckboxGroup(method_choices, value=list(METHOD_ORDER), label="Explanations",
                                                   elem_id="methods")
                        whole = gr.Checkbox(False, label="Analyse whole image (no face detection)",
                                            info="For images that are already a tight face crop (like the dataset "
                                                 "examples), or when no face is found.", elem_id="whole-image")
                        with gr.Accordion("Advanced", open=False):
                            sliders = [gr.Slider(lo, hi, value=_slider_default(m, k, fb), step=1, precision=0,
                                                 label=label, elem_id=f"param-{m}")
                                       for m, k, label, lo, hi, fb in SLIDERS]
                            explain_with = gr.Dropdown(
                                [("First available detector", AUTO)] + [(s.display_name, s.name) for s in SPECS],
                                value=AUTO, label="Explain with (Compare all)", elem_id="explain-with",
                                info="With 'Compare all', maps are computed for this detector.")
                        with gr.Row():
                            run = gr.Button("Analyse", variant="primary", elem_id="run")
                            stop = gr.Button("Stop", variant="stop", elem_id="stop")
                        if examples:
                            ex = gr.Examples([[str(p), _example_is_crop(p)] for p in examples], inputs=[image, whole],
                                             label="Examples (click one to run it; true label in the caption)",
                                             example_labels=[_example_label(p) for p in examples],
                                             examples_per_page=12, cache_examples=False, api_visibility="private")
                        else:
                            ex = None
                            gr.Markdown("*No example images in `examples/` yet.*")
                        gr.Markdown(f"Images up to {MAX_PIXELS / 1e6:.0f} megapixels and {MAX_FILE_SIZE}. "
                                    "Uploads are kept only in Gradio's temporary files (deleted after about an hour).")
                    with gr.Column(scale=6, min_width=320):
                        status = gr.Markdown("", elem_id="status")
                        verdict = gr.Markdown("", elem_id="verdict", elem_classes=["verdict"])
                        with gr.Row():
                            face_raw = gr.Image(label="Face crop (before CLAHE)", interactive=False, height=180,
                                                elem_id="face-raw", format="png", buttons=["download"])
                            face_eq = gr.Image(label="After CLAHE (what the model sees)", interactive=False,
                                               height=180, elem_id="face-clahe", format="png", buttons=["download"])
                        with gr.Tabs(elem_id="map-tabs"):
                            with gr.Tab("Side by side", id="grid", render_children=True):
                                grid_img = gr.Image(label="All maps", interactive=False, elem_id="map-grid",
                                                    format="png", buttons=["download", "fullscreen"])
                            tab_imgs, tab_mds = {}, {}
                            for m in METHOD_ORDER:
                                with gr.Tab(METHODS[m]["display_name"], id=f"tab-{m}", render_children=True):
                                    tab_imgs[m] = gr.Image(label=METHODS[m]["display_name"], interactive=False,
                                                           elem_id=f"map-{m}", format="png",
                                                           buttons=["download", "fullscreen"])
                                    tab_mds[m] = gr.Markdown(METHODS[m].get("meaning", ""), elem_id=f"info-{m}",
                                                             elem_classes=["method-info"])
                        zip_file = gr.DownloadButton("Download maps and report (zip)", value=None, elem_id="zip",
                                                     size="md")
                        with gr.Accordion("Report (JSON)", open=False):
                            report_json = gr.JSON(elem_id="report")
            with gr.Tab("About", id="about"):
                about_md = gr.Markdown(_about_md(status0), elem_id="about")

        # Hidden components that only define the API endpoints' signatures.
        with gr.Column(visible=False):
            api_trigger = gr.Button("api")
            api_verdict = gr.JSON(label="verdicts")
            api_maps = gr.Gallery(label="maps", format="png")
            api_report = gr.JSON(label="report")
            api_zip = gr.File(label="zip")

        outputs = [status, verdict, face_raw, face_eq, grid_img, zip_file, report_json,
                   *tab_imgs.values(), *tab_mds.values()]

        def res_pending(st: dict, m: str) -> bool:
            return st[tab_mds[m]] in ("Waiting for the verdict…", "Computing…")

        def analyse(img, det, meths, ig, shp, lim, whole_image, expl, progress=gr.Progress()):
            # Every yield carries the full state: Gradio 6.31 drops a value sent to a component in a
            # not-yet-opened tab when a later yield of the same event omits that component.
            meths = [m for m in METHOD_ORDER if m in (meths or [])]
            st = {status: "Scoring the image…", verdict: "", face_raw: None, face_eq: None, grid_img: None,
                  zip_file: None, report_json: None}
            for m in METHOD_ORDER:
                st[tab_imgs[m]] = None
                st[tab_mds[m]] = "Waiting for the verdict…" if m in meths else "Not selected."
            yield dict(st)
            t0, done, pred = time.perf_counter(), 0, None
            try:
                for ev in _analysis(img, det, meths, _params(ig, shp, lim), not whole_image, expl, progress):
                    if ev[0] == "verdicts":
                        _, verdicts, unavailable, pred, notes = ev
                        st.update({verdict: _verdict_md(verdicts, unavailable, pred.model),
                                   face_raw: pred.face_raw, face_eq: pred.face,
                                   status: ("Computing maps…" if meths else "Done.")
                                   + "".join(" " + n for n in notes)})
                        st.update({tab_mds[m]: "Computing…" for m in meths})
                    elif ev[0] == "result":
                        _, res, cached, results = ev
                        done += 0 if res.pending else 1
                        st.update({tab_imgs[res.method]: None if res.error else res.overlay,
                                   tab_mds[res.method]: _method_md(res, cached),
                                   grid_img: _grid(pred.face, results),
                                   status: f"{done} of {len(meths)} maps done ({time.perf_counter() - t0:.1f} s)…"})
                    else:
                        _, rep, zpath, grid = ev
                        failed = [v["display_name"] for v in rep["methods"].values() if v["status"] == "error"]
                        n_cached = sum(1 for v in rep["methods"].values() if v["cached"])
                        msg = (f"Done in {time.perf_counter() - t0:.1f} s"
                               + (f" ({n_cached} of {len(meths)} maps from the cache)" if n_cached else "") + "."
                               + (f" Could not run: {', '.join(failed)} (see their tabs)." if failed else ""))
                        st.update({status: msg, report_json: rep, zip_file: zpath, grid_img: grid})
                    yield dict(st)
            except DetectorError as e:
                gr.Warning(e.message)
                st[status] = f"**Error:** {e.message}"
                st.update({tab_mds[m]: "Not run." for m in meths if res_pending(st, m)})
                yield dict(st)
            except Exception as e:  # never show a stack trace; the log has it
                log.exception("analysis failed")
                st[status] = (f"**Error:** something went wrong ({type(e).__name__}). The error was logged; "
                              "try again or with another image.")
                yield dict(st)

        ui_inputs = [image, detector, methods, *sliders, whole, explain_with]
        # "always_last": clicks while a job runs collapse into at most one follow-up run (served from the
        # cache). "once" would fit too, but in Gradio 6.31 a job stopped during its first step leaves the
        # button ignoring every later click.
        run_ev = run.click(analyse, ui_inputs, outputs, api_visibility="private", trigger_mode="always_last",
                           concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain", show_progress="minimal",
                           preprocess=False)
        running = [run_ev]
        if ex is not None:
            ex_ev = ex.load_input_event.then(analyse, ui_inputs, outputs, api_visibility="private",
                                             trigger_mode="always_last", concurrency_limit=EXPLAIN_CONCURRENCY,
                                             concurrency_id="explain", show_progress="minimal",
                                             preprocess=False)
            running.append(ex_ev)
        stop.click(None, None, None, cancels=running, api_visibility="private", queue=False)

        def refresh():
            st = weights_status()
            return _weights_overview(), _about_md(st)

        demo.load(refresh, None, [weights_md, about_md], api_visibility="private", queue=False,
                  show_progress="hidden")

        api_trigger.click(api_predict, [image, detector, whole], api_verdict, api_name="predict",
                          concurrency_limit=CONCURRENCY, concurrency_id="verdict", preprocess=False)
        api_trigger.click(api_explain, [image, detector, methods, *sliders, whole], [api_maps, api_report, api_zip],
                          api_name="explain", concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain",
                          preprocess=False)
    demo.queue(default_concurrency_limit=1, max_size=int(os.environ.get("DEEPFAKE_QUEUE_SIZE", 64)))
    return demo


def _about_md(status: dict[str, str | None]) -> str:
    parts = ["## Detectors", ""]
    for s in SPECS:
        table, source = reports.read_test_metrics(s.local_dir)
        hub = hub_repo_for(s)
        if status.get(s.name) is None:
            state = "weights available"
        elif hub:
            state = f"weights from the Hub repo `{hub}`"
        else:
            state = "**no weights yet**"
        parts += [f"### {s.display_name} ({state})", "",
                  f"{s.description} Input {s.input_size}×{s.input_size} px.", ""]
        if status.get(s.name) and not hub:
            parts += [f"Why: {status[s.name]}", ""]
        if table:
            parts += [f"Test metrics (from `{s.name}/{source}`; the test split's face crops, analysed whole):", "",
                      table, ""]
        else:
            parts += ["No test metrics published yet.", ""]
    parts += ["## Explanation methods", ""]
    for m in METHOD_ORDER:
        info = METHODS[m]
        parts.append(f"- **{info['display_name']}**: {info.get('meaning') or info.get('error', '')}")
    parts += ["", "Each map comes with a faithfulness score from deletion/insertion curves: if a map is faithful to "
              "the model, removing the pixels it ranks highest lowers the score fast and inserting them first "
              "raises it fast (score = insertion AUC − deletion AUC).", "",
              "With **Compare all**, every detector with weights gives its verdict; maps are computed for one of "
              "them (Advanced → Explain with; by default the first available in the order shown above).", "",
              "## Limits", "",
              "- Training data: StyleGAN-generated faces (gan140k) and DFDC face swaps, both for non-commercial "
              "research use only. Other generators (diffusion models, newer GANs), heavy compression, filters or "
              "unusual photos can fool the detectors, with high confidence.",
              "- No detector is proof. Use a verdict as one piece of evidence among others, never as the only "
              "basis for a decision about a person.",
              "- Maps show what influenced this model's score, not where an image was edited.",
              "- Faces are found with OpenCV's Haar cascade; profile or small faces may be missed (use "
              "'Analyse whole image' for images that are already a face crop).",
              "- Uploaded images are not stored beyond Gradio's temporary files, which are deleted after about an "
              "hour. Nothing is sent to third parties.", ""]
    return "\n".join(parts)


demo = build()


def launch_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` (theme, css, limits); server name/port come from GRADIO_* env vars."""
    return {"theme": gr.themes.Soft(), "css": CSS, "max_file_size": MAX_FILE_SIZE,
            "allowed_paths": [str(EXAMPLES_DIR)], "show_error": False}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_malloc_arenas()
    if os.environ.get("DEEPFAKE_PRELOAD", "1") != "0":
        _PRELOAD = threading.Thread(target=preload_explainer_libraries, name="preload", daemon=True)
        _PRELOAD.start()
    demo.launch(**launch_kwargs())
