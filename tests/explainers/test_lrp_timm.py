"""The LRP canonizer for timm's EfficientNet family: same function, BatchNorm folded,
residual sums through zennit's Sum, original model untouched, relevance conserved."""
from __future__ import annotations

import pytest
import torch

from explainers.lrp_timm import is_timm_efficientnet, lrp_ready


@pytest.fixture(scope="module", params=["tf_efficientnet_lite0", "mobilenetv2_050"])
def model(request):
    import timm

    torch.manual_seed(0)
    m = timm.create_model(request.param, num_classes=2).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is really tested
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return m


def test_canonized_copy_computes_the_same_logits(model):
    x = torch.randn(2, 3, 64, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    canon, notes = lrp_ready(model)
    assert canon is not model and "folded" in notes[0]
    with torch.no_grad():
        torch.testing.assert_close(canon(x), model(x), rtol=1e-4, atol=1e-4)
    for k, v in model.state_dict().items():  # the served model is untouched
        assert torch.equal(v, before[k]), k
    assert lrp_ready(model)[0] is canon  # cached per model


def test_no_batchnorm_left_and_every_residual_goes_through_sum(model):
    from timm.layers import BatchNormAct2d
    from zennit.layer import Sum

    canon, _ = lrp_ready(model)
    assert not any(isinstance(m, (BatchNormAct2d, torch.nn.BatchNorm2d)) for m in canon.modules())
    skips = [m for m in model.modules() if getattr(m, "has_skip", False)]
    assert skips and sum(isinstance(m, Sum) for m in canon.modules()) == len(skips)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "mobilenetv2_050"])
def test_relevance_is_conserved_when_no_bias_absorbs_it(arch):
    """BatchNorm that only scales (zero mean and shift) folds into bias-free convolutions; then
    every unit of the target logit must reach the input. The plain model, whose residual
    ``+`` copies relevance onto both branches, does not conserve it."""
    import timm
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    torch.manual_seed(1)
    m = timm.create_model(arch, num_classes=2).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
        m.classifier.bias.zero_()
    x = torch.randn(1, 3, 64, 64)

    def lrp(net):
        with Gradient(model=net, composite=EpsilonPlusFlat(epsilon=1e-6)) as attributor:
            out, rel = attributor(x.clone().requires_grad_(True), lambda o: torch.eye(2)[[1]] * o.detach())
        return float(rel.sum()), float(out[0, 1])

    total, logit = lrp(lrp_ready(m)[0])
    assert total == pytest.approx(logit, rel=0.02)
    plain_total, _ = lrp(m)
    assert abs(plain_total - logit) > 0.1 * abs(logit)


def test_other_models_pass_through_unchanged():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    assert not is_timm_efficientnet(m)
    assert lrp_ready(m) == (m, [])
