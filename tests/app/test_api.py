"""The app's API through ``gradio_client`` against a live server (random-weight checkpoints)."""
from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from detector.specs import SPECS

from .conftest import ALL_METHODS, FAST_DETECTOR, SMALL


def _explain(client, path, detector=FAST_DETECTOR, methods=ALL_METHODS, whole_image=False):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), detector, methods, SMALL["ig_steps"], SMALL["shap_samples"],
                          SMALL["lime_samples"], whole_image, api_name="/explain")


def test_api_lists_only_public_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert sorted(api["named_endpoints"]) == ["/explain", "/predict"]
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


def test_predict_all_detectors(client, face_image):
    from gradio_client import handle_file

    r = client.predict(handle_file(str(face_image)), "all", False, api_name="/predict")
    assert [x["model"] for x in r["results"]] == list(SPECS)  # registry order: vggface16, densenet121, ...
    assert r["unavailable"] == {}
    assert "label" not in r
    for x in r["results"]:
        assert x["label"] in ("fake", "real") and 0 <= x["p_fake"] <= 1


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
        assert [x["model"] for x in r["results"]] == [n for n in SPECS if n != "vggface16"]
        assert "vggface16" in r["unavailable"]
        with pytest.raises(AppError, match="No weights for detector 'vggface16'"):
            client.predict(handle_file(str(face_image)), "vggface16", False, api_name="/predict")
    finally:
        shutil.move(str(moved), src)
        dw.clear_cache()
        app.CACHE.clear()
