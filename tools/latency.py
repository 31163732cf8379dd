"""Latency of the app, measured from outside through ``gradio_client``.

``python -m tools.latency [--detector densenet121] [--image PATH] [--repeats 3] [--random-weights]``

Starts ``python app.py`` on a free local port (the way users start it) and prints:

* start-to-ready: from process start until the API answers (``/gradio_api/info``);
* verdict latency (``/predict``): the first call (loads the model) and the median of
  ``--repeats`` warm calls, each on a fresh copy of the image so the result cache is
  not hit;
* all maps end-to-end (``/explain`` with every method at the app's default
  parameters): first run, then the same request again (served by the result cache).

``--random-weights`` times random-weight checkpoints in a temporary folder (for a
machine without trained weights; the timings do not depend on the weight values).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_image() -> Path:
    ex = ROOT / "examples"
    photos = sorted(ex.glob("photo*")) if ex.is_dir() else []
    if photos:
        return photos[0]
    from PIL import Image
    from skimage import data

    p = Path(tempfile.mkdtemp()) / "astronaut.png"
    Image.fromarray(data.astronaut()).save(p)
    return p


def _variant(src: Path, i: int, folder: Path) -> Path:
    """A copy of ``src`` with one pixel changed: same work for the models, a cache miss for the app."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        im.putpixel((0, 0), (i % 256, (i * 7) % 256, (i * 13) % 256))
        out = folder / f"variant_{i}.png"
        im.save(out)
    return out


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"app not ready after {timeout} s")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m tools.latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="densenet121")
    ap.add_argument("--image", type=Path, default=None, help="photo to analyse (default: examples/photo*)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--whole-image", action="store_true", help="skip face detection")
    ap.add_argument("--random-weights", action="store_true", help="time random-weight checkpoints (tmp folder)")
    args = ap.parse_args(argv)

    from gradio_client import Client, handle_file

    image = args.image or _default_image()
    work = Path(tempfile.mkdtemp(prefix="latency-"))
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    port = _free_port()
    env["GRADIO_SERVER_PORT"] = str(port)
    env["GRADIO_SERVER_NAME"] = "127.0.0.1"
    if args.random_weights:
        sys.path.insert(0, str(ROOT))
        from tests.conftest import write_tiny_checkpoints

        write_tiny_checkpoints(work / "checkpoints", (args.detector,))
        env["DEEPFAKE_CHECKPOINTS"] = str(work / "checkpoints")
    url = f"http://127.0.0.1:{port}/"
    log = open(work / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    rows: list[tuple[str, str]] = []
    try:
        ready = _wait_ready(url, proc)
        rows.append(("app start to ready (python app.py -> API answers)", f"{ready:.2f} s"))
        client = Client(url, verbose=False)
        whole = bool(args.whole_image)

        t = time.perf_counter()
        r = client.predict(handle_file(str(_variant(image, 0, work))), args.detector, whole, api_name="/predict")
        rows.append((f"verdict {args.detector}, first call (loads the model)", f"{time.perf_counter() - t:.3f} s"))
        warm = []
        for i in range(1, args.repeats + 1):
            t = time.perf_counter()
            client.predict(handle_file(str(_variant(image, i, work))), args.detector, whole, api_name="/predict")
            warm.append(time.perf_counter() - t)
        rows.append((f"verdict {args.detector}, warm (median of {len(warm)})", f"{statistics.median(warm):.3f} s"))

        from analysis.params import sliders
        from explainers import METHOD_ORDER

        img = handle_file(str(_variant(image, 10_000, work)))
        # every method at the app's default parameters
        call = dict(image=img, detector=args.detector, methods={m: {} for m in METHOD_ORDER}, whole_image=whole)
        t = time.perf_counter()
        gallery, report, _ = client.predict(**call, api_name="/explain")
        total = time.perf_counter() - t
        defaults = ", ".join(f"{s.tunable.label} {s.default}" for s in sliders())
        rows.append((f"all {len(METHOD_ORDER)} maps end to end, {args.detector} ({defaults})", f"{total:.2f} s"))
        for m, rec in report["methods"].items():
            rt = rec.get("runtime_s")
            rows.append((f"  {rec['display_name']}" + (f" (error: {rec['error']})" if rec["error"] else ""),
                         f"{rt:.2f} s" if rt is not None else "-"))
        t = time.perf_counter()
        client.predict(**call, api_name="/explain")
        rows.append(("same request again (result cache)", f"{time.perf_counter() - t:.2f} s"))
        rows.append(("label / p_fake (first call)", f"{r['label']} / {r['p_fake']:.3f} [{r['results'][0]['weights']}]"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    import torch

    print(f"\nLatency of app.py ({image.name}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs)")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
