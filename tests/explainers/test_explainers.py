"""Tests of the explainers package (offline, tiny models; see conftest.py)."""
from __future__ import annotations

import gc
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch

import explainers as E
from detector.errors import DetectorError
from detector.specs import get_spec
from explainers.faithfulness import deletion_insertion
from explainers.panel import iter_panel
from explainers.render import grid, overlay, save_map_npy
from tests.conftest import hooks_left

METHODS = list(E.METHOD_ORDER)

#: Light parameters so the module stays fast; our real defaults are timed by explainers.bench.
#: LIME uses SLIC here: quickshift (the default) cuts these 64-px noise images into only 2-3
#: regions, too few for a rank test; on faces at the models' input size it gives 9-35.
FAST: dict[str, dict] = {
    "lime": {"num_samples": 60, "n_segments": 25, "segmentation": "slic"},
    "shap": {"nsamples": 8, "batch_size": 8},
    "integrated_gradients": {"n_steps": 8, "internal_batch_size": 8},
}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def param_state(model) -> dict:
    """Values, requires_grad and absence of .grad of every parameter, plus buffers."""
    st = {f"p:{n}": (p.detach().clone(), p.requires_grad, p.grad is None) for n, p in model.named_parameters()}
    st.update({f"b:{n}": (b.detach().clone(), None, True) for n, b in model.named_buffers()})
    return st


def assert_same_state(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k][0], after[k][0]), f"{k} changed"
        assert before[k][1:] == after[k][1:], f"{k} requires_grad/grad changed"


# --------------------------------------------------------------------------- registry / contract

def test_registry_contract():
    assert E.METHOD_ORDER == ["shap", "lime", "saliency", "lrp", "integrated_gradients", "gradcam"]
    assert E.list_explainers() == E.METHOD_ORDER
    for name in METHODS:
        ex = E.get_explainer(name)
        assert isinstance(ex, E.Explainer) and ex.name == name
        assert ex.display_name and ex.meaning and isinstance(ex.requires, tuple)
        assert isinstance(ex.default_params, dict) and isinstance(ex.library_defaults, dict)
    with pytest.raises(KeyError, match="integrated_gradients"):
        E.get_explainer("occlusion")
    assert issubclass(E.ExplainerUnavailable, DetectorError)


def test_unknown_param_and_default_target(trained):
    x = trained.x1[:1]
    with pytest.raises(TypeError, match="n_step"):
        E.explain("integrated_gradients", trained.model, x, n_step=3)
    a = E.explain("saliency", trained.model, x)  # target=None -> argmax
    with torch.no_grad():
        assert a.target == int(trained.model(x).argmax(1))


# --------------------------------------------------------------------------- every method

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ["custom_cnn", "densenet"])
def test_map_shape_dtype_finite_and_model_untouched(method, arch, trained, tiny_densenet):
    model, spec = (trained.model, None) if arch == "custom_cnn" else (tiny_densenet, get_spec("densenet121"))
    x = trained.x1[:1]
    before = param_state(model)
    a = E.explain(method, model, x, target=1, spec=spec, **FAST.get(method, {}))
    assert isinstance(a, E.Attribution) and a.method == method and a.target == 1
    assert a.map.dtype == np.float32 and a.map.shape == tuple(x.shape[-2:])
    assert np.isfinite(a.map).all() and np.abs(a.map).max() > 0
    assert a.runtime_s > 0 and isinstance(a.notes, list) and isinstance(a.extra, dict)
    if not a.signed:
        assert a.map.min() >= 0
    assert hooks_left(model) == []
    assert_same_state(before, param_state(model))
    assert not model.training


@pytest.mark.parametrize("method", ["gradcam", "lrp", "saliency", "integrated_gradients"])
def test_no_hooks_left_after_error(method, trained):
    """A failure inside the hooked computation (bad target) must still remove every hook."""
    model = trained.model
    before = param_state(model)
    with pytest.raises(Exception):
        E.explain(method, model, trained.x1[:1], target=7, **FAST.get(method, {}))
    assert hooks_left(model) == []
    assert_same_state(before, param_state(model))


def test_works_inside_inference_mode(trained):
    with torch.inference_mode():
        x = trained.x1[:1].clone()
        a = E.explain("saliency", trained.model, x, target=1)
    assert np.abs(a.map).max() > 0


