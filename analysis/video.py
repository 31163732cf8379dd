"""The Video tab's service side: run :func:`detector.video.iter_analyze_video` and turn its reports into what the
page shows (timeline figure, face strip, verdict Markdown) and what ``/analyze_video`` returns (the CLI's JSON).

Nothing here imports Gradio: :mod:`analysis.video_tab` wires these functions to components. The heavy work
(decoding, face detection, scoring) is :mod:`detector.video`'s; it writes nothing to disk, and the frame sent to
the image panel is returned as an array (Gradio stores it in its own cache, deleted with the rest).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from detector.errors import InputError

__all__ = ["VideoUpdate", "video_path", "effective_limit_bytes", "check_upload", "default_detector",
           "detector_choices", "timeline_figure", "verdict_md", "strip", "progress_md", "iter_video", "run_video_json",
           "picked_frame"]

_WORD = {"fake": "**FAKE**", "real": "**REAL**", "inconclusive": "inconclusive"}


@dataclass
class VideoUpdate:
    """One step of a run, for the UI: ``status`` (Markdown), and when it changed, the timeline ``figure``;
    at the end ``result`` (the :class:`detector.video.VideoResult`), ``verdict`` (Markdown), ``strip`` (gallery
    items) and ``json``."""

    status: str
    figure: Any = None
    result: Any = None
    verdict: str | None = None
    strip: list[tuple[np.ndarray, str]] = field(default_factory=list)
    json: dict | None = None


def video_path(payload: Any) -> str | None:
    """The file path in a Gradio video/file payload (a dict with ``path``, ``{"video": {...}}``, a FileData or a
    plain path), or None when there is none."""
    if payload is None:
        return None
    if isinstance(payload, (str, Path)):
        return str(payload) or None
    if isinstance(payload, Mapping):
        if isinstance(payload.get("video"), Mapping):
            return video_path(payload["video"])
        return payload.get("path") or None
    return getattr(payload, "path", None) or None


def _mb(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MB" if n >= 2 ** 20 else f"{n / 1024:.0f} kB"


def effective_limit_bytes(settings: Any) -> int:
    """The largest video the server accepts: ``DEEPFAKE_MAX_VIDEO_SIZE``, but never more than Gradio's upload limit
    (``DEEPFAKE_MAX_FILE_SIZE``, which applies to every upload of the server)."""
    from detector.settings import parse_size

    return min(settings.max_video_bytes, parse_size(settings.max_file_size))


def check_upload(path: str | None, settings: Any) -> Path:
    """The uploaded file as a Path, after the checks that need no decoding (present, not empty, size limits).

    Gradio refuses an upload over ``DEEPFAKE_MAX_FILE_SIZE`` before this runs; this check says which variable sets
    the video limit when ``DEEPFAKE_MAX_VIDEO_SIZE`` is the smaller one (or for a file given by path through the
    API). Raises :class:`InputError`."""
    if not path:
        raise InputError("No video: upload a clip (MP4, MOV, WebM, MKV, AVI) or record one with the webcam.", "empty")
    p = Path(path)
    if not p.is_file():
        raise InputError("The uploaded video is no longer on the server (uploads are kept about an hour): upload it "
                         "again.", "not_found")
    size = p.stat().st_size
    if size == 0:
        raise InputError("The file is empty (0 bytes).", "empty")
    if size > settings.max_video_bytes:
        raise InputError(f"The video is {_mb(size)}; the limit is {_mb(settings.max_video_bytes)} "
                         "(DEEPFAKE_MAX_VIDEO_SIZE). Trim or re-encode it and upload again.", "too_large")
    return p


def default_detector() -> str:
    """The most reliable detector with weights (every detector if none has), as for photos."""
    from detector.reliability import default_detector as choose, ranked
    from detector.weights import weights_status

    status = weights_status()
    names = [n for n in ranked() if status.get(n) is None] or ranked()
    return choose(names).name


def detector_choices() -> list[tuple[str, str]]:
    """(label, name) per detector, most reliable first, a weak one labelled as such."""
    from detector.reliability import ranked, reliability
    from detector.specs import get_spec

    out = []
    for n in ranked():
        tag = reliability(n).tag
        out.append((get_spec(n).display_name + (f" ({tag})" if tag else ""), n))
    return out


# --- timeline -----------------------------------------------------------------------------------------------

def timeline_figure(frames: Sequence[Any], band: Any = None, duration: float | None = None,
                    clip_p: float | None = None, title: str | None = None):
    """A matplotlib Figure: p(fake) of each scored frame against time, the detector's uncertain band shaded
    (verdicts inside it are inconclusive), frames without a face or not yet scored as ticks at the bottom, and the
    clip's aggregate p(fake) as a dashed line when given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    end = max([duration or 0.0] + [f.t for f in frames] + [1.0])
    if band is not None:
        lo, hi = max(0.0, band.lo), min(1.0, band.hi)
        if hi > lo:
            ax.axhspan(lo, hi, color="#bbbbbb", alpha=0.35, lw=0, label=f"inconclusive band {lo:.2f}-{hi:.2f}")
        else:
            ax.axhline(lo, color="#888888", lw=1, ls=":", label=f"decision point {lo:.2f}")
    else:
        ax.axhspan(0.0, 1.0, color="#bbbbbb", alpha=0.2, lw=0, label="no validated band: inconclusive")
    scored = [f for f in frames if f.p_fake is not None]
    if scored:
        in_order = sorted(frames, key=lambda f: f.t)  # the line breaks where a frame has no score
        ax.plot([f.t for f in in_order], [np.nan if f.p_fake is None else f.p_fake for f in in_order],
                color="#555555", lw=1, zorder=2)
        colour = {"fake": "#d62728", "real": "#2ca02c", "inconclusive": "#7f7f7f"}
        for v in ("fake", "real", "inconclusive"):
            pts = [f for f in scored if (f.verdict or "inconclusive") == v]
            if pts:
                ax.scatter([f.t for f in pts], [f.p_fake for f in pts], color=colour[v], s=22, zorder=3,
                           edgecolors="white", linewidths=0.5, label=f"{v} frame")
    unscored = [f.t for f in frames if f.p_fake is None]
    if unscored:
        lbl = "no face / not scored yet" if any(f.error is None for f in frames if f.p_fake is None) else "no face"
        ax.plot(unscored, [0.02] * len(unscored), "|", color="#1f77b4", ms=8, label=lbl)
    if clip_p is not None:
        ax.axhline(clip_p, color="#9467bd", ls="--", lw=1.2, label=f"clip p(fake) {clip_p:.2f}")
    ax.set_xlim(0, end * 1.02)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("p(fake)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    if handles:  # below the axes: the points stay visible wherever they lie
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, frameon=False, ncol=4)
    return fig


