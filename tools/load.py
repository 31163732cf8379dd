"""Load test against a real app server on loopback: ``python -m tools.load [options]``.

Starts ``python app.py`` on a free 127.0.0.1 port (or uses ``--url``), then runs
``--clients`` concurrent ``gradio_client`` clients that send ``--predictions`` /predict
calls in total with ``--explanations`` full /explain runs mixed in, all on the images in
``examples/``. Reports p50/p95 latency per endpoint, errors, requests lost (never
answered within ``--timeout``), and the server's resident memory: "cold" after a first
verdict, "before" after a warm-up explanation of an image the run does not use (the
explainers' model copy and first-call allocations), and "after" the run; growth is
after vs before.
Every loop is bounded in count and time. Targets (issue 6, DenseNet-121, 2-core CPU):
0 errors, none lost, /predict p95 <= 3 s under load, memory growth <= 10%.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: /explain's methods and parameters: every registered method; IG 16 steps, SHAP 64 and LIME 150 samples.
EXPLAIN_PARAMS = {"integrated_gradients": {"n_steps": 16}, "shap": {"nsamples": 64}, "lime": {"num_samples": 150}}


def _explain_methods() -> dict[str, dict[str, int]]:
    from explainers import METHOD_ORDER

    return {m: EXPLAIN_PARAMS.get(m, {}) for m in METHOD_ORDER}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MB (Linux /proc)."""
    total = 0.0
    pids = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(k) for k in kids]
    except FileNotFoundError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def start_server(port: int, env: dict | None = None, timeout: float = 120) -> tuple[subprocess.Popen, float]:
    """Start ``python app.py`` on ``port``; returns (process, seconds until it answered)."""
    import urllib.request

    e = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
             HF_HUB_OFFLINE="1", **(env or {}))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=e, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise TimeoutError(f"app.py did not answer on {url} within {timeout:.0f} s")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m tools.load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="use a running server instead of starting one")
    ap.add_argument("--detector", default="densenet121")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--predictions", type=int, default=200)
    ap.add_argument("--explanations", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=300, help="per-request limit in seconds")
    args = ap.parse_args(argv)
    from gradio_client import Client, handle_file

    images = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    proc, start_s = None, float("nan")
    url = args.url
    if url is None:
        port = free_port()
        proc, start_s = start_server(port)
        url = f"http://127.0.0.1:{port}/"
        print(f"server ready in {start_s:.1f} s at {url}")
    pid = proc.pid if proc else None
    lat: dict[str, list[float]] = {"predict": [], "explain": []}
    errors: list[str] = []
    lock = threading.Lock()
    clients = [Client(url, verbose=False) for _ in range(args.clients)]
    mem_cold = float("nan")
    if pid:
        # Warm-up on an image the run does not use (a mirrored example, so nothing is served from the
        # cache later): one verdict (model loaded), then one explanation (the explainers' private model
        # copy and first-call allocations). "before" is measured after it, so the growth figure is what
        # the run itself adds: caches and any leak.
        import tempfile

        from PIL import Image, ImageOps

        warm = Path(tempfile.mkdtemp()) / "warmup.png"
        with Image.open(images[0]) as im:
            ImageOps.mirror(im.convert("RGB")).save(warm)
        clients[0].predict(handle_file(str(warm)), args.detector, True, api_name="/predict")
        mem_cold = rss_mb(pid)
        clients[0].predict(handle_file(str(warm)), args.detector, _explain_methods(), whole_image=True,
                           api_name="/explain")
    mem_before = rss_mb(pid) if pid else float("nan")
    jobs: list[tuple[str, Path]] = []
    step = max(1, args.predictions // max(1, args.explanations))
    e = 0
    for i in range(args.predictions):
        jobs.append(("predict", images[i % len(images)]))
        if i % step == 0 and e < args.explanations:
            jobs.append(("explain", images[(i + e) % len(images)]))
            e += 1

    def run(k: int, kind: str, img: Path) -> None:
        c = clients[k % len(clients)]
        t0 = time.perf_counter()
        try:
            if kind == "predict":
                out = c.predict(handle_file(str(img)), args.detector, True, api_name="/predict")
                assert out["label"] in ("real", "fake"), out
            else:
                out = c.predict(handle_file(str(img)), args.detector, _explain_methods(), whole_image=True,
                                api_name="/explain")
                assert out[1]["methods"], out[1]
            with lock:
                lat[kind].append(time.perf_counter() - t0)
        except Exception as ex:  # counted, reported
            with lock:
                errors.append(f"{kind} {img.name}: {type(ex).__name__}: {str(ex)[:200]}")

    t_all = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        futs = [pool.submit(run, k, kind, img) for k, (kind, img) in enumerate(jobs)]
        done, not_done = wait(futs, timeout=args.timeout * 3)
    wall = time.perf_counter() - t_all
    lost = len(not_done)
    time.sleep(2)
    mem_after = rss_mb(pid) if pid else float("nan")
    for kind in ("predict", "explain"):
        xs = lat[kind]
        print(f"{kind:8s} n={len(xs):4d} p50={pct(xs, 50):.2f} s p95={pct(xs, 95):.2f} s "
              f"max={max(xs) if xs else float('nan'):.2f} s")
    growth = (mem_after - mem_before) / mem_before * 100 if pid else float("nan")
    print(f"errors={len(errors)} lost={lost} wall={wall:.1f} s throughput={len(jobs) / wall:.2f} req/s")
    print(f"server_rss_cold={mem_cold:.0f} MB (after the first verdict) before={mem_before:.0f} MB (after one "
          f"explanation) after={mem_after:.0f} MB growth={growth:+.1f}% (vs cold "
          f"{(mem_after - mem_cold) / mem_cold * 100:+.1f}%)")
    for err in errors[:10]:
        print("  ", err)
    if proc:
        proc.terminate()
        proc.wait(timeout=30)
    ok = not errors and not lost and pct(lat["predict"], 95) <= 3.0 and (not pid or growth <= 10)
    print(f"load_test={'PASS' if ok else 'FAIL'} predict_p95={pct(lat['predict'], 95):.2f} "
          f"explain_p95={pct(lat['explain'], 95):.2f} errors={len(errors)} lost={lost} mem_growth={growth:+.1f}%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
