import json

import pytest
import timm
import torch
import torch.nn.functional as F

import detector.models  # noqa: F401
from detector.errors import WeightsError
from detector.models import VGG16_CFG
from detector.specs import get_spec
from detector.vggface_convert import convert_file
from detector.weights import load_checkpoint_dir, load_model, save_checkpoint

VGG_MEAN = torch.tensor([129.186279296875, 104.76238250732422, 93.59396362304688]).view(1, 3, 1, 1)


def _synthetic_vgg_face(path):
    """A file with exactly vgg_face_dag.pth's key names and shapes (random values)."""
    g = torch.Generator().manual_seed(0)
    sd, c_in = {}, 3
    for block, n, c in VGG16_CFG:
        for j in range(1, n + 1):
            sd[f"conv{block}_{j}.weight"] = torch.randn(c, c_in, 3, 3, generator=g) * (2.0 / (9 * c_in)) ** 0.5
            sd[f"conv{block}_{j}.bias"] = torch.randn(c, generator=g) * 0.01
            c_in = c
    sd["fc6.weight"] = torch.randn(4096, 512, 7, 7, generator=g) * 0.001
    sd["fc6.bias"] = torch.zeros(4096)
    sd["fc7.weight"] = torch.randn(4096, 4096, generator=g) * 0.001
    sd["fc7.bias"] = torch.zeros(4096)
    sd["fc8.weight"] = torch.randn(2622, 4096, generator=g) * 0.001
    sd["fc8.bias"] = torch.zeros(2622)
    torch.save(sd, path)
    return sd


def _vgg_face_features(sd, rgb01):
    """Reference VGG-Face conv stack: input 255*rgb - mean, unit std."""
    x = rgb01 * 255.0 - VGG_MEAN
    for block, n, _ in VGG16_CFG:
        for j in range(1, n + 1):
            x = F.relu(F.conv2d(x, sd[f"conv{block}_{j}.weight"], sd[f"conv{block}_{j}.bias"], padding=1))
        x = F.max_pool2d(x, 2)
    return x


def test_vggface_converter_reproduces_vgg_face_features(tmp_path):
    sd = _synthetic_vgg_face(tmp_path / "vgg_face_dag.pth")
    out = convert_file(tmp_path / "vgg_face_dag.pth", tmp_path / "vggface16")
    spec = get_spec("vggface16")
    model, cfg = load_checkpoint_dir(out, spec)
    assert cfg["architecture"] == "vggface16"
    rgb = torch.rand(1, 3, 64, 64)
    x = (rgb - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = model.forward_features(x)
        ref = _vgg_face_features(sd, rgb)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item())


def test_vggface_converter_rejects_wrong_layout(tmp_path):
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(KeyError, match="conv1_1.bias"):
        convert_file(tmp_path / "bad.pth", tmp_path / "out")


def test_vggface_converter_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="refused by the safe loader"):
        convert_file(tmp_path / "evil.pth", tmp_path / "out")


def test_publish_validates_then_uploads_a_loadable_folder(tmp_path, monkeypatch, use_checkpoints):
    import huggingface_hub

    from detector import publish
    from tests.detector.test_weights import _fake_hub_cache

    spec = get_spec("custom_cnn")
    torch.manual_seed(0)
    folder = save_checkpoint(timm.create_model("custom_cnn", num_classes=2), spec, tmp_path / "custom_cnn", 1.1)
    with pytest.raises(WeightsError, match="model card"):
        publish.publish("custom_cnn", "acme/custom_cnn", folder)
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-sa-4.0\n---\n# card\n")
    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls["create"] = repo_id

        def upload_folder(self, folder_path, repo_id, allow_patterns, **kw):
            calls["upload"] = (folder_path, repo_id, allow_patterns)
            return type("Info", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = publish.publish("custom_cnn", "acme/custom_cnn", folder)
    assert url.endswith("commit/1") and calls["create"] == "acme/custom_cnn"
    assert set(calls["upload"][2]) == {"config.json", "model.safetensors", "README.md"}
    # what was uploaded loads back through the Hub code path
    _fake_hub_cache(tmp_path / "hf", "acme/custom_cnn", folder)
    use_checkpoints(tmp_path / "none")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("DEEPFAKE_HUB_ORG", "acme")
    lm = load_model("custom_cnn", "cpu")
    assert lm.source == "hub:acme/custom_cnn" and lm.temperature == pytest.approx(1.1)
    assert json.loads((folder / "config.json").read_text())["label_names"] == ["real", "fake"]
