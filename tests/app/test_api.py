"""The app's API through ``gradio_client`` against a live server (random-weight checkpoints)."""
from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from detector.specs import SPECS

from .conftest import ALL_METHODS, CONSENSUS_OF, FAST_DETECTOR, SMALL, TEST_AUC_STRONG, TEST_AUC_WEAK, TEST_BANDS


def _explain(client, path, detector=FAST_DETECTOR, methods=ALL_METHODS, whole_image=False):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), detector, methods, SMALL["ig_steps"], SMALL["shap_samples"],
                          SMALL["lime_samples"], whole_image, api_name="/explain")


def test_api_lists_only_public_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert sorted(api["named_endpoints"]) == ["/analyze_video", "/explain", "/predict"]
    assert not api["unnamed_endpoints"]
    names = [p["parameter_name"] for p in api["named_endpoints"]["/explain"]["parameters"]]
    assert names == ["image", "detector", "methods", "ig_steps", "shap_samples", "lime_samples", "whole_image"]


def test_predict_one_detector(client, face_image):
    from gradio_client import handle_file

    r = client.predict(handle_file(str(face_image)), FAST_DETECTOR, False, api_name="/predict")
    assert r["detector"] == FAST_DETECTOR and r["face_crop"] is True
    assert r["label"] in ("fake", "real")
    assert abs(r["p_fake"] + r["p_real"] - 1) < 1e-5
    (res,) = r["results"]
    assert res["model"] == FAST_DETECTOR and res["display_name"] == "Custom CNN"
    assert res["face"] is not None and len(res["face"]) == 4
    assert res["weights"].startswith("local:")
    assert len(r["image_sha256"]) == 64
    # issue 11: three-way verdict with the detector's band, reliability from metrics.json, warnings
    from detector.verdict_bands import verdict3

    assert res["verdict"] == r["verdict"] == verdict3(res["p_fake"], {"lo": TEST_BANDS[FAST_DETECTOR][0],
                                                                     "hi": TEST_BANDS[FAST_DETECTOR][1]})
    assert res["reliability"] == {"test_auc": TEST_AUC_STRONG, "weak": False}
    from detector.specs import get_spec

    small_face = max(res["face"][2:]) < get_spec(FAST_DETECTOR).input_size  # the astronaut's face is ~100 px
    assert [w for w in res["warnings"] if "The face is only" in w] == (
        [f"The face is only {res['face'][2]}x{res['face'][3]} px, smaller than this detector's "
         f"{get_spec(FAST_DETECTOR).input_size} px input: it was enlarged, which blurs the fine detail detectors "
         "rely on. Treat the score with caution."] if small_face else [])
    assert "consensus" not in r


def test_predict_all_detectors(client, face_image):
    from gradio_client import handle_file

    from detector.consensus import consensus
    from detector.reliability import ranked
    from detector.verdict_bands import read_band, verdict3

    r = client.predict(handle_file(str(face_image)), "all", False, api_name="/predict")
    order = [x["model"] for x in r["results"]]
    assert order == ranked() and sorted(order) == sorted(SPECS) and order[0] == FAST_DETECTOR  # best first
    assert r["unavailable"] == {}
    assert "label" not in r
    for x in r["results"]:
        assert x["label"] in ("fake", "real") and 0 <= x["p_fake"] <= 1
        assert x["verdict"] == verdict3(x["p_fake"], read_band(x["model"]))
        assert x["reliability"]["weak"] == (x["model"] != FAST_DETECTOR)
        assert x["reliability"]["test_auc"] == (TEST_AUC_STRONG if x["model"] == FAST_DETECTOR else TEST_AUC_WEAK)
    dense = next(x for x in r["results"] if x["model"] == "densenet121")
    assert dense["verdict"] == ("fake" if dense["p_fake"] > 0.5 else "real")  # its test band is the point 0.5
    c = r["consensus"]
    p, verdict = consensus({x["model"]: x["p_fake"] for x in r["results"]})
    assert c["detectors"] == list(CONSENSUS_OF) and c["note"] is None
    assert abs(c["p_fake"] - p) < 1e-5 and c["verdict"] == verdict
    assert c["reliability"] == {"test_auc": {"gan140k": 0.95, "dfdc": 0.83}, "weak": False}


def test_omitted_detector_is_the_most_reliable(client, face_image):
    from gradio_client import handle_file

    from detector.reliability import default_detector

    assert default_detector().name == FAST_DETECTOR
    r = client.predict(handle_file(str(face_image)), api_name="/predict")
    assert r["detector"] == FAST_DETECTOR and [x["model"] for x in r["results"]] == [FAST_DETECTOR]
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for ep in ("/predict", "/explain"):
        (param,) = [x for x in api[ep]["parameters"] if x["parameter_name"] == "detector"]
        assert param["parameter_has_default"] and param["parameter_default"] is None


