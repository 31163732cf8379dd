"""Faults through the live server: broken weights for one detector, a failing explainer,
a client that disconnects mid-explanation, and a Hub that does not answer."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import hooks_left

from .conftest import ALL_METHODS, FAST_DETECTOR, ROOT, SMALL, free_port

def _truncate_weights(folder: Path) -> None:
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])


def _unknown_architecture(folder: Path) -> None:
    f = folder / "config.json"
    cfg = json.loads(f.read_text())
    cfg["architecture"] = "no_such_net"
    f.write_text(json.dumps(cfg))


@pytest.mark.parametrize("fault,needle", [(_truncate_weights, "corrupt"), (_unknown_architecture, "no_such_net")],
                         ids=["truncated_safetensors", "unknown_architecture"])
def test_broken_checkpoint_disables_only_that_detector(app_server, client, face_image, tmp_path, fault, needle):
    import shutil

    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    import detector.weights as dw

    _, app = app_server
    folder = dw.get_spec("vggface16").local_dir
    backup = tmp_path / "backup"
    shutil.copytree(folder, backup)
    fault(folder)
    dw.clear_cache()
    app.CACHE.clear()
    try:
        with pytest.raises(AppError) as info:
            client.predict(handle_file(str(face_image)), "vggface16", False, api_name="/predict")
        msg = str(info.value)
        assert "vggface16" in msg and needle in msg and "Traceback" not in msg
        r = client.predict(handle_file(str(face_image)), "all", False, api_name="/predict")
        from detector.reliability import ranked

        assert [x["model"] for x in r["results"]] == [n for n in ranked() if n != "vggface16"]
        assert needle in r["unavailable"]["vggface16"]
        # The others keep explaining.
        _, report, _ = client.predict(handle_file(str(face_image)), FAST_DETECTOR, ["gradcam"], *SMALL.values(),
                                      False, api_name="/explain")
        assert report["methods"]["gradcam"]["status"] == "ok"
    finally:
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)
        dw.clear_cache()
        app.CACHE.clear()


@pytest.mark.parametrize("exc,needle", [("oom", "ran out of memory"), ("raise", "RuntimeError: boom")])
def test_failing_explainer_reports_in_its_tab_and_others_arrive(app_server, client, face_image, monkeypatch,
                                                                exc, needle):
    import torch
    from gradio_client import handle_file

    from explainers.base import get_explainer

    _, app = app_server
    shap = get_explainer("shap")

    def broken(*a, **k):
        if exc == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        raise RuntimeError("boom")

    app.CACHE.clear()
    monkeypatch.setattr(shap, "explain", broken)
    gallery, report, zip_path = client.predict(handle_file(str(face_image)), FAST_DETECTOR, ALL_METHODS,
                                               *SMALL.values(), False, api_name="/explain")
    rec = report["methods"]["shap"]
    assert rec["status"] == "error" and needle in rec["error"] and "Traceback" not in rec["error"]
    others = {m: r["status"] for m, r in report["methods"].items() if m != "shap"}
    assert set(others.values()) == {"ok"}, others
    assert len(gallery) == len(ALL_METHODS) - 1
    # The tab's text is the same error, not a picture.
    from explainers.panel import PanelResult

    res = PanelResult("shap", "SHAP", None, None, None, rec["error"])
    from analysis.text import method_md

    assert "could not run" in method_md(res, False) and needle in method_md(res, False)
    # A failure is not cached: once the method works again, it runs.
    monkeypatch.undo()
    _, report, _ = client.predict(handle_file(str(face_image)), FAST_DETECTOR, ["shap"], *SMALL.values(), False,
                                  api_name="/explain")
    assert report["methods"]["shap"]["status"] == "ok" and not report["methods"]["shap"]["cached"]


def _queue_idle(app, timeout: float = 120) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        q = app.demo._queue
        busy = any(j for j in q.active_jobs if j) or any(len(v.queue) for v in q.event_queue_per_concurrency_id.values())
        if not busy:
            return True
        time.sleep(0.2)
    return False


def test_client_disconnect_mid_explanation_leaks_nothing(app_server, client, face_image):
    """Start /explain over raw HTTP, drop the connection after the first bytes, then check the
    server: the job ends (finished or cancelled), no hooks stay on the model, no threads
    pile up, and the next request is answered."""
    import httpx
    from gradio_client import handle_file

    import detector.weights as dw

    url, app = app_server
    client.predict(handle_file(str(face_image)), FAST_DETECTOR, False, api_name="/predict")  # model loaded
    app.CACHE.clear()
    threads_before = threading.active_count()
    with httpx.Client(base_url=url, timeout=30) as http:
        with open(face_image, "rb") as f:
            r = http.post("gradio_api/upload", files={"files": ("face.png", f, "image/png")})
        r.raise_for_status()
        path = r.json()[0]
        data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, FAST_DETECTOR, ALL_METHODS,
                SMALL["ig_steps"], 64, 400, False]
        r = http.post("gradio_api/call/explain", json={"data": data})
        r.raise_for_status()
        event_id = r.json()["event_id"]
        with http.stream("GET", f"gradio_api/call/explain/{event_id}") as stream:
            for _ in stream.iter_bytes():
                break  # first bytes (heartbeat or progress), then hang up
    assert _queue_idle(app), "the job never ended after the client left"
    for (name, _dev), lm in list(dw._cache.items()):
        assert hooks_left(lm.model) == [], f"hooks left on {name}"
    r = client.predict(handle_file(str(face_image)), FAST_DETECTOR, False, api_name="/predict")
    assert r["label"] in ("fake", "real")
    time.sleep(1)
    assert threading.active_count() <= threads_before + 2


def _blackhole() -> tuple[socket.socket, int]:
    """A TCP port that accepts connections and never answers (a Hub that hangs)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s, s.getsockname()[1]