# --- text ---------------------------------------------------------------------------------------------------

def verdict_md(res: Any) -> str:
    """The clip's verdict block: headline (three-way, the same wording as for photos), how the aggregate was
    formed, the detector's reliability sentence and tag, track events and notes."""
    from detector.reliability import reliability
    from detector.specs import get_spec
    from detector.verdict_bands import PRECISION_TARGET, headline

    rel = reliability(res.model)
    sc = res.scored
    ps = [f.p_fake for f in sc]
    top = max(sc, key=lambda f: f.p_fake)
    tag = f" **{rel.tag}**" if rel.tag else ""
    head = headline(res.p_fake, res.band)
    if res.verdict in ("fake", "real"):
        head = head.replace(res.verdict.upper(), f"**{res.verdict.upper()}**")
    n_fake = sum(f.verdict == "fake" for f in sc)
    n_real = sum(f.verdict == "real" for f in sc)
    out = [f"### {head}", "",
           f"{get_spec(res.model).display_name}, {len(sc)} of {len(res.frames)} sampled frames scored "
           f"({res.sample_fps:g} per second"
           + (f", {res.duration:.1f} s clip" if res.duration else "") + "). "
           f"Clip p(fake) = mean of the {res.k} highest frame scores (on the logit scale): a manipulation often "
           f"shows in only part of a clip. Frame mean {np.mean(ps):.2f}, highest {top.p_fake:.2f} at {top.t:.1f} s; "
           f"{n_fake} frame(s) {_WORD['fake']}, {n_real} {_WORD['real']}, "
           f"{len(sc) - n_fake - n_real} inconclusive.", "",
           f"{rel.sentence}{tag} These figures are for single images; no clip-level labels exist here, so the "
           "clip score is not a calibrated probability.", ""]
    for line in [e.message for e in res.events] + list(res.notes):
        out.append(f"* {line}")
    if res.events or res.notes:
        out.append("")
    out.append(f"*Inconclusive* means the score lies in the detector's uncertain range, chosen on validation "
               f"images so that calls outside it are at least {PRECISION_TARGET:.0%} right.")
    return "\n".join(out)