def test_tiny_image_is_refused_and_whole_image_without_face_is_flagged(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from detector.reliability import NO_FACE_WARNING

    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tiny)
    for whole in (False, True):
        with pytest.raises(AppError, match="20x20 px; images under 64 px on a side are not scored"):
            client.predict(handle_file(str(tiny)), FAST_DETECTOR, whole, api_name="/predict")
    flat = tmp_path / "flat_small.png"
    Image.fromarray(np.full((100, 120, 3), 90, np.uint8)).save(flat)
    r = client.predict(handle_file(str(flat)), "all", True, api_name="/predict")
    for x in r["results"]:
        assert NO_FACE_WARNING in x["warnings"]
        assert any("smaller than this detector" in w for w in x["warnings"])  # 100 px < every input side


def test_consensus_names_a_missing_detector(app_server, client, face_image, tmp_path):
    import shutil

    from gradio_client import handle_file

    import detector.weights as dw

    _, app = app_server
    gone = CONSENSUS_OF[0]
    src = dw.get_spec(gone).local_dir
    shutil.move(str(src), tmp_path / gone)
    dw.clear_cache()
    app.CACHE.clear()
    try:
        r = client.predict(handle_file(str(face_image)), "all", False, api_name="/predict")
        c = r["consensus"]
        assert c["p_fake"] is None and c["verdict"] is None
        assert gone in c["note"] and "missing" in c["note"]
        assert gone in r["unavailable"]
    finally:
        shutil.move(str(tmp_path / gone), src)
        dw.clear_cache()
        app.CACHE.clear()


def test_explain_returns_maps_report_and_zip(client, face_image):
    gallery, report, zip_path = _explain(client, face_image)
    methods = report["methods"]
    assert list(methods) == ALL_METHODS  # report in display order
    for m, rec in methods.items():
        assert rec["status"] == "ok", (m, rec["error"])
        assert rec["runtime_s"] >= 0 and rec["faithfulness"]["meaning"]
    assert methods["integrated_gradients"]["params"]["n_steps"] == SMALL["ig_steps"]
    assert methods["shap"]["params"]["nsamples"] == SMALL["shap_samples"]
    assert methods["lime"]["params"]["num_samples"] == SMALL["lime_samples"]
    assert report["explained_with"] == FAST_DETECTOR and report["verdicts"][0]["model"] == FAST_DETECTOR
    v = report["verdicts"][0]
    assert v["verdict"] in ("fake", "real", "inconclusive") and isinstance(v["warnings"], list)
    assert v["reliability"] == {"test_auc": TEST_AUC_STRONG, "weak": False}
    assert len(gallery) == len(ALL_METHODS)
    for item in gallery:
        with Image.open(item["image"]) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"))
        assert arr.shape[0] > 100 and arr.shape[1] > 100 and arr.std() > 5
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        assert {"report.json", "face.png", "face_raw.png"} <= names
        for m in ALL_METHODS:
            assert f"maps/{m}.png" in names and f"maps/{m}.npy" in names
        assert json.loads(zf.read("report.json"))["image"]["sha256"] == report["image"]["sha256"]


def test_explain_again_is_served_from_cache(client, face_image):
    _explain(client, face_image)  # make sure everything is cached (order of tests may vary)
    t0 = time.perf_counter()
    _, report, _ = _explain(client, face_image)
    assert all(rec["cached"] for rec in report["methods"].values())
    assert time.perf_counter() - t0 < 15


def test_bad_upload_gives_clear_error_then_next_request_works(client, face_image, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "not_really.png"
    bad.write_text("this is a text file, not a picture\n")
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad)), FAST_DETECTOR, False, api_name="/predict")
    msg = str(info.value)
    assert "not an image" in msg and "Traceback" not in msg
    with pytest.raises(AppError, match="not an image"):
        _explain(client, bad, methods=["gradcam"])
    r = client.predict(handle_file(str(face_image)), FAST_DETECTOR, False, api_name="/predict")
    assert r["label"] in ("fake", "real")


def test_no_face_error_and_whole_image(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(flat)
    with pytest.raises(AppError, match="No face found"):
        client.predict(handle_file(str(flat)), FAST_DETECTOR, False, api_name="/predict")
    r = client.predict(handle_file(str(flat)), FAST_DETECTOR, True, api_name="/predict")
    assert r["face_crop"] is False and r["results"][0]["face"] is None


def test_unknown_detector_is_a_clear_error(client, face_image):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="detector"):
        client.predict(handle_file(str(face_image)), "resnet9000", False, api_name="/predict")


def test_missing_weights_are_reported(app_server, client, face_image, tmp_path, monkeypatch):
    """With one checkpoint gone, 'all' lists it as unavailable and the single detector says why."""
    import shutil

    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    import detector.weights as dw
    from analysis.text import weights_overview

    _, app = app_server
    src = dw.get_spec("vggface16").local_dir
    moved = tmp_path / "vggface16"
    shutil.move(str(src), moved)
    dw.clear_cache()
    app.CACHE.clear()
    try:
        assert "VGGFace16" in weights_overview()
        r = client.predict(handle_file(str(face_image)), "all", False, api_name="/predict")
        from detector.reliability import ranked

        assert [x["model"] for x in r["results"]] == [n for n in ranked() if n != "vggface16"]
        assert "vggface16" in r["unavailable"]
        with pytest.raises(AppError, match="No weights for detector 'vggface16'"):
            client.predict(handle_file(str(face_image)), "vggface16", False, api_name="/predict")
    finally:
        shutil.move(str(moved), src)
        dw.clear_cache()
        app.CACHE.clear()
