"""Fixtures for the app tests: tiny random-weight checkpoints and a live server.

Environment is set *before* ``app`` is imported: checkpoints come from a temporary
``DEEPFAKE_CHECKPOINTS`` folder (random weights, so the tests never depend on trained
models), the Hub is offline and Gradio analytics are off.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tiny_checkpoints

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
#: Small explainer parameters (IG steps, SHAP samples, LIME samples) so /explain is fast.
SMALL = {"ig_steps": 4, "shap_samples": 16, "lime_samples": 24}
#: Every method, in the app's display order (the tests check the app against this list).
ALL_METHODS = ["shap", "lime", "saliency", "lrp", "integrated_gradients", "gradcam"]
#: Detector used where one is enough (the smallest).
FAST_DETECTOR = "custom_cnn"
#: Filled by the ``app_server`` fixture: how many models were loaded by ``import app``.
IMPORT_STATE: dict = {}


#: Test figures written beside the random-weight checkpoints (never real ones): the fast detector is the only
#: reliable one, so it is preselected; every other detector in SPECS is weak. Bands: the fast detector's is wide
#: (random weights score near 0.5: inconclusive), DenseNet-121's is the single point 0.5 (always decided).
TEST_AUC_STRONG = {"gan140k": 0.93, "dfdc": 0.81}
TEST_AUC_WEAK = {"gan140k": 0.86, "dfdc": 0.62}
TEST_BANDS = {FAST_DETECTOR: (0.02, 0.98), "densenet121": (0.5, 0.5)}
CONSENSUS_OF = ("densenet121", FAST_DETECTOR)


def write_test_reliability(root: Path) -> None:
    """``metrics.json`` per detector, ``decision_band`` in two configs and a ``consensus.json`` (test figures)."""
    import json

    from detector.consensus import ConsensusModel
    from detector.specs import SPECS
    from detector.verdict_bands import Band

    def metrics(aucs: dict) -> dict:
        return {"split": "test", "per_source": {s: {"roc_auc": a} for s, a in aucs.items()},
                "pooled": {"roc_auc": min(aucs.values())}}

    for name in SPECS:
        folder = root / name
        if not folder.is_dir():
            continue
        aucs = TEST_AUC_STRONG if name == FAST_DETECTOR else TEST_AUC_WEAK
        (folder / "metrics.json").write_text(json.dumps(metrics(aucs)))
        if name in TEST_BANDS:
            cfg = json.loads((folder / "config.json").read_text())
            lo, hi = TEST_BANDS[name]
            cfg["decision_band"] = Band(lo, hi, rule="test band", n_val=100).to_json()
            (folder / "config.json").write_text(json.dumps(cfg))
    ConsensusModel(CONSENSUS_OF, (1.0, 1.0), 0.0, Band(0.4, 0.6, rule="test band"),
                   test=metrics({"gan140k": 0.95, "dfdc": 0.83})).save(root / "consensus.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def face_image(tmp_path_factory) -> Path:
    """A real photo with a frontal face (scikit-image's astronaut)."""
    from PIL import Image
    from skimage import data

    p = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(p)
    return p


@pytest.fixture(scope="package")
def app_server(tmp_path_factory):
    """(url, app module) of a live server on a free local port, with random-weight checkpoints.

    Package-scoped: the environment it sets is restored after the last app test, so the
    other test packages see their usual settings.
    """
    ckpt = tmp_path_factory.mktemp("checkpoints")
    saved = {k: v for k, v in os.environ.items()
             if k in ("DEEPFAKE_CHECKPOINTS", "HF_HUB_OFFLINE", "GRADIO_ANALYTICS_ENABLED")
             or k.startswith("DEEPFAKE_HUB_")}
    os.environ["DEEPFAKE_CHECKPOINTS"] = str(ckpt)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    for var in [v for v in os.environ if v.startswith("DEEPFAKE_HUB_")]:
        os.environ.pop(var)
    write_tiny_checkpoints(ckpt)
    write_test_reliability(ckpt)
    import detector.weights

    detector.weights.clear_cache()
    sys.path.insert(0, str(ROOT))
    import app

    IMPORT_STATE["models_loaded_by_import"] = len(detector.weights._cache)
    app.CACHE.clear()
    port = free_port()
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                    **app.launch_kwargs())
    url = f"http://127.0.0.1:{port}/"
    yield url, app
    app.demo.close()
    app.CACHE.clear()
    os.environ.pop("DEEPFAKE_CHECKPOINTS", None)
    os.environ.update(saved)
    detector.weights.clear_cache()


@pytest.fixture(scope="package")
def client(app_server):
    from gradio_client import Client

    return Client(app_server[0], verbose=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the test item (``item.rep_call``) for failure screenshots."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


# --- the real browser (Playwright driving Debian's Chromium), shared by the browser tests ---------------------
import importlib.util as _ilu  # noqa: E402
import shutil as _shutil  # noqa: E402

CHROMIUM = _shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HAVE_PLAYWRIGHT = _ilu.find_spec("playwright") is not None
#: ``pytestmark`` for browser test modules: skipped, with the reason, without Chromium or Playwright.
BROWSER_MARKS = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install -y chromium)"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="playwright python package not installed"),
]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for one test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