def test_unreachable_hub_app_starts_on_local_weights_and_says_so(tmp_path, face_image):
    from gradio_client import Client, handle_file

    from tests.conftest import write_tiny_checkpoints

    ckpt = tmp_path / "checkpoints"
    write_tiny_checkpoints(ckpt)
    hole, hole_port = _blackhole()
    port = free_port()
    env = {**os.environ, "DEEPFAKE_CHECKPOINTS": str(ckpt), "DEEPFAKE_HUB_ORG": "acme",
           "HF_ENDPOINT": f"http://127.0.0.1:{hole_port}", "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
           "DEEPFAKE_HUB_TIMEOUT": "3", "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_ETAG_TIMEOUT": "30", "HF_HUB_DOWNLOAD_TIMEOUT": "30"}
    env.pop("HF_HUB_OFFLINE", None)
    log = (tmp_path / "server.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        import httpx

        ready = None
        while time.perf_counter() - t0 < 150 and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    ready = time.perf_counter() - t0
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None, (tmp_path / "server.log").read_text()[-2000:]
        # Hang bounds, not speed targets (those are in tools.latency): a Hub that is waited for per detector at
        # huggingface_hub's 30-s timeouts would take 4 x 30 s; one 3-s wait fits easily even on a loaded CPU.
        assert ready < 90, f"app took {ready:.1f} s to start"
        c = Client(f"http://127.0.0.1:{port}/", verbose=False)
        t1 = time.perf_counter()
        r = c.predict(handle_file(str(face_image)), "all", False, api_name="/predict")
        first = time.perf_counter() - t1
        assert first < 90, f"first verdict took {first:.1f} s"
        from detector.specs import SPECS

        assert len(r["results"]) == len(SPECS)
        for res in r["results"]:
            assert res["weights"].startswith("local:"), res
            assert any("acme/" in n and "unavailable" in n for n in res["notes"]), res["notes"]
        # One wait for the hung Hub, not one per detector.
        waited = [n for res in r["results"] for n in res["notes"] if "within 3 s" in n and "earlier" not in n]
        assert len(waited) == 1, r["results"]
    finally:
        proc.terminate()
        proc.wait(30)
        hole.close()
        log.close()


def test_page_says_when_the_hub_was_not_usable(app_server, monkeypatch):
    import detector.weights as dw

    _, app = app_server
    monkeypatch.setenv("DEEPFAKE_HUB_REPO_CUSTOM_CNN", "acme/custom_cnn")
    monkeypatch.setitem(dw._hub_failed, "acme/custom_cnn", "TimeoutError: no answer from the Hub within 5 s")
    from analysis.text import weights_overview

    text = weights_overview()
    assert "`acme/custom_cnn`" in text and "within 5 s" in text and "local checkpoints" in text