# --------------------------------------------------------------------------- method-specific checks

def test_saliency_is_abs_input_gradient(trained):
    model, x = trained.model, trained.x1[:1]
    a = E.explain("saliency", model, x, target=1)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg)[0, 1], xg)
    expected = g.abs().amax(dim=1)[0].numpy()
    np.testing.assert_allclose(a.map, expected, rtol=1e-5, atol=1e-7)
    assert a.signed is False


def test_integrated_gradients_completeness(trained):
    model, x = trained.model, trained.x1[1:2]
    a = E.explain("integrated_gradients", model, x, target=1, n_steps=64, internal_batch_size=64)
    with torch.no_grad():
        gap = float(model(x)[0, 1] - model(torch.zeros_like(x))[0, 1])
    assert abs(a.extra["logit_gap"] - gap) < 1e-4
    # The map is the channel sum, so its sum is the sum of all attributions.
    assert abs(float(a.map.sum()) - gap) <= 0.05 * abs(gap)
    assert a.extra["completeness_error"] < 0.05
    coarse = E.explain("integrated_gradients", model, x, target=1, n_steps=4, internal_batch_size=4)
    assert coarse.extra["completeness_error"] >= a.extra["completeness_error"] - 1e-6


@pytest.mark.parametrize("rgb", [False, True])
def test_lrp_conservation_custom_cnn(rgb):
    """With no bias anywhere every rule (ZBox, Gamma, Epsilon, Norm for pooling) is conservative,
    also through the colour branch's concatenation (``rgb=True``).

    Tolerance 1%: only the stabilisers (epsilon = 1e-6 added to each denominator) leak
    relevance; the measured error is ~1e-5 relative. With biases (a real model), part of
    the logit goes to the biases, so we only check the reported sum there.
    """
    import timm

    import detector.models  # noqa: F401

    torch.manual_seed(3)
    m = timm.create_model("custom_cnn", num_classes=2, widths=(8, 16, 16, 32), rgb=rgb)
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):  # random scale, no shift -> folded convs have zero bias
            mod.weight.data.uniform_(0.5, 1.5, generator=g)
            mod.running_var.uniform_(0.5, 2.0, generator=g)
            mod.running_mean.zero_()
            mod.bias.data.zero_()
    m.fc.bias.data.zero_()
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        logits = m(x)[0]
    for target in (0, 1):
        a = E.explain("lrp", m, x, target=target)
        assert abs(float(a.map.sum()) - float(logits[target])) <= 0.01 * abs(float(logits[target])) + 1e-6
        # BatchNorm folded into the convs changes the float rounding slightly.
        assert abs(a.extra["target_logit"] - float(logits[target])) < 1e-4
        assert not any("approximation" in n for n in a.notes)
    assert hooks_left(m) == [] and m.fc.bias is not None and m.features.conv1_1.bias is None


def test_lrp_reports_sum_and_flags_densenet(trained, tiny_densenet):
    a = E.explain("lrp", trained.model, trained.x1[:1], target=1)
    assert abs(a.extra["relevance_sum"] - float(a.map.sum())) < 1e-3 * max(1.0, abs(a.extra["relevance_sum"]))
    d = E.explain("lrp", tiny_densenet, trained.x1[:1], target=1, spec=get_spec("densenet121"))
    assert d.extra["approximate"] and any("approximation" in n for n in d.notes)
    d2 = E.explain("lrp", tiny_densenet, trained.x1[:1], target=1)  # no spec: detected from the model
    assert d2.extra["approximate"]


def test_gradcam_layer_choice(trained):
    a = E.explain("gradcam", trained.model, trained.x1[:1], target=1)
    assert a.extra["layer"] == "features.relu4_2" and any("last Conv2d/ReLU" in n for n in a.notes)
    spec = get_spec("custom_cnn")
    b = E.explain("gradcam", trained.model, trained.x1[:1], target=1, spec=spec)
    assert b.extra["layer"] == spec.gradcam_layer
    s = E.explain("gradcam", trained.model, trained.x1[:1], target=1, relu=False)
    assert s.signed and not a.signed and a.map.min() >= 0


def test_stochastic_methods_are_seeded(trained):
    x = trained.x1[:1]
    for m in ("lime", "shap"):
        a = E.explain(m, trained.model, x, target=1, **FAST[m])
        b = E.explain(m, trained.model, x, target=1, **FAST[m])
        np.testing.assert_array_equal(a.map, b.map)