def strip(res: Any) -> list[tuple[np.ndarray, str]]:
    """:func:`detector.video.face_strip` with captions short enough for a thumbnail (``"3.5 s: 0.82"``); the
    verdict of each frame is in the JSON and its colour on the timeline."""
    from detector.video import face_strip

    return [(crop, cap.split(" · ")[0] + ": " + cap.split(" · ")[1].replace("p(fake) ", ""))
            for crop, cap in face_strip(res)]


def progress_md(ev: Any) -> str:
    """A :class:`detector.video.VideoProgress` as one status line."""
    return f"{ev.message} ({ev.done} of {ev.total} frames)" if ev.total else ev.message


# --- running ------------------------------------------------------------------------------------------------

def iter_video(path: str | None, model: str | None, fps: float, max_frames: int, settings: Any,
               redraw_every: int = 4) -> Iterator[VideoUpdate]:
    """Analyse the clip at ``path``, yielding a :class:`VideoUpdate` per progress report (the timeline redrawn at
    each scored batch and every ``redraw_every`` sampled frames) and a last one with the result.
    Raises :class:`InputError` / :class:`NoFaceError` / :class:`WeightsError` as :mod:`detector.video` does."""
    from detector.verdict_bands import read_band
    from detector.video import VideoResult, iter_analyze_video

    p = check_upload(path, settings)
    model = model or default_detector()
    band = read_band(model)
    duration = None
    for ev in iter_analyze_video(p, model, float(fps), int(max_frames)):
        if isinstance(ev, VideoResult):
            title = f"{ev.name}: {ev.verdict} (clip p(fake) {ev.p_fake:.2f})"
            fig = timeline_figure(ev.frames, ev.band, ev.duration, ev.p_fake, title)
            yield VideoUpdate(status=f"Done: {len(ev.scored)} frames scored in {ev.timings.get('total', 0):.1f} s.",
                              figure=fig, result=ev, verdict=verdict_md(ev), strip=strip(ev), json=ev.to_json())
            return
        if ev.stage == "open":
            yield VideoUpdate(status=ev.message)
            continue
        if ev.stage == "detect" and ev.done % redraw_every and ev.done != ev.total:
            yield VideoUpdate(status=progress_md(ev))
            continue
        yield VideoUpdate(status=progress_md(ev), figure=timeline_figure(ev.frames, band, duration))


def run_video_json(path: str | None, model: str | None, fps: float | None, max_frames: int | None,
                   settings: Any) -> dict:
    """``/analyze_video``: the same JSON as ``python -m detector.video --json``."""
    from detector.video import DEFAULT_FPS, DEFAULT_MAX_FRAMES, analyze_video

    fps = DEFAULT_FPS if fps is None else float(fps)
    max_frames = DEFAULT_MAX_FRAMES if max_frames is None else int(max_frames)
    if not fps > 0 or max_frames < 1:
        raise InputError("fps must be > 0 and max_frames >= 1.", "bad_parameter")
    p = check_upload(path, settings)
    return analyze_video(p, model or default_detector(), fps, max_frames).to_json()


def picked_frame(path: str | None, t: float) -> np.ndarray:
    """The full upright frame at ``t`` seconds of the clip at ``path`` (for a frame the user picked)."""
    from detector.video import frame_at

    if not path or not os.path.isfile(path):
        raise InputError("The video is no longer on the server: analyse it again.", "not_found")
    return frame_at(path, t)
