import json
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import detector.models  # noqa: F401
from detector import weights
from detector.errors import WeightsError
from detector.specs import get_spec
from detector.weights import load_checkpoint_dir, load_model, pick_device, save_checkpoint

SPEC = get_spec("custom_cnn")


def _tiny(seed=0):
    torch.manual_seed(seed)
    return timm.create_model("custom_cnn", num_classes=2).eval()


def test_local_round_trip_matches_original(tmp_path, use_checkpoints):
    m = _tiny()
    save_checkpoint(m, SPEC, tmp_path / "custom_cnn", temperature=2.0)
    use_checkpoints(tmp_path)
    lm = load_model("custom_cnn", "cpu")
    assert lm.source.startswith("local:") and lm.temperature == 2.0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = m(x), lm.model(x)
    assert torch.allclose(a, b, atol=2e-2, rtol=1e-2)  # fp16 storage, fp32 compute
    assert next(lm.model.parameters()).dtype == torch.float32
    assert load_model("custom_cnn", "cpu") is lm  # cached per (name, device)
    cfg = json.loads((tmp_path / "custom_cnn" / "config.json").read_text())
    assert cfg["architecture"] == "custom_cnn" and cfg["label_names"] == ["real", "fake"]
    assert cfg["pretrained_cfg"]["input_size"] == [3, SPEC.input_size, SPEC.input_size]


def test_plain_timm_create_model_reads_the_folder(tmp_path):
    m = _tiny()
    save_checkpoint(m, SPEC, tmp_path / "custom_cnn")
    tm = timm.create_model(f"local-dir:{tmp_path / 'custom_cnn'}", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), tm(x), atol=2e-2, rtol=1e-2)
    assert tm.pretrained_cfg["label_names"] == ["real", "fake"]


def test_missing_weights_is_a_clear_error(tmp_path, use_checkpoints):
    use_checkpoints(tmp_path)
    with pytest.raises(WeightsError, match=r"No weights for detector 'custom_cnn'.*custom_cnn"):
        load_model("custom_cnn", "cpu")


def test_pickle_is_refused(tmp_path, use_checkpoints):
    d = tmp_path / "custom_cnn"
    d.mkdir()
    torch.save(_tiny().state_dict(), d / "pytorch_model.bin")
    (d / "config.json").write_text(json.dumps({"architecture": "custom_cnn", "num_classes": 2}))
    use_checkpoints(tmp_path)
    with pytest.raises(WeightsError, match=r"Refusing to load pickle.*pytorch_model.bin.*safetensors"):
        load_model("custom_cnn", "cpu")


def test_corrupt_safetensors_names_model_and_path(tmp_path, use_checkpoints):
    d = save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    use_checkpoints(tmp_path)
    with pytest.raises(WeightsError, match=r"custom_cnn.*model.safetensors.*corrupt"):
        load_model("custom_cnn", "cpu")


def test_unknown_architecture_is_a_clear_error(tmp_path):
    d = save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architecture"] = "no_such_net"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="unknown architecture 'no_such_net'"):
        load_checkpoint_dir(d, SPEC)


def test_wrong_shapes_are_a_clear_error(tmp_path):
    d = save_checkpoint(timm.create_model("custom_cnn", num_classes=2, widths=(8, 8, 8, 8)), SPEC,
                        tmp_path / "custom_cnn")
    with pytest.raises(WeightsError, match="does not fit"):
        load_checkpoint_dir(d, SPEC)


def _fake_hub_cache(cache: Path, repo: str, src: Path) -> Path:
    """Lay out a Hugging Face cache entry for ``repo`` holding the files of ``src``."""
    org, name = repo.split("/")
    base = cache / f"models--{org}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (snap / f.name).write_bytes(f.read_bytes())
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    return snap


def test_hub_path_through_offline_cache(tmp_path, monkeypatch, use_checkpoints):
    src = save_checkpoint(_tiny(seed=1), SPEC, tmp_path / "src" / "custom_cnn", temperature=1.25)
    _fake_hub_cache(tmp_path / "hf", "acme/custom_cnn", src)
    use_checkpoints(tmp_path / "nothing-local")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("DEEPFAKE_HUB_ORG", "acme")
    lm = load_model("custom_cnn", "cpu")
    assert lm.source == "hub:acme/custom_cnn"
    assert lm.temperature == 1.25