# --------------------------------------------------------------------------- randomisation sanity check

@pytest.mark.parametrize("method", METHODS)
def test_maps_change_when_weights_are_randomised(method, trained, random_cnn):
    """Adebayo et al. (2018): a map that survives re-initialising the weights does not explain the model.

    Mean Spearman correlation over 4 inputs between the trained model's map and its
    re-initialised copy's map must be < 0.5. Grad-CAM is checked at ``features.relu3_2``
    (8x8): in this tiny 64-px model the last layer is 4x4 with whole-image receptive fields,
    where both models give the same padding-driven centre blob, which says nothing about
    the weights.
    """
    params = dict(FAST.get(method, {}))
    if method == "gradcam":
        params["layer"] = "features.relu3_2"
    corrs = []
    for i in range(trained.x1.shape[0]):
        x = trained.x1[i:i + 1]
        a = E.explain(method, trained.model, x, target=1, **params)
        b = E.explain(method, random_cnn, x, target=1, **params)
        corrs.append(spearman(a.map, b.map))
    assert np.mean(corrs) < 0.5, corrs


# --------------------------------------------------------------------------- resources / dependencies

def test_memory_does_not_grow(trained):
    model, x = trained.model, trained.x1[:1]
    for _ in range(5):
        E.explain("saliency", model, x, target=1)
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    rss0 = _rss()
    for _ in range(50):
        E.explain("saliency", model, x, target=1)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 256 * 1024, f"python heap grew by {grown} bytes over 50 calls"
    assert _rss() - rss0 < 30 * 2**20


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:  # not Linux
        return 0


@pytest.mark.parametrize("method,package,pip", [("lime", "lime", "lime"), ("shap", "shap", "shap"),
                                                ("lrp", "zennit", "zennit"), ("saliency", "captum", "captum")])
def test_missing_dependency(method, package, pip, monkeypatch, trained):
    monkeypatch.setitem(sys.modules, package, None)
    ex = E.get_explainer(method)
    assert not ex.available()
    with pytest.raises(E.ExplainerUnavailable) as err:
        ex.explain(trained.model, trained.x1[:1], target=1)
    assert f"needs the '{package}' package: pip install {pip}" in err.value.message
    assert err.value.message.startswith(ex.display_name)


# --------------------------------------------------------------------------- panel

