import pytest
import timm
import torch

import detector.models  # noqa: F401
from detector.specs import LABELS, SPECS, get_spec


@pytest.mark.parametrize("name", list(SPECS))
def test_spec_is_consistent_with_timm(name):
    spec = SPECS[name]
    assert spec.name == name
    assert spec.label_names == LABELS == ("real", "fake")
    assert spec.fake_index == 1
    assert timm.is_model(spec.architecture)
    model = timm.create_model(spec.architecture, num_classes=spec.num_classes).eval()
    # the Grad-CAM layer exists
    assert spec.gradcam_layer in dict(model.named_modules())
    with torch.no_grad():
        out = model(torch.zeros(1, 3, spec.input_size, spec.input_size))
    assert out.shape == (1, 2)
    assert len(spec.mean) == len(spec.std) == 3


def test_spec_is_frozen():
    with pytest.raises(Exception):
        get_spec("custom_cnn").input_size = 3  # type: ignore[misc]


def test_unknown_spec_lists_names():
    with pytest.raises(KeyError, match="custom_cnn"):
        get_spec("resnet9000")


def test_custom_cnn_design_rules():
    m = timm.create_model("custom_cnn", num_classes=2)
    n = sum(p.numel() for p in m.parameters())
    assert n < 5_000_000
    mods = list(m.modules())
    assert len({id(x) for x in mods}) == len(mods)  # no module used twice in the tree
    assert all(not getattr(x, "inplace", False) for x in mods)
    hp = m.highpass.weight
    assert not hp.requires_grad
    # every high-pass kernel sums to zero: a flat image gives no response
    assert torch.allclose(hp.sum(dim=(1, 2, 3)), torch.zeros(hp.shape[0]), atol=1e-6)
    out = m.highpass(torch.full((1, 3, 32, 32), 0.7))
    assert out[..., 4:-4, 4:-4].abs().max() < 1e-5


def test_custom_cnn_forward_uses_each_module_once():
    m = timm.create_model("custom_cnn", num_classes=2).eval()
    calls: dict[str, int] = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
             for name, mod in m.named_modules() if not list(mod.children())]
    try:
        m(torch.zeros(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    assert calls and max(calls.values()) == 1


def test_vggface16_has_13_convs_and_compact_head():
    m = timm.create_model("vggface16", num_classes=2)
    convs = [n for n, x in m.named_modules() if isinstance(x, torch.nn.Conv2d)]
    assert len(convs) == 13 and convs[0] == "features.conv1_1" and convs[-1] == "features.conv5_3"
    linears = [x for x in m.modules() if isinstance(x, torch.nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 512 and linears[0].out_features == 2


def test_custom_cnn_high_pass_stem_stays_fp32_under_bf16_autocast():
    import timm
    import torch

    import detector.models  # noqa: F401

    m = timm.create_model("custom_cnn", num_classes=2).eval()
    seen = {}
    m.highpass.register_forward_hook(lambda mod, i, o: seen.update(dtype=o.dtype))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m(x)
    assert seen["dtype"] == torch.float32


def test_custom_cnn_rgb_branch_grows_from_a_high_pass_checkpoint():
    torch.manual_seed(0)
    base = timm.create_model("custom_cnn", num_classes=2).eval()
    grown = timm.create_model("custom_cnn", num_classes=2, rgb=True).eval()
    assert grown.model_args == {"rgb": True} and base.model_args == {}
    assert sum(p.numel() for p in grown.parameters()) - sum(p.numel() for p in base.parameters()) == 24 * 3 * 9
    grown.load_state_dict(grown.grow_state_dict(base.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grown(x), base(x), atol=1e-5)  # zero weights on the new inputs: same function
        # The colour branch is live: once its weights move, the output follows the colour image.
        feats = grown.forward_features(x)
        grown.features.conv1_1.weight[:, 9:] = 0.1
        assert not torch.allclose(grown.forward_features(x), feats, atol=1e-3)
    with pytest.raises(ValueError, match="cannot grow"):
        base.grow_state_dict(grown.state_dict())  # shrinking is not growing