def test_unreachable_hub_falls_back_fast_and_says_so(tmp_path, monkeypatch, use_checkpoints):
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn")
    use_checkpoints(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("DEEPFAKE_HUB_REPO_CUSTOM_CNN", "acme/missing")
    t0 = time.perf_counter()
    lm = load_model("custom_cnn", "cpu")
    assert time.perf_counter() - t0 < 5
    assert lm.source.startswith("local:")
    assert any("acme/missing" in n and "unavailable" in n for n in lm.notes)


def test_slow_hub_times_out(tmp_path, monkeypatch, use_checkpoints):
    import huggingface_hub

    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn")
    use_checkpoints(tmp_path)
    monkeypatch.setenv("DEEPFAKE_HUB_REPO_CUSTOM_CNN", "acme/slow")
    monkeypatch.setenv("DEEPFAKE_HUB_TIMEOUT", "0.5")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: time.sleep(3))
    t0 = time.perf_counter()
    lm = load_model("custom_cnn", "cpu")
    assert time.perf_counter() - t0 < 2.5
    assert lm.source.startswith("local:") and "within 0.5 s" in lm.notes[0]


def test_hub_repo_comes_from_configuration_only(monkeypatch):
    monkeypatch.delenv("DEEPFAKE_HUB_ORG", raising=False)
    monkeypatch.delenv("DEEPFAKE_HUB_REPO_CUSTOM_CNN", raising=False)
    assert weights.hub_repo_for(SPEC) is None
    monkeypatch.setenv("DEEPFAKE_HUB_ORG", "org")
    assert weights.hub_repo_for(SPEC) == "org/custom_cnn"
    monkeypatch.setenv("DEEPFAKE_HUB_REPO_CUSTOM_CNN", "other/repo")
    assert weights.hub_repo_for(SPEC) == "other/repo"


def test_device_selection(monkeypatch):
    monkeypatch.delenv("DEEPFAKE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert pick_device() == expected
    monkeypatch.setenv("DEEPFAKE_DEVICE", "cpu")
    assert pick_device() == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(WeightsError, match="CUDA"):
            pick_device("cuda")


def test_weights_status_without_loading(tmp_path, use_checkpoints):
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn")
    use_checkpoints(tmp_path)
    st = weights.weights_status()
    assert st["custom_cnn"] is None
    assert "No weights" in st["densenet121"] and "No weights" in st["vggface16"]


def test_nothing_loads_at_import():
    import subprocess
    import sys

    code = ("import sys, detector, detector.predict, detector.weights; "
            "print('timm' in sys.modules, len(detector.weights._cache))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "0"]


def test_probabilities_are_temperature_scaled(tmp_path, use_checkpoints, astronaut):
    from detector.predict import predict

    m = _tiny()
    save_checkpoint(m, SPEC, tmp_path / "custom_cnn", temperature=3.0)
    use_checkpoints(tmp_path)
    p = predict(astronaut, "custom_cnn")
    logits = np.array(p.logits)
    expected = np.exp(logits / 3.0) / np.exp(logits / 3.0).sum()
    assert abs(p.p_fake - expected[1]) < 1e-5 and abs(p.p_fake + p.p_real - 1) < 1e-6


def test_a_down_hub_is_waited_for_once_not_per_detector(tmp_path, monkeypatch, use_checkpoints):
    """After one timeout the endpoint counts as down: the next detector does not wait again."""
    import huggingface_hub

    calls = []
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn")
    vspec = get_spec("vggface16")
    save_checkpoint(vspec.create_model(), vspec, tmp_path / "vggface16")
    use_checkpoints(tmp_path)
    monkeypatch.setenv("DEEPFAKE_HUB_ORG", "acme")
    monkeypatch.setenv("DEEPFAKE_HUB_TIMEOUT", "0.5")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: calls.append(kw) or time.sleep(3))
    a = load_model("custom_cnn", "cpu")
    b = load_model("vggface16", "cpu")
    assert len(calls) == 1  # the second detector did not ask the Hub again (no second wait)
    assert a.source.startswith("local:") and b.source.startswith("local:")
    assert "acme/vggface16" in b.notes[0] and "did not answer" in b.notes[0]


def test_model_args_are_recorded_and_rebuilt_by_our_loader_and_plain_timm(tmp_path):
    spec = get_spec("vggface16")
    torch.manual_seed(0)
    slim = spec.create_model().eval()
    save_checkpoint(slim, spec, tmp_path / "vggface16")
    cfg = json.loads((tmp_path / "vggface16" / "config.json").read_text())
    assert cfg["model_args"] == {"width": 0.25}
    model, _ = load_checkpoint_dir(tmp_path / "vggface16", spec)
    assert model.features.conv5_3.out_channels == 128
    tm = timm.create_model(f"local-dir:{tmp_path / 'vggface16'}", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), tm(x), atol=1e-4)
    full = timm.create_model("vggface16", num_classes=2)  # the converter's full width records no model_args
    save_checkpoint(full, spec, tmp_path / "full")
    assert "model_args" not in json.loads((tmp_path / "full" / "config.json").read_text())
    assert load_checkpoint_dir(tmp_path / "full", spec)[0].features.conv5_3.out_channels == 512
    cfg["model_args"] = {"depth": 3}
    (tmp_path / "vggface16" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="model_args"):
        load_checkpoint_dir(tmp_path / "vggface16", spec)
