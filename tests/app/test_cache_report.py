"""Unit tests of the app's non-UI helpers: the bounded result cache and the report zip."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np

from explainers.cache import ResultCache, estimate_nbytes, make_key, source_sha256
from detector.metrics import read_test_metrics
from explainers.report import build_report, write_zip


def test_cache_is_lru_and_bounded_by_entries():
    c = ResultCache(max_entries=2, max_bytes=10**9)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now most recent
    c.put("c", 3)  # evicts b
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3
    assert len(c) == 2 and c.stats()["hits"] == 3


def test_cache_is_bounded_by_bytes():
    arr = np.zeros((100, 100), np.float32)  # 40 kB
    c = ResultCache(max_entries=100, max_bytes=100_000)
    for i in range(5):
        c.put(i, {"map": arr.copy()})
    assert c.nbytes <= 100_000 and len(c) == 2
    assert 0 not in c and 4 in c
    assert c.put("huge", np.zeros(200_000, np.uint8)) is False and "huge" not in c


def test_keys_are_canonical():
    assert make_key("s", "d", "m", {"a": 1, "b": 2.0}) == make_key("s", "d", "m", {"b": 2, "a": 1})
    assert make_key("s", "d", "m", {"a": 1}) != make_key("s", "d", "m", {"a": 2})
    assert source_sha256(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_estimate_counts_arrays_in_dataclasses():
    @dataclass
    class R:
        overlay: np.ndarray
        nested: dict

    r = R(np.zeros((10, 10, 3), np.uint8), {"map": np.zeros((10, 10), np.float32)})
    assert estimate_nbytes(r) >= 300 + 400


@dataclass
class _Attr:
    map: np.ndarray
    runtime_s: float = 0.1
    params: dict = None
    notes: list = None
    extra: dict = None


@dataclass
class _Res:
    method: str
    display_name: str
    attribution: object
    overlay: object
    faithfulness: object
    error: object


def test_report_zip_has_maps_pngs_and_json(tmp_path):
    face = np.full((16, 16, 3), 120, np.uint8)
    ok = _Res("saliency", "Saliency", _Attr(np.random.rand(16, 16).astype(np.float32), params={}, notes=["n"]),
              np.full((20, 16, 3), 200, np.uint8), {"score": 0.3, "meaning": "m", "curve": [0.1, float("nan")]}, None)
    bad = _Res("lime", "LIME", None, None, None, "LIME needs the 'lime' package: pip install lime")
    rep = build_report(image_sha256="0" * 64, image_name="x.png", face_crop=True, verdicts=[], explained_with="m",
                       target=(1, "fake"), results=[ok, bad], cached_methods=["saliency"])
    assert rep["methods"]["saliency"]["status"] == "ok" and rep["methods"]["saliency"]["cached"]
    assert rep["methods"]["lime"]["status"] == "error" and "pip install lime" in rep["methods"]["lime"]["error"]
    z = write_zip(rep, tmp_path / "r.zip", face_raw=face, face=face, results=[ok, bad])
    with zipfile.ZipFile(z) as zf:
        names = set(zf.namelist())
        assert names == {"report.json", "face_raw.png", "face.png", "maps/saliency.png", "maps/saliency.npy"}
        loaded = np.load(io.BytesIO(zf.read("maps/saliency.npy")))
        assert loaded.dtype == np.float32 and np.allclose(loaded, ok.attribution.map)
        data = json.loads(zf.read("report.json"))  # strict JSON: NaN became null
        assert data["methods"]["saliency"]["faithfulness"]["curve"] == [0.1, None]


def test_read_test_metrics(tmp_path):
    assert read_test_metrics(tmp_path) == (None, None)
    (tmp_path / "README.md").write_text(
        "# Card\n\n| split | ROC AUC | accuracy |\n|---|---|---|\n| test | 0.91 | 0.85 |\n")
    table, src = read_test_metrics(tmp_path)
    assert src == "README.md" and "0.91" in table
    (tmp_path / "README.md").write_text(
        "# Card\n\n## Training\n\n| epoch | val AUC dfdc |\n|---|---|\n| 1 | 0.70 |\n\n"
        "## Test metrics\n\nMeasured with ...\n\n| source | n | ROC AUC |\n|---|---|---|\n| dfdc | 10 | 0.88 |\n")
    table, _ = read_test_metrics(tmp_path)
    assert "0.88" in table and "0.70" not in table
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"per_source": {"gan140k": {"roc_auc": 0.99, "accuracy": 0.97}}, "pooled": {"roc_auc": 0.95}}))
    table, src = read_test_metrics(tmp_path)
    assert src == "metrics.json" and "| gan140k | 0.9900 | 0.9700 |" in table and "| pooled | 0.9500 |" in table
    (tmp_path / "metrics.json").write_text("{not json")
    assert read_test_metrics(tmp_path)[1] == "README.md"
