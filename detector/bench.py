"""Inference cost per detector: ``python -m detector.bench [--models a,b] [--runs N] [--random-weights] [--device D]``.

Batch 1 on the current device (the README's figures: this 2-core CPU). Reports, as
medians over ``--runs``: face detection on a full photo (``skimage.data.astronaut()``,
512x512), CLAHE + resize + normalise on the face crop, and the forward pass, for every
detector in :data:`detector.specs.SPECS` (or ``--models``). Each detector's target for
CLAHE + resize + forward is its spec's ``latency_target_ms`` (custom CNN 30 ms,
DenseNet-121 120 ms, VGGFace16 300 ms). ``--random-weights`` times the architectures
without trained checkpoints (speed does not depend on the weights' values).

``python -m detector.bench --video [--video-runs 20] [--video-model NAME]``: the cost of
:func:`detector.video.analyze_video` on a synthetic 30-second 1280x720 clip at 30 fps (MPEG-4
Part 2, written from the example images into a temporary folder that is removed afterwards),
sampled at 2 fps (60 frames), with the default detector (:func:`detector.reliability.default_detector`).
Prints decode / detect (+ align) / score / total seconds of one clip (target <= 10 s end to end),
then analyses the clip ``--video-runs`` times and prints the resident memory (RSS) after the first
and the last run, which should stay flat.

``python -m detector.bench --layouts [--batch 16]``: batched forward and forward+backward
CPU time per image (``time.process_time``, so a busy machine skews it less) with the weights
in PyTorch's default NCHW layout and in channels-last, which the loader uses; the batched
passes are what LIME, SHAP, IG and the faithfulness curves run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

#: ``--video``: the clip's length (s), size, frame rate, the sampling rate and the end-to-end target (s).
VIDEO_SECONDS, VIDEO_SIZE, VIDEO_FPS, VIDEO_SAMPLE_FPS, VIDEO_TARGET_S = 30, (1280, 720), 30, 2.0, 10.0


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn()`` in ms over ``runs`` calls, after one warm-up call."""
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def _rss_mb() -> float:
    """This process's resident memory in MB (``/proc/self/statm``; peak RSS where that file does not exist)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_bench_clip(path: Path, seconds: int = VIDEO_SECONDS, size: tuple[int, int] = VIDEO_SIZE,
                     fps: int = VIDEO_FPS) -> Path:
    """A synthetic clip: an example face (a real one, then a fake one halfway) drifting over a grey gradient."""
    import cv2
    import numpy as np
    from PIL import Image

    from .settings import REPO_ROOT

    w, h = size
    faces = [np.asarray(Image.open(REPO_ROOT / "examples" / name).convert("RGB").resize((320, 320)))[..., ::-1]
             for name in ("gan140k_real_00032.jpg", "gan140k_fake_00ELJIYESN.jpg")]
    bg = np.tile(np.linspace(60, 180, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError("OpenCV could not open an MPEG-4 video writer")
    n = seconds * fps
    try:
        for i in range(n):
            frame = bg.copy()
            x = int(200 + 600 * i / n)
            y = int(150 + 40 * np.sin(i / fps))
            frame[y:y + 320, x:x + 320] = faces[0 if i < n // 2 else 1]
            vw.write(frame)
    finally:
        vw.release()
    return path


def bench_video(runs: int, model: str | None, device: str | None) -> int:
    """``--video``: time one synthetic 30-s 720p clip end to end and check that memory stays flat over ``runs``."""
    import torch

    from .reliability import default_detector
    from .video import analyze_video

    name = model or default_detector().name
    with tempfile.TemporaryDirectory(prefix="deepfake-bench-video-") as tmp:
        t0 = time.perf_counter()
        clip = write_bench_clip(Path(tmp) / "bench.mp4")
        print(f"clip: {VIDEO_SECONDS} s {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} {VIDEO_FPS} fps mp4v, "
              f"{clip.stat().st_size / 2 ** 20:.1f} MB, written in {time.perf_counter() - t0:.1f} s; model={name} "
              f"threads={torch.get_num_threads()} cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f}")
        totals, rss, stages = [], [], {"decode": [], "detect": [], "score": []}
        for i in range(max(1, runs)):
            res = analyze_video(clip, name, fps=VIDEO_SAMPLE_FPS, device=device)
            tm = res.timings
            totals.append(tm["total"])
            for k in stages:
                stages[k].append(tm[k])
            rss.append(_rss_mb())
            if i == 0:
                print(f"first clip (model loaded before timing): decode={tm['decode']:.2f} s detect+align="
                      f"{tm['detect']:.2f} s score={tm['score']:.2f} s total={tm['total']:.2f} s "
                      f"frames={len(res.frames)} scored={len(res.scored)} p_fake={res.p_fake:.3f} {res.verdict}")
            print(f"run {i + 1}/{runs}: total={tm['total']:.2f} s rss={rss[-1]:.0f} MB", flush=True)
    med = statistics.median(totals)
    ok = "OK" if med <= VIDEO_TARGET_S else "OVER"
    print("median over runs: " + " ".join(f"{k}={statistics.median(v):.2f} s" for k, v in stages.items())
          + f" total={med:.2f} s")
    print(f"video_total_s median={med:.2f} min={min(totals):.2f} target<={VIDEO_TARGET_S:.0f} s {ok}; "
          f"rss first={rss[0]:.0f} MB last={rss[-1]:.0f} MB (growth {rss[-1] - rss[0]:+.0f} MB over "
          f"{len(rss) - 1} runs); temp folder removed: {not Path(tmp).exists()}")
    return 0


def bench_layouts(names: list[str], batch: int, runs: int, random_weights: bool) -> int:
    """``--layouts``: ms of CPU time per image, batched, NCHW weights vs channels-last weights."""
    import torch

    from . import models  # noqa: F401
    from .specs import get_spec
    from .weights import load_model

    def cpu_ms(model, x, grad: bool) -> float:
        def once():
            if grad:
                xx = x.clone().requires_grad_(True)
                model(xx)[:, 1].sum().backward()
            else:
                with torch.inference_mode():
                    model(x)
        once()
        t0 = time.process_time()
        for _ in range(runs):
            once()
        return (time.process_time() - t0) / runs / len(x) * 1000

    print(f"device=cpu threads={torch.get_num_threads()} batch={batch} runs={runs} loadavg={os.getloadavg()[0]:.1f}")
    for name in names:
        spec = get_spec(name)
        model = spec.create_model().eval() if random_weights else load_model(name, "cpu").model
        x = torch.randn(batch, 3, spec.input_size, spec.input_size)
        res = {}
        for fmt in ("nchw", "channels_last"):
            model = model.to(memory_format=torch.contiguous_format if fmt == "nchw" else torch.channels_last)
            res[fmt] = (cpu_ms(model, x, False), cpu_ms(model, x, True))
        (f0, b0), (f1, b1) = res["nchw"], res["channels_last"]
        print(f"{name:18s} forward {f0:6.1f} -> {f1:6.1f} ms/img (x{f0 / f1:.2f})   "
              f"forward+backward {b0:6.1f} -> {b1:6.1f} ms/img (x{b0 / b1:.2f})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    from .specs import SPECS

    ap = argparse.ArgumentParser(prog="python -m detector.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(SPECS), help="comma-separated detector names (default: all)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--device", default=None)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--video", action="store_true", help="time detector.video on a synthetic 30-s 720p clip")
    ap.add_argument("--video-runs", type=int, default=20, help="clips analysed for the memory check (20)")
    ap.add_argument("--video-model", default=None, help="detector for --video (default: the app's default)")
    ap.add_argument("--layouts", action="store_true",
                    help="batched CPU cost per image, NCHW vs channels-last weights")
    ap.add_argument("--batch", type=int, default=16, help="batch size for --layouts")
    args = ap.parse_args(argv)
    if args.layouts:
        return bench_layouts(args.models.split(","), args.batch, max(1, min(args.runs, 5)), args.random_weights)
    if args.video:
        return bench_video(args.video_runs, args.video_model, args.device)

    import torch
    from skimage import data as skdata

    from . import models  # noqa: F401
    from .preprocess import crop_face, detect_face, finish, resize
    from .specs import get_spec
    from .weights import load_model, pick_device

    device = pick_device(args.device)
    photo = skdata.astronaut()
    box = detect_face(photo)
    det_ms = _median_ms(lambda: detect_face(photo), args.runs)
    crop = crop_face(photo, box)
    print(f"device={device} threads={torch.get_num_threads()} runs={args.runs}")
    print(f"face detection (512x512 photo): {det_ms:.1f} ms")
    worst = 0.0
    for name in args.models.split(","):
        spec = get_spec(name)
        if args.random_weights:
            model = spec.create_model().eval().to(device)
        else:
            model = load_model(name, device).model
        params = sum(p.numel() for p in model.parameters())

        def prep():
            return finish(resize(crop, spec.input_size), spec)[0]

        x = prep().to(device)

        def fwd():
            with torch.inference_mode():
                model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        def total():
            xx = prep().to(device)
            with torch.inference_mode():
                model(xx)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        p_ms, f_ms, t_ms = _median_ms(prep, args.runs), _median_ms(fwd, args.runs), _median_ms(total, args.runs)
        target = spec.latency_target_ms
        ok = "OK" if t_ms <= target else "OVER"
        worst = max(worst, t_ms / target)
        print(f"{name:12s} input={spec.input_size} params={params / 1e6:.2f}M  clahe+resize={p_ms:.1f} ms  "
              f"forward={f_ms:.1f} ms  total={t_ms:.1f} ms  target<={target:.0f} ms {ok}")
    print(f"face_detect_ms={det_ms:.1f} worst_ratio_to_target={worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