def test_panel_streams_and_isolates_failures(trained, face, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(E.get_explainer("gradcam"), "_explain", boom)
    monkeypatch.setitem(sys.modules, "lime", None)
    results = list(iter_panel(trained.model, trained.x1[:1], face, 1, spec=get_spec("custom_cnn"),
                              params={m: FAST.get(m, {}) for m in METHODS}))
    assert [r.method for r in results][:2] == ["saliency", "gradcam"]  # cheapest first
    assert sorted(r.method for r in results) == sorted(METHODS)
    by = {r.method: r for r in results}
    assert "out of memory" in by["gradcam"].error and "Traceback" not in by["gradcam"].error
    assert by["lime"].error == "LIME needs the 'lime' package: pip install lime"
    for m in ("saliency", "lrp", "integrated_gradients", "shap"):
        r = by[m]
        assert r.error is None and r.attribution is not None and r.display_name
        assert r.overlay.dtype == np.uint8 and r.overlay.shape[0] > face.shape[0]
        f = r.faithfulness
        assert 0 <= f["deletion_auc"] <= 1 and 0 <= f["insertion_auc"] <= 1
    assert hooks_left(trained.model) == []


def test_panel_method_subset_and_no_faithfulness(trained, face):
    res = list(iter_panel(trained.model, trained.x1[:1], face, 1, methods=["gradcam", "saliency"],
                          faithfulness=False))
    assert [r.method for r in res] == ["saliency", "gradcam"]
    assert all(r.faithfulness is None and r.error is None for r in res)


def test_panel_preview_first_map_then_its_faithfulness(trained, face):
    """The first map is yielded before its deletion/insertion passes, then complete; previews are never cached."""
    from types import SimpleNamespace

    from detector.weights import LoadedModel
    from analysis import cached_panel
    from explainers.cache import ResultCache

    res = list(iter_panel(trained.model, trained.x1[:1], face, 1, methods=["gradcam", "saliency"],
                          preview_first=True))
    assert [(r.method, r.pending) for r in res] == [("saliency", True), ("saliency", False), ("gradcam", False)]
    assert res[0].faithfulness is None and res[0].overlay is not None and res[0].error is None
    assert res[1].faithfulness is not None
    np.testing.assert_array_equal(res[0].attribution.map, res[1].attribution.map)

    spec = get_spec("custom_cnn")
    pred = SimpleNamespace(label="fake", target=1, input=SimpleNamespace(tensor=trained.x1[:1], face=face))
    loaded = LoadedModel(trained.model, spec, {}, "test", "cpu")
    cache = ResultCache()
    first = [(r.method, r.pending, c) for r, c in cached_panel(cache, "sha", pred, loaded, ["saliency"],
                                                                preview_first=True)]
    assert first == [("saliency", True, False), ("saliency", False, False)]
    again = [(r.pending, c, r.faithfulness is not None) for r, c in cached_panel(cache, "sha", pred, loaded,
                                                                                  ["saliency"], preview_first=True)]
    assert again == [(False, True, True)]


def test_cached_panel_stores_overlays_compressed_and_returns_them_unchanged(trained, face):
    """A cache hit gives back the very overlay that was computed, while the cache holds less than the raw array."""
    from types import SimpleNamespace

    from analysis import cached_panel
    from detector.weights import LoadedModel
    from explainers.cache import ResultCache, estimate_nbytes

    spec = get_spec("custom_cnn")
    pred = SimpleNamespace(label="fake", target=1, input=SimpleNamespace(tensor=trained.x1[:1], face=face))
    loaded = LoadedModel(trained.model, spec, {}, "test", "cpu")
    cache = ResultCache()
    (fresh, was_cached), = list(cached_panel(cache, "sha", pred, loaded, ["gradcam"]))
    (hit, hit_cached), = list(cached_panel(cache, "sha", pred, loaded, ["gradcam"]))
    assert (was_cached, hit_cached) == (False, True)
    assert hit.overlay is not fresh.overlay and hit.overlay.dtype == np.uint8
    np.testing.assert_array_equal(hit.overlay, fresh.overlay)
    np.testing.assert_array_equal(hit.attribution.map, fresh.attribution.map)
    assert hit.faithfulness == fresh.faithfulness
    assert cache.nbytes < estimate_nbytes(fresh)


# --------------------------------------------------------------------------- faithfulness / rendering

def test_deletion_insertion(trained):
    model, x = trained.model, trained.x1[:1]
    a = E.explain("integrated_gradients", model, x, target=1, n_steps=16, internal_batch_size=16)
    f = deletion_insertion(model, x, a.map, 1, steps=10)
    for k in ("deletion_auc", "insertion_auc", "score"):
        assert np.isfinite(f[k])
    assert 0 <= f["deletion_auc"] <= 1 and 0 <= f["insertion_auc"] <= 1
    assert len(f["deletion_curve"]) == len(f["insertion_curve"]) == len(f["fractions"]) == 11
    assert f["deletion_curve"][0] == pytest.approx(f["insertion_curve"][-1])
    assert "p(fake)" in f["meaning"] and "lower = more faithful" in f["meaning"]
    # The map orders pixels better than its negation (deleting evidence against first).
    g = deletion_insertion(model, x, -a.map, 1, steps=10)
    assert f["score"] > g["score"]


# --------------------------------------------------------------------------- scoring precision (bf16 autocast)

@pytest.mark.parametrize("mode, device, cpu_bf16, expected", [
    ("0", "cpu", True, "fp32"), ("1", "cpu", False, "bf16"), ("auto", "cpu", True, "bf16"),
    ("auto", "cpu", False, "fp32"), ("auto", "cuda:0", False, "bf16"), ("1", "mps", True, "fp32"),
])
def test_scoring_precision_follows_setting_and_hardware(mode, device, cpu_bf16, expected, monkeypatch):
    import detector.hardware as hw

    monkeypatch.setenv("DEEPFAKE_EXPLAIN_BF16", mode)
    monkeypatch.setattr(hw, "cpu_bf16", lambda: cpu_bf16)
    assert E.scoring_precision(device) == expected


class _AutocastProbe(torch.nn.Module):
    """Wraps a model and records, per forward pass, whether CPU autocast was on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(torch.is_autocast_enabled("cpu"))
        return self.model(x)


@pytest.mark.parametrize("mode, precision", [("0", "fp32"), ("1", "bf16")])
def test_lime_scores_in_the_stated_precision_and_faithfulness_in_fp32(mode, precision, trained, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_EXPLAIN_BF16", mode)
    probe, x = _AutocastProbe(trained.model), trained.x1[:1]
    a = E.explain("lime", probe, x, target=1, **FAST["lime"])
    assert a.extra["precision"] == precision and f"scored in {precision}" in a.notes[0]
    assert probe.seen and set(probe.seen) == {precision == "bf16"}  # every LIME batch
    probe.seen.clear()
    g = E.explain("saliency", probe, x, target=1)
    deletion_insertion(probe, x, g.map, 1, steps=6)
    assert probe.seen and set(probe.seen) == {False}  # saliency and faithfulness: always fp32


def test_lime_resolves_its_precision_once(trained, monkeypatch):
    """A setting changed mid-explanation must not split LIME's batches or make the note disagree."""
    import os

    class _Flip(_AutocastProbe):
        def forward(self, x):
            os.environ["DEEPFAKE_EXPLAIN_BF16"] = "1"  # flipped after the first batch started
            return super().forward(x)

    monkeypatch.setenv("DEEPFAKE_EXPLAIN_BF16", "0")
    probe = _Flip(trained.model)
    a = E.explain("lime", probe, trained.x1[:1], target=1, **{**FAST["lime"], "batch_size": 8})
    assert len(probe.seen) > 1 and set(probe.seen) == {False}
    assert a.extra["precision"] == "fp32" and "scored in fp32" in a.notes[0]


def test_scoring_autocast_rejects_unknown_precision():
    with pytest.raises(ValueError, match="bf16"):
        with E.scoring_autocast("cpu", "fp16"):
            pass


def test_bf16_lime_agrees_with_fp32(trained, monkeypatch):
    """Rounding LIME's samples to bf16 must not change what its map says."""
    x = trained.x1[:1]
    maps = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("DEEPFAKE_EXPLAIN_BF16", mode)
        maps[mode] = E.explain("lime", trained.model, x, target=1, **FAST["lime"]).map
    assert spearman(maps["0"], maps["1"]) > 0.9


def test_overlay_and_grid(face, tmp_path):
    rng = np.random.default_rng(0)
    signed = rng.normal(size=face.shape[:2]).astype(np.float32)
    t0 = time.perf_counter()
    ov = overlay(face, signed, signed=True, title="IG", target_label="fake")
    dt = time.perf_counter() - t0
    assert ov.dtype == np.uint8 and ov.ndim == 3 and ov.shape[2] == 3
    assert ov.shape[0] > face.shape[0] and ov.shape[1] >= face.shape[1]
    assert dt < 0.5  # ~5 ms when the CPU is free
    un = overlay(face, np.abs(signed)[::2, ::2], signed=False)  # map of another size is resized
    assert un.dtype == np.uint8 and un.shape[2] == 3
    g = grid(face, [("IG", ov), ("Saliency", un), ("raw map", signed)])
    assert g.dtype == np.uint8 and g.shape[1] > 2 * ov.shape[1]
    a = E.Attribution("x", signed, 1, {}, 0.1, [], True, {})
    p = save_map_npy(a, tmp_path / "m.npy")
    np.testing.assert_array_equal(np.load(p), signed)


def test_bench_exits_2_without_weights(tmp_path, monkeypatch, capsys):
    from detector.weights import clear_cache
    from explainers.bench import main

    for var in ("DEEPFAKE_HUB_ORG", "DEEPFAKE_HUB_REPO_CUSTOM_CNN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DEEPFAKE_CHECKPOINTS", str(tmp_path))
    clear_cache()
    try:
        assert main(["--model", "custom_cnn", "--device", "cpu", "--skip-defaults"]) == 2
    finally:
        clear_cache()
    assert "No weights for detector 'custom_cnn'" in capsys.readouterr().out


def test_grid_with_pre_titled_overlays(face):
    ov = overlay(face, np.ones(face.shape[:2], np.float32), signed=False, title="Saliency")
    g = grid(face, [("", ov), ("", ov)])
    assert g.dtype == np.uint8 and g.shape[0] < ov.shape[0] + 40  # no extra title row
