"""The "Video" tab and the ``/analyze_video`` endpoint (Gradio layout and wiring; the work is in
:mod:`analysis.video` and :mod:`detector.video`).

Call :func:`build_video_tab` inside the app's ``gr.Tabs()`` (within its ``gr.Blocks``)::

    video = build_video_tab(svc, image, tabs=tabs, whole_image=whole)
    ...
    running.append(video.send_event.then(analyse, ui_inputs, outputs, **run_kw))  # optional: explain at once

The tab takes an upload or a webcam recording, streams the timeline while frames are scored, then shows the clip's
verdict (three-way, the photo wording), the face strip and the JSON. "Explain the most suspicious frame" (or a
frame picked in the strip) puts that full frame into the Analyse tab's image input and switches to that tab.
Video jobs run one at a time (``concurrency_id="video"``, shared by the UI and the API).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from detector.errors import DetectorError

from . import video as vs

__all__ = ["VIDEO_CONCURRENCY", "VideoTab", "build_video_tab"]

log = logging.getLogger("app.video")
#: Video analyses (UI and /analyze_video) at once.
VIDEO_CONCURRENCY = 1


@dataclass
class VideoTab:
    """The tab's main components and events (for the caller to chain on)."""

    video: Any
    run_event: Any
    send_event: Any
    status: Any
    verdict: Any
    timeline: Any
    strip: Any
    report: Any


def _api_error(e: Exception) -> gr.Error:
    if isinstance(e, DetectorError):
        return gr.Error(e.message, print_exception=False)
    if isinstance(e, KeyError):
        return gr.Error(str(e.args[0]) if e.args else str(e), print_exception=False)
    log.exception("video analysis failed")
    return gr.Error(f"Internal error ({type(e).__name__}); the video was not analysed. Try again.",
                    print_exception=False)


