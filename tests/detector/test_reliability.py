"""Reliability, three-way verdict bands, consensus, input warnings and faithfulness readings (no model needed)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detector import consensus as cons
from detector.reliability import (FAIR_MARGIN, GOOD_MARGIN, MIN_IMAGE_SIDE, NO_FACE_WARNING, WEAK_AUC,
                                  default_detector, faithfulness_reading, input_refusal, input_warnings, ranked,
                                  reliability)
from detector.specs import SPECS, get_spec
from detector.verdict_bands import (MIN_CALLS, PRECISION_TARGET, Band, band_from_config, band_precision,
                                    choose_band, headline, read_band, verdict3)


# --- bands -----------------------------------------------------------------------------------------------------

def _synthetic(kind: str, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    if kind == "separable":  # fakes above 0.6, reals below 0.4
        p = np.where(y == 1, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.4, n))
    elif kind == "clean":  # a strong detector: logit separation 6, noise 1
        p = 1 / (1 + np.exp(-((2 * y - 1) * 3.0 + rng.normal(0, 1.0, n))))
    elif kind == "noisy":  # a weak detector: separation 1, noise 1.5
        p = 1 / (1 + np.exp(-((2 * y - 1) * 0.5 + rng.normal(0, 1.5, n))))
    elif kind == "chance":  # scores unrelated to the label
        p = rng.uniform(0.3, 0.7, n)
    else:
        raise ValueError(kind)
    return y, p


@pytest.mark.parametrize("kind, max_width, min_width", [
    ("separable", 0.0, 0.0),
    ("clean", 0.10, 0.0),
    ("noisy", 1.0, 0.15),
    ("chance", 1.0, 0.99),
])
def test_band_width(kind, max_width, min_width):
    y, p = _synthetic(kind)
    b = choose_band(y, p)
    assert 0.0 <= b.lo <= 0.5 <= b.hi <= 1.0
    assert min_width <= b.hi - b.lo <= max_width
    assert b.n_val == len(y) and b.val_precision_target == PRECISION_TARGET
    st = band_precision(y, p, b)
    assert st == b.extra["val"]
    for side in ("fake", "real"):
        if st[f"{side}_calls"]:
            assert st[f"{side}_precision"] >= PRECISION_TARGET


@pytest.mark.parametrize("kind", ["clean", "noisy"])
def test_every_tail_outside_band_meets_target(kind):
    """The rule: every threshold beyond the band (with >= MIN_CALLS images beyond it) keeps the target."""
    y, p = _synthetic(kind, seed=3)
    b = choose_band(y, p)
    for t in np.unique(p):
        if t >= b.hi and (p > t).sum() >= MIN_CALLS:
            assert y[p > t].mean() >= PRECISION_TARGET
        if t <= b.lo and (p < t).sum() >= MIN_CALLS:
            assert (y[p < t] == 0).mean() >= PRECISION_TARGET
    # and the band is the widest such: just inside hi, some eligible tail fails (unless hi is 0.5)
    if b.hi > 0.5:
        inside = np.unique(p[(p >= 0.5) & (p < b.hi)])
        assert any((p > t).sum() >= MIN_CALLS and y[p > t].mean() < PRECISION_TARGET for t in np.r_[0.5, inside])


def test_noisy_band_wider_than_clean():
    bc = choose_band(*_synthetic("clean"))
    bn = choose_band(*_synthetic("noisy"))
    assert bn.hi - bn.lo > bc.hi - bc.lo


def test_chance_detector_never_called():
    y, p = _synthetic("chance")
    b = choose_band(y, p)
    assert (b.lo, b.hi) == (0.0, 1.0)
    assert {verdict3(x, b) for x in p} == {"inconclusive"}


def test_band_json_round_trip_and_config():
    b = choose_band(*_synthetic("noisy"))
    rec = b.to_json()
    assert {"lo", "hi", "rule", "val_precision_target", "n_val"} <= set(rec)
    assert "every threshold" in rec["rule"]
    b2 = Band.from_json(json.loads(json.dumps(rec)))
    assert (b2.lo, b2.hi, b2.n_val) == (b.lo, b.hi, b.n_val)
    assert band_from_config({"decision_band": rec}).hi == b.hi
    assert band_from_config({}) is None
    assert band_from_config({"decision_band": {"lo": 0.7, "hi": 0.9}}) is None  # lo above 0.5
    with pytest.raises(ValueError):
        Band.from_json({"hi": 0.6})


@pytest.mark.parametrize("p, expected", [
    (0.0, "real"), (0.299999, "real"), (0.3, "inconclusive"), (0.5, "inconclusive"), (0.7, "inconclusive"),
    (0.700001, "fake"), (1.0, "fake"), (float("nan"), "inconclusive"),
])
def test_verdict3_edges(p, expected):
    band = Band(0.3, 0.7)
    assert verdict3(p, band) == expected
    assert verdict3(p, band.to_json()) == expected


def test_verdict3_without_band_is_inconclusive():
    assert {verdict3(p, None) for p in (0.0, 0.49, 0.5, 0.51, 1.0)} == {"inconclusive"}
    assert "no validated decision range" in headline(0.99, None) and "FAKE" not in headline(0.99, None)
    assert "never 80% right" in headline(0.99, Band(0.0, 1.0))


@pytest.mark.parametrize("p", [0.3, 0.5, 0.69, 0.7, float("nan")])
def test_headline_inconclusive_has_no_capital_verdict(p):
    h = headline(p, Band(0.3, 0.7))
    assert "FAKE" not in h and "REAL" not in h and h.startswith("Inconclusive")


def test_headline_decided():
    assert "FAKE" in headline(0.9, Band(0.3, 0.7)) and "REAL" in headline(0.1, Band(0.3, 0.7))


# --- reliability -----------------------------------------------------------------------------------------------

def _metrics(aucs: dict[str, float], split: str = "test") -> dict:
    return {"model": "x", "split": split, "n_images": 100, "n_scored": 100,
            "per_source": {s: {"n": 50, "roc_auc": a, "accuracy": 0.5} for s, a in aucs.items()},
            "pooled": {"n": 100, "roc_auc": sum(aucs.values()) / len(aucs)}}


@pytest.fixture()
def ckpts(tmp_path, use_checkpoints):
    """A checkpoint folder with metrics.json for the three detectors, written by the test."""
    def _write(table: dict[str, dict | str | None]) -> Path:
        for name, content in table.items():
            d = tmp_path / name
            d.mkdir(exist_ok=True)
            if content is None:
                continue
            (d / "metrics.json").write_text(content if isinstance(content, str) else json.dumps(content))
        use_checkpoints(tmp_path)
        return tmp_path
    return _write


def test_reliability_from_metrics_file(ckpts):
    ckpts({"densenet121": _metrics({"dfdc": 0.7071, "gan140k": 0.8735})})
    r = reliability("densenet121")
    assert r.known and r.weak and r.test_auc == {"dfdc": 0.7071, "gan140k": 0.8735}
    assert r.sentence == ("On held-out test images this detector ranks a fake above a real 87% of the time for "
                          "GAN faces (gan140k) and 71% for video face swaps (dfdc).")
    assert r.to_json() == {"test_auc": {"dfdc": 0.7071, "gan140k": 0.8735}, "weak": True}
    assert r.tag == "weak: for comparison only" and r.min_auc == 0.7071


@pytest.mark.parametrize("aucs, weak", [
    ({"dfdc": 0.9, "gan140k": 0.99}, False),
    ({"dfdc": WEAK_AUC, "gan140k": 0.99}, False),
    ({"dfdc": WEAK_AUC - 1e-4, "gan140k": 0.99}, True),
    ({"gan140k": 0.5}, True),
])
def test_weak_tagging(ckpts, aucs, weak):
    ckpts({"custom_cnn": _metrics(aucs)})
    r = reliability("custom_cnn")
    assert r.weak is weak and r.tag == ("weak: for comparison only" if weak else "")


@pytest.mark.parametrize("content, reason", [
    (None, "missing"),
    ("{not json", "could not be read"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"per_source": {}}), "no per-source"),
    (json.dumps({"per_source": {"dfdc": {"roc_auc": None}}}), "no valid test ROC AUC"),
    (json.dumps({"per_source": {"dfdc": {"roc_auc": float("nan")}}}), "no valid test ROC AUC"),
    (json.dumps(_metrics({"dfdc": 0.9}, split="val")), "'val' split"),
])
def test_missing_or_corrupt_metrics_is_unknown_and_weak(ckpts, content, reason):
    ckpts({"vggface16": content})
    r = reliability("vggface16")
    assert not r.known and r.weak and reason in r.reason
    assert r.to_json() == {"test_auc": {}, "weak": True}
    assert r.sentence.startswith("Reliability unknown") and r.tag == "unknown reliability"


def test_reliability_unknown_detector_name():
    with pytest.raises(KeyError):
        reliability("no_such_detector")


def test_ranked_by_worst_source_unknown_last(ckpts):
    ckpts({"vggface16": _metrics({"dfdc": 0.56, "gan140k": 0.99}),  # best mean, worst minimum
           "densenet121": _metrics({"dfdc": 0.80, "gan140k": 0.85}),
           "custom_cnn": None})
    assert ranked(["custom_cnn", "vggface16", "densenet121"]) == ["densenet121", "vggface16", "custom_cnn"]
    assert ranked() == ["densenet121", "vggface16"] + [n for n in SPECS if n not in ("densenet121", "vggface16")]


def test_default_detector_prefers_non_weak(ckpts):
    ckpts({"vggface16": _metrics({"dfdc": 0.95, "gan140k": 0.96}),
           "densenet121": _metrics({"dfdc": 0.80, "gan140k": 0.99}),
           "custom_cnn": _metrics({"dfdc": 0.70, "gan140k": 0.99})})
    c = default_detector(["custom_cnn", "densenet121", "vggface16"])
    assert c.name == "vggface16" and not c.all_weak


def test_default_detector_all_weak_says_so(ckpts):
    ckpts({"vggface16": _metrics({"dfdc": 0.56, "gan140k": 0.52}),
           "densenet121": _metrics({"dfdc": 0.707, "gan140k": 0.874}),
           "custom_cnn": _metrics({"dfdc": 0.718, "gan140k": 0.865})})
    c = default_detector(["vggface16", "densenet121", "custom_cnn"])
    assert c.name == "custom_cnn" and c.all_weak and "every detector is weak" in c.reason


def test_default_detector_all_unknown(ckpts):
    ckpts({"vggface16": None, "densenet121": None, "custom_cnn": None})
    c = default_detector(["densenet121", "custom_cnn"])
    assert c.name == "densenet121" and c.all_weak and "no detector has usable test metrics" in c.reason


def test_shipped_checkpoints_have_readable_reliability():
    """Every shipped metrics.json parses (the figures themselves are whatever detector.evaluate wrote)."""
    for name in SPECS:
        if (get_spec(name).local_dir / "metrics.json").is_file():
            r = reliability(name)
            assert r.known, r.reason
            assert r.weak == any(a < WEAK_AUC for a in r.test_auc.values())


# --- consensus -------------------------------------------------------------------------------------------------

def _three_detectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Columns: a good detector, a mediocre one, one at chance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = 2 * y - 1
    good = 1 / (1 + np.exp(-(1.5 * s + rng.normal(0, 1, n))))
    mid = 1 / (1 + np.exp(-(0.5 * s + rng.normal(0, 1, n))))
    chance = rng.uniform(0.2, 0.8, n)
    src = np.where(rng.random(n) < 0.3, "gan140k", "dfdc")
    return np.c_[good, mid, chance], y, src.tolist()


def test_consensus_round_trip(tmp_path):
    names = ["densenet121", "custom_cnn", "vggface16"]
    pv, yv, _ = _three_detectors(1500, 0)
    model = cons.fit(pv, yv, names, {"split": "val", "description": "synthetic"})
    assert model.coef[0] > model.coef[1] > abs(model.coef[2])  # weight follows informativeness
    pt, yt, st = _three_detectors(1000, 1)
    model = cons.ConsensusModel(model.detectors, model.coef, model.intercept, model.band, model.fit_data,
                                cons.test_report(model, pt, yt, st))
    assert set(model.test["per_source"]) == {"dfdc", "gan140k"}
    assert model.test["pooled"]["roc_auc"] >= model.test["single_detectors_roc_auc"]["densenet121"]["pooled"] - 0.01
    path = model.save(tmp_path / cons.CONSENSUS_FILE)
    data = json.loads(path.read_text())
    assert data["detectors"] == names and len(data["coef"]) == 3 and "intercept" in data
    assert {"lo", "hi", "rule"} <= set(data["decision_band"]) and data["fit"]["split"] == "val"
    loaded = cons.load(path)
    row = dict(zip(names, pt[0]))
    p, v = cons.consensus(row, loaded)
    assert p == pytest.approx(model.p_fake(row), abs=1e-12)
    assert v == verdict3(p, loaded.band)
    # same as the formula by hand
    z = loaded.intercept + sum(c * np.log(row[n] / (1 - row[n])) for n, c in zip(names, loaded.coef))
    assert p == pytest.approx(1 / (1 + np.exp(-z)), rel=1e-9)
    # a path works too, and extra detectors are ignored
    assert cons.consensus({**row, "efficientnet_lite0": 0.9}, path)[0] == pytest.approx(p)
    assert cons.consensus_reliability(loaded).known


def test_consensus_refuses_missing_detector(tmp_path):
    names = ["densenet121", "custom_cnn"]
    pv, yv, _ = _three_detectors(500, 2)
    model = cons.fit(pv[:, :2], yv, names)
    with pytest.raises(cons.ConsensusError, match="missing: custom_cnn"):
        cons.consensus({"densenet121": 0.7}, model)
    with pytest.raises(cons.ConsensusError, match="invalid p_fake"):
        cons.consensus({"densenet121": 0.7, "custom_cnn": float("nan")}, model)


def test_consensus_missing_or_corrupt_file(tmp_path, use_checkpoints):
    use_checkpoints(tmp_path)
    with pytest.raises(cons.ConsensusError, match="no consensus fitted"):
        cons.consensus({"densenet121": 0.7})
    (tmp_path / cons.CONSENSUS_FILE).write_text(json.dumps({"detectors": ["a"], "coef": [1.0, 2.0]}))
    with pytest.raises(cons.ConsensusError, match="malformed"):
        cons.load()


def test_calibrated_logit_saturation():
    assert np.isfinite(cons.calibrated_logit(np.array([0.0, 1.0]))).all()
    assert cons.calibrated_logit(0.5) == pytest.approx(0.0)


def test_shipped_consensus_if_present():
    """A shipped consensus.json loads and names only registered detectors."""
    path = cons.consensus_path()
    if not path.is_file():
        pytest.skip("no consensus.json shipped")
    m = cons.load(path)
    assert set(m.detectors) <= set(SPECS)
    p, v = cons.consensus({n: 0.5 for n in m.detectors}, m)
    assert 0 <= p <= 1 and v in ("fake", "real", "inconclusive")


def test_shipped_bands_if_present():
    for name in SPECS:
        b = read_band(name)
        if b is not None:
            assert 0 <= b.lo <= 0.5 <= b.hi <= 1 and b.n_val > 0


# --- input warnings --------------------------------------------------------------------------------------------

SPEC = get_spec("custom_cnn")  # 160 px input


@pytest.mark.parametrize("size, box, found, whole, expect", [
    ((512, 512), (100, 100, 200, 200), True, False, []),
    ((512, 512), (100, 100, 90, 90), True, False, ["smaller than this detector's 160 px input"]),
    ((20, 20), None, None, True, [f"under {MIN_IMAGE_SIDE} px", "without face detection"]),
    ((640, 480), None, False, True, [NO_FACE_WARNING]),
    ((100, 120), None, False, True, [NO_FACE_WARNING, "100x120 px, smaller than"]),
    ((224, 224), None, True, True, []),
    ((224, 224), None, None, True, ["without face detection"]),
    ((63, 400), (0, 0, 60, 60), True, False, ["under 64 px", "smaller than this detector"]),
])
def test_input_warnings(size, box, found, whole, expect):
    w = input_warnings(size, box, SPEC, found, whole)
    assert len(w) == len(expect), w
    for got, want in zip(w, expect):
        assert want in got


@pytest.mark.parametrize("size, refused", [((20, 20), True), ((63, 500), True), ((64, 64), False),
                                           ((1024, 768), False)])
def test_input_refusal(size, refused):
    assert (input_refusal(size) is not None) is refused


# --- faithfulness reading --------------------------------------------------------------------------------------

@pytest.mark.parametrize("score, rand, label", [
    (0.40, 0.05, "good"),
    (0.05 + GOOD_MARGIN, 0.05, "good"),
    (0.05 + GOOD_MARGIN - 0.01, 0.05, "fair"),
    (0.05 + FAIR_MARGIN, 0.05, "fair"),
    (0.06, 0.05, "poor"),
    (-0.2, 0.1, "poor"),
    (float("nan"), 0.1, "unknown"),
])
def test_faithfulness_reading(score, rand, label):
    got, sentence = faithfulness_reading(score, rand)
    assert got == label
    if label != "unknown":
        assert "range -1 to 1" in sentence and f"{rand:.2f}" in sentence and label in sentence


# --- the CLI end to end (a random-weight checkpoint, a tiny generated dataset) ---------------------------------

def test_fit_reliability_cli(tmp_path, use_checkpoints, capsys):
    from PIL import Image

    from detector import fit_reliability
    from tests.conftest import write_tiny_checkpoints

    root = write_tiny_checkpoints(tmp_path / "ckpts", ("custom_cnn",))
    use_checkpoints(root)
    data = tmp_path / "faces"
    rng = np.random.default_rng(0)
    rows = ["path,label,source,group,split"]
    for split in ("val", "test"):
        for i in range(24):
            label, source = ("fake", "real")[i % 2], ("gan140k", "dfdc")[(i // 2) % 2]
            rel = f"{source}/{label}/{split}_{i}.png"
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            base = 90 if label == "fake" else 160  # something a random network can tell apart, sometimes
            Image.fromarray(np.clip(rng.normal(base, 40, (72, 72, 3)), 0, 255).astype(np.uint8)).save(data / rel)
            rows.append(f"{rel},{label},{source},{source}:{split}{i},{split}")
    (data / "index.csv").write_text("\n".join(rows) + "\n")
    cfg_before = json.loads((root / "custom_cnn" / "config.json").read_text())
    args = ["--data", str(data), "--cache", str(tmp_path / "cache")]
    assert fit_reliability.main(args) == 0
    err = capsys.readouterr().err
    assert "skip vggface16" in err and "skip densenet121" in err
    cfg = json.loads((root / "custom_cnn" / "config.json").read_text())
    assert {k: v for k, v in cfg.items() if k != "decision_band"} == cfg_before  # only that key changed
    band = read_band("custom_cnn")
    assert band is not None and band.n_val == 24 and "test" in cfg["decision_band"]
    m = cons.load()
    assert m.detectors == ("custom_cnn",) and m.fit_data["split"] == "val"
    assert set(m.test["per_source"]) == {"dfdc", "gan140k"} and m.test["n_scored"] == 24
    assert len(list((tmp_path / "cache").glob("custom_cnn-*.json"))) == 2
    # a re-run reads the cache and gives the same result
    assert fit_reliability.main(args) == 0
    assert cons.load().coef == m.coef
