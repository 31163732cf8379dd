"""detector.soup: weight averaging of checkpoints, BatchNorm re-estimation, the written checkpoint and its card."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detector import soup
from detector.card import render_card
from detector.specs import get_spec
from detector.weights import load_checkpoint_dir, save_checkpoint
from tests.detector.test_train_evaluate import dataset  # noqa: F401 - the tiny index.csv dataset fixture

SPEC = get_spec("custom_cnn")


def _tiny(seed: int, width: int = 4):
    import timm

    import detector.models  # noqa: F401

    torch.manual_seed(seed)
    m = timm.create_model("custom_cnn", num_classes=2, widths=(width,) * 4)
    m.model_args = {"widths": [width] * 4}  # recorded in config.json, so the loader builds the same network
    return m


def test_average_is_the_weighted_mean_and_counters_take_the_max():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 4.0]), "n": torch.tensor(7)}
    avg = soup.average_state_dicts([a, b])
    assert torch.allclose(avg["w"], torch.tensor([2.0, 3.0])) and int(avg["n"]) == 7
    assert avg["w"].dtype == torch.float32 and avg["n"].dtype == a["n"].dtype
    w13 = soup.average_state_dicts([a, b], [1, 3])
    assert torch.allclose(w13["w"], torch.tensor([3.0, 3.5]))
    half = {"w": torch.tensor([1.0, 1.0], dtype=torch.float16), "n": torch.tensor(1)}
    assert soup.average_state_dicts([half, half])["w"].dtype == torch.float16


@pytest.mark.parametrize("sds, weights, msg", [
    ([{"w": torch.zeros(2)}], None, "at least two"),
    ([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}], None, "different tensors"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}], None, "shape of w"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [1, 0], "positive weight"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [1], "positive weight"),
])
def test_average_refuses_what_cannot_be_averaged(sds, weights, msg):
    with pytest.raises(ValueError, match=msg):
        soup.average_state_dicts(sds, weights)


def test_batchnorm_is_re_estimated_on_the_prepared_images():
    from detector.preprocess import finish

    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(3, 2))
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (10, 40, 40, 3), dtype=np.uint8)
    bn = model[0]
    bn.running_mean.fill_(5.0)
    assert soup.recompute_batchnorm(model, imgs, SPEC, batch=64) == 1
    x = torch.cat([finish(a, SPEC)[0] for a in imgs])
    assert torch.allclose(bn.running_mean, x.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, x.var(dim=(0, 2, 3), unbiased=True), atol=1e-4)
    assert not model.training and bn.momentum == 0.1
    assert soup.recompute_batchnorm(torch.nn.Linear(2, 2), imgs, SPEC) == 0


def test_cli_writes_a_loadable_soup_with_its_record_and_card(dataset, tmp_path, use_checkpoints, capsys):  # noqa: F811
    ings = []
    for seed in (0, 1):
        tr = {"command": f"python -m detector.train --model custom_cnn --seed {seed}", "train_seconds": 60.0,
              "samples_seen": 64, "hardware": "CPU A", "device": "cpu"}
        ings.append(save_checkpoint(_tiny(seed), SPEC, tmp_path / f"run{seed}", 1.0, {"best_epoch": 1, "training": tr}))
    out = tmp_path / "ck" / "custom_cnn"
    argv = ["--model", "custom_cnn", "--data", str(dataset), "--ingredients", *map(str, ings), "--bn-images", "8",
            "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert soup.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{ings[0]}: val AUC gan140k" in printed and "soup: val AUC" in printed
    model, cfg = load_checkpoint_dir(out, SPEC)
    tr = cfg["training"]
    assert tr["command"].startswith("python -m detector.soup") and tr["samples_seen"] == 0
    assert [g["from"] for g in tr["soup"]["ingredients"]] == [str(p) for p in ings]
    assert tr["init"]["from"] == str(ings[0]) and tr["soup"]["bn_images"] == 8 and tr["soup"]["bn_layers"] > 0
    assert cfg["temperature"] > 0 and 0 <= tr["val"]["mean_auc"] <= 1
    # weights (not BatchNorm statistics) are the average of the ingredients', as stored (fp16)
    a, b = (load_checkpoint_dir(p, SPEC)[0].state_dict() for p in ings)
    sd = model.state_dict()
    conv = next(k for k, v in sd.items() if k.endswith("weight") and v.ndim == 4 and not torch.equal(a[k], b[k]))
    assert torch.allclose(sd[conv], ((a[conv] + b[conv]) / 2).half().float(), atol=1e-3)
    mean_key = next(k for k in sd if k.endswith("running_mean"))
    assert not torch.allclose(sd[mean_key], (a[mean_key] + b[mean_key]) / 2)  # re-estimated, not averaged
    # the card names the soup and the second ingredient's own run
    (out / "train_log.jsonl").write_text("")
    use_checkpoints(tmp_path / "ck")
    card = render_card("custom_cnn")
    assert "weight average" in card and "BatchNorm statistics" in card
    assert "| 2 (ingredient 2) | `python -m detector.train --model custom_cnn --seed 1` | 64 |" in card
    assert "| 2 | `python -m detector.soup" in card and "0 (weight average)" in card


def test_cli_refuses_a_missing_or_mismatched_ingredient(dataset, tmp_path, capsys):  # noqa: F811
    one = save_checkpoint(_tiny(0), SPEC, tmp_path / "one", 1.0, {})
    argv = ["--model", "custom_cnn", "--data", str(dataset), "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--ingredients", str(one)]
    assert soup.main([*argv, str(tmp_path / "nowhere")]) == 2
    assert "cannot load ingredient" in capsys.readouterr().err
    other = save_checkpoint(_tiny(0, width=8), SPEC, tmp_path / "wide", 1.0, {})
    assert soup.main([*argv, str(other)]) == 2
    assert "shape of" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        soup.main([*argv])  # one ingredient
    with pytest.raises(SystemExit):
        soup.main([*argv, str(one), "--weights", "1,-1"])