def build_video_tab(svc: Any, image_input: Any, tabs: Any = None, whole_image: Any = None,
                    analyse_tab_id: str = "analyse", api: bool = True) -> VideoTab:
    """Create the "Video" tab (call inside ``gr.Tabs()``) and, when ``api``, the ``/analyze_video`` endpoint.

    ``image_input``: the Analyse tab's image component, which receives the frame to explain; ``tabs``: the
    ``gr.Tabs`` to switch to ``analyse_tab_id`` (optional); ``whole_image``: the Analyse tab's whole-image checkbox,
    turned off (a video frame needs face detection). ``svc.settings`` gives the limits."""
    from detector.video import DEFAULT_FPS, DEFAULT_MAX_FRAMES

    settings = svc.settings
    limit = vs.effective_limit_bytes(settings)
    default = vs.default_detector()
    with gr.Tab("Video", id="video"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                video = gr.Video(label="Video clip (upload, drop, webcam)",
                                 sources=["upload", "webcam"], height=280, include_audio=True, elem_id="video-input")
                v_detector = gr.Radio(vs.detector_choices(), value=default, label="Detector (most reliable first)",
                                      elem_id="video-detector")
                with gr.Accordion("Sampling", open=False):
                    v_fps = gr.Slider(0.5, 8, value=DEFAULT_FPS, step=0.5, label="Frames per second sampled",
                                      elem_id="video-fps")
                    v_max = gr.Slider(4, 128, value=DEFAULT_MAX_FRAMES, step=1, precision=0,
                                      label="Most frames (then spread over the whole clip)", elem_id="video-max")
                with gr.Row():
                    v_run = gr.Button("Analyse video", variant="primary", elem_id="video-run")
                    v_stop = gr.Button("Stop", variant="stop", elem_id="video-stop")
                gr.Markdown(f"Clips up to {limit / 2 ** 20:.0f} MB and {settings.max_video_seconds:.0f} s "
                            "(`DEEPFAKE_MAX_VIDEO_SIZE`, `DEEPFAKE_MAX_VIDEO_SECONDS`; every upload is also limited "
                            "by `DEEPFAKE_MAX_FILE_SIZE`). MP4, MOV, WebM, MKV or AVI; each sampled frame's main "
                            "face is scored like a photo.", elem_classes=["method-info"])
            with gr.Column(scale=6, min_width=320):
                v_status = gr.Markdown("", elem_id="video-status")
                v_verdict = gr.Markdown("", elem_id="video-verdict", elem_classes=["verdict"])
                v_plot = gr.Plot(label="p(fake) per sampled frame", show_label=False, format="png",
                                 elem_id="video-timeline")
                v_strip = gr.Gallery(label="Face crops scored (click one to pick that frame)", columns=8, rows=1,
                                     height=170, allow_preview=False, object_fit="contain", format="png",
                                     elem_id="video-strip")
                with gr.Row():
                    v_send = gr.Button("Explain the most suspicious frame", interactive=False,
                                       elem_id="video-send-top")
                    v_send_pick = gr.Button("Explain the picked frame", interactive=False,
                                            elem_id="video-send-pick")
                with gr.Accordion("Result (JSON, as /analyze_video returns it)", open=False):
                    v_json = gr.JSON(elem_id="video-report")
        state = gr.State(None)
        if api:  # hidden components that only define /analyze_video's signature (inside the tab: gr.Tabs takes tabs)
            with gr.Column(visible=False):
                api_trigger = gr.Button("api video")
                api_file = gr.File(label="video", file_count="single")
                api_det = gr.Dropdown([n for _, n in vs.detector_choices()], value=None, label="detector",
                                      allow_custom_value=True, info="default: the most reliable detector")
                api_fps = gr.Number(None, label="fps", info=f"sampled frames per second (default {DEFAULT_FPS:g})")
                api_max = gr.Number(None, label="max_frames", precision=0,
                                    info=f"most frames sampled (default {DEFAULT_MAX_FRAMES})")
                api_out = gr.JSON(label="video result")

    def analyse_video(payload: Any, model: str, fps: float, max_frames: float):
        st = {v_status: "Opening the video…", v_verdict: "", v_plot: None, v_strip: None, v_json: None,
              state: None, v_send: gr.update(interactive=False, value="Explain the most suspicious frame"),
              v_send_pick: gr.update(interactive=False, value="Explain the picked frame")}
        yield dict(st)
        path = vs.video_path(payload)
        try:
            for up in vs.iter_video(path, model, fps, int(max_frames), settings):
                st[v_status] = up.status
                if up.figure is not None:
                    st[v_plot] = up.figure
                if up.result is not None:
                    res = up.result
                    top = res.suspicious
                    st.update({v_verdict: up.verdict, v_strip: up.strip, v_json: up.json,
                               state: {"path": path, "times": [f.t for f in res.frames
                                                               if f.crop is not None and f.p_fake is not None],
                                       "top": None if top is None else {"rgb": top.rgb, "t": top.t,
                                                                       "p_fake": top.p_fake},
                                       "picked": None}})
                    if top is not None:
                        st[v_send] = gr.update(interactive=True, value=f"Explain the most suspicious frame "
                                                                       f"({top.t:.1f} s, p(fake) {top.p_fake:.2f})")
                yield dict(st)
        except DetectorError as e:
            gr.Warning(e.message)
            st[v_status] = f"**Error:** {e.message}"
            yield dict(st)
        except Exception as e:  # never a stack trace on the page; the log has it
            log.exception("video analysis failed")
            st[v_status] = (f"**Error:** something went wrong ({type(e).__name__}). The error was logged; try again "
                            "or with another clip.")
            yield dict(st)

    run_kw = dict(api_visibility="private", trigger_mode="always_last", concurrency_limit=VIDEO_CONCURRENCY,
                  concurrency_id="video", show_progress="minimal", preprocess=False)
    v_inputs = [video, v_detector, v_fps, v_max]
    v_outputs = [v_status, v_verdict, v_plot, v_strip, v_json, state, v_send, v_send_pick]
    run_event = v_run.click(analyse_video, v_inputs, v_outputs, **run_kw)
    upload_event = video.upload(analyse_video, v_inputs, v_outputs, **run_kw)
    record_event = video.stop_recording(analyse_video, v_inputs, v_outputs, **run_kw)
    v_stop.click(lambda: "**Stopped.** Press Analyse video to run it again.", None, v_status,
                 cancels=[run_event, upload_event, record_event], api_visibility="private", queue=False,
                 show_progress="hidden")

    def pick(st: Any, evt: gr.SelectData):
        if not st or evt.index is None or evt.index >= len(st["times"]):
            return st, gr.update(interactive=False)
        st = dict(st, picked=float(st["times"][evt.index]))
        return st, gr.update(interactive=True, value=f"Explain the picked frame ({st['picked']:.1f} s)")

    v_strip.select(pick, state, [state, v_send_pick], api_visibility="private", queue=False, show_progress="hidden")

    send_outputs = [image_input] + ([tabs] if tabs is not None else []) + (
        [whole_image] if whole_image is not None else []) + [v_status]

    def send(st: Any, which: str):
        if not st:
            raise gr.Error("Analyse a video first.", print_exception=False)
        try:
            if which == "top":
                rgb, t = st["top"]["rgb"], st["top"]["t"]
            else:
                t = st["picked"]
                rgb = vs.picked_frame(st["path"], t)
        except DetectorError as e:
            raise gr.Error(e.message, print_exception=False) from None
        out = [rgb] + ([gr.Tabs(selected=analyse_tab_id)] if tabs is not None else []) + (
            [False] if whole_image is not None else [])
        return out + [f"The frame at {t:.1f} s was sent to the Analyse tab."]

    send_kw = dict(api_visibility="private", concurrency_limit=VIDEO_CONCURRENCY, concurrency_id="video",
                   show_progress="minimal")
    send_event = v_send.click(lambda st: send(st, "top"), state, send_outputs, **send_kw)
    pick_event = v_send_pick.click(lambda st: send(st, "pick"), state, send_outputs, **send_kw)
    tab = VideoTab(video=video, run_event=run_event, send_event=send_event, status=v_status, verdict=v_verdict,
                   timeline=v_plot, strip=v_strip, report=v_json)
    tab.pick_event = pick_event  # type: ignore[attr-defined]

    if api:
        def api_analyze_video(file: Any, detector: str | None = None, fps: float | None = None,
                              max_frames: float | None = None) -> dict:
            """Score a clip frame by frame: returns the JSON of ``python -m detector.video --json`` (aggregate
            ``p_fake``, ``verdict``, ``headline``, ``decision_band``, ``aggregate``, ``reliability``, ``frames``,
            ``tracks``, ``notes``, ``timings_s``)."""
            try:
                return vs.run_video_json(vs.video_path(file), detector, fps, max_frames, settings)
            except Exception as e:
                raise _api_error(e) from None

        api_trigger.click(api_analyze_video, [api_file, api_det, api_fps, api_max], api_out,
                          api_name="analyze_video", concurrency_limit=VIDEO_CONCURRENCY, concurrency_id="video",
                          preprocess=False)
    return tab
