"""detector.train and detector.evaluate end to end on a tiny synthetic dataset (index.csv
layout and real/ fake/ folders): checkpoint format, calibration, log, resume, stages."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from detector import evaluate, train
from detector.weights import load_model


def _faces(root, split, source, n, rng, rows):
    for label in ("real", "fake"):
        for i in range(n):
            rel = f"{source}/{label}/{split}_{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            if label == "fake":  # a learnable, label-dependent texture
                img[::2] = img[::2] // 2
            Image.fromarray(img).save(root / rel, quality=90)
            rows.append(f"{rel},{label},{source},{source}-{split}-{i},{split}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    rows = ["path,label,source,group,split"]
    for source in ("gan140k", "dfdc"):
        for split, n in (("train", 8), ("val", 4), ("test", 4)):
            _faces(root, split, source, n, rng, rows)
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    return root


def _train(dataset, tmp_path, out, *extra):
    argv = ["--model", "custom_cnn", "--data", str(dataset), "--epochs", "2", "--samples-per-epoch", "32",
            "--batch-size", "16", "--workers", "0", "--amp", "off", "--cache", str(tmp_path / "cache"),
            "--out", str(out), *extra]
    assert train.main(argv) == 0


def test_train_writes_hub_format_checkpoint_log_and_temperature(dataset, tmp_path, use_checkpoints, capsys):
    out = tmp_path / "ck" / "custom_cnn"
    _train(dataset, tmp_path, out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "custom_cnn" and cfg["label_names"] == ["real", "fake"]
    assert cfg["pretrained_cfg"]["input_size"] == [3, 160, 160]
    assert cfg["temperature"] > 0 and cfg["best_epoch"] in (1, 2)
    tr = cfg["training"]
    assert tr["epochs"] == 2 and tr["warmup"] == 0.05 and "--epochs 2" in tr["command"] and "init" not in tr
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(r["stage"] == 1 for r in log)
    assert all(0 <= r["val_auc_gan140k"] <= 1 and np.isfinite(r["train_loss"]) for r in log)
    assert (out / "resume" / "state.safetensors").is_file()
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.bin"))
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["temperature"] == pytest.approx(cfg["temperature"])
    # The loader reads it, and evaluate scores it on the test split and on real/ fake/ folders.
    use_checkpoints(tmp_path / "ck")
    lm = load_model("custom_cnn", "cpu")
    assert lm.temperature == pytest.approx(cfg["temperature"])
    assert evaluate.main(["--model", "custom_cnn", "--data", str(dataset), "--split", "test", "--json",
                          "--plots", str(tmp_path / "plots")]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(rep["per_source"]) == {"gan140k", "dfdc"}
    for m in list(rep["per_source"].values()) + [rep["pooled"]]:
        assert {"roc_auc", "accuracy", "precision", "recall", "f1", "log_loss", "ece", "confusion"} <= set(m)
    assert rep["pooled"]["n"] == 16 and np.asarray(rep["pooled"]["confusion"]).sum() == 16
    assert list((tmp_path / "plots").glob("*.png"))
    assert evaluate.main(["--model", "custom_cnn", "--data", str(dataset / "dfdc"), "--json",
                          "--plots", str(tmp_path / "plots2")]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["pooled"]["n"] == 8 + 4 + 4 + 8 + 4 + 4  # every image under dfdc/real and dfdc/fake


def test_resume_and_continued_stage(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    _train(dataset, tmp_path, out, "--epochs", "1")
    _train(dataset, tmp_path, out, "--resume")  # epochs 2: continues at epoch 2
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert "resumed from" in capsys.readouterr().err
    stage2 = tmp_path / "stage2"
    _train(dataset, tmp_path, stage2, "--init", str(out), "--epochs", "1")
    cfg = json.loads((stage2 / "config.json").read_text())
    assert cfg["training"]["init"]["from"] == str(out)
    assert cfg["training"]["init"]["training"]["epochs"] == 2
    log2 = [json.loads(x) for x in (stage2 / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log2] == [2]


def test_distillation_records_the_teacher_and_its_cached_soft_labels(dataset, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    _train(dataset, tmp_path, teacher, "--epochs", "1")
    student = tmp_path / "student"
    _train(dataset, tmp_path, student, "--epochs", "1", "--teacher", str(teacher), "--kd-alpha", "0.7",
           "--kd-temperature", "3")
    t = json.loads((student / "config.json").read_text())["training"]["teacher"]
    assert t["from"] == str(teacher) and t["alpha"] == 0.7 and t["temperature"] == 3.0
    assert 0.0 <= t["train_auc"] <= 1.0 and t["teacher_temperature"] > 0
    assert len(list((tmp_path / "cache").glob("teacher_custom_cnn_*.npy"))) == 1
    assert "teacher " in capsys.readouterr().err


def test_model_arg_grows_an_init_checkpoint_and_the_loader_builds_what_it_records(dataset, tmp_path, use_checkpoints,
                                                                                 capsys):
    base = tmp_path / "base" / "custom_cnn"
    _train(dataset, tmp_path, base, "--epochs", "1", "--model-arg", "rgb=false")  # the spec's default is rgb
    assert "model_args" not in json.loads((base / "config.json").read_text())
    grown = tmp_path / "grown" / "custom_cnn"
    _train(dataset, tmp_path, grown, "--epochs", "1", "--init", str(base), "--model-arg", "rgb=true")
    cfg = json.loads((grown / "config.json").read_text())
    assert cfg["model_args"] == {"rgb": True} and cfg["training"]["model_args"] == {"rgb": True}
    use_checkpoints(tmp_path / "grown")
    lm = load_model("custom_cnn", "cpu")
    assert lm.model.rgb and lm.model.features.conv1_1.in_channels == 12
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        _train(dataset, tmp_path, tmp_path / "bad", "--model-arg", "rgb")


def test_kd_loss_is_cross_entropy_without_teacher_and_pulls_toward_soft_labels():
    import torch

    out = torch.tensor([[2.0, -1.0], [0.0, 0.5]])
    y = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(out, y)
    assert torch.allclose(train._loss(out, y, None, torch.tensor([0, 1])), ce)
    agree = {"alpha": 1.0, "temperature": 2.0, "logits": out.numpy().copy()}
    disagree = {"alpha": 1.0, "temperature": 2.0, "logits": (-out).numpy().copy()}
    idx = torch.tensor([0, 1])
    assert float(train._loss(out, y, agree, idx)) == pytest.approx(0.0, abs=1e-6)
    assert float(train._loss(out, y, disagree, idx)) > 0.1


def test_frozen_prefix_training_saves_a_full_model_that_matches_the_cached_path(dataset, tmp_path, use_checkpoints,
                                                                                 capsys):
    out = tmp_path / "ck" / "efficientnet_lite0"
    argv = ["--model", "efficientnet_lite0", "--data", str(dataset), "--epochs", "1", "--samples-per-epoch", "16",
            "--batch-size", "8", "--workers", "0", "--amp", "off", "--cache", str(tmp_path / "cache"),
            "--out", str(out), "--freeze-blocks", "5"]
    assert train.main(argv) == 0
    tr = json.loads((out / "config.json").read_text())["training"]
    fp = tr["frozen_prefix"]
    assert fp["blocks"] == 5 and fp["check_max_abs_logit_diff"] < 0.05  # fp16 cache and fp16 weights only
    assert len(list((tmp_path / "cache").glob("feat_train_*.npy"))) == 1
    # Only the suffix trained: the stem of the saved model is still the random init of seed 0.
    import timm
    import torch

    from detector.weights import load_checkpoint_dir

    torch.manual_seed(0)
    ref = timm.create_model("tf_efficientnet_lite0", num_classes=2)
    got, _ = load_checkpoint_dir(out)
    assert torch.allclose(got.conv_stem.weight, ref.conv_stem.weight.half().float())
    assert not torch.allclose(got.classifier.weight, ref.classifier.weight.half().float())


def test_evaluate_caps_per_source_and_save_refuses_partial_runs(dataset, tiny_ckpt_root, use_checkpoints, capsys):
    use_checkpoints(tiny_ckpt_root)
    rep = evaluate.evaluate("custom_cnn", dataset, "test", per_source=3, progress=False)
    assert {k: v["n"] for k, v in rep["per_source"].items()} == {"dfdc": 3, "gan140k": 3}
    aligned = evaluate.evaluate("custom_cnn", dataset, "test", per_source=3, progress=False, align=True)
    assert aligned["align"] is True and aligned["n_images"] == 6
    for extra in (["--per-source", "3"], ["--align"], ["--split", "val"], ["--sources", "dfdc"]):
        assert evaluate.main(["--model", "custom_cnn", "--data", str(dataset), "--save", *extra]) == 2
        assert "--save records the card's test metrics" in capsys.readouterr().err
    assert not (tiny_ckpt_root / "custom_cnn" / "metrics.json").exists()


def test_cpu_budget_warms_up_decays_and_pauses():
    b = train._CpuBudget(seconds=10.0, warmup=0.1)
    b.used = 0.5
    assert b.lr_factor() == pytest.approx(0.5)  # half-way through the warm-up
    b.used = 1.0
    assert b.lr_factor() == pytest.approx(1.0)
    b.used = 5.5
    assert b.lr_factor() == pytest.approx(0.5)  # cosine mid-point
    assert not b.spent()
    b.used = 10.0
    assert b.spent() and b.lr_factor() == pytest.approx(0.0)
    b = train._CpuBudget(seconds=100.0, warmup=0.0)
    b.start()
    sum(i * i for i in range(200_000))
    b.pause()
    used = b.used
    assert used > 0
    sum(i * i for i in range(200_000))  # paused: not counted
    assert b.used == used


def test_cpu_minutes_input_size_and_native_crops_are_recorded_and_checked(dataset, tmp_path, use_checkpoints,
                                                                           capsys):
    out = tmp_path / "ck" / "custom_cnn"
    _train(dataset, tmp_path, out, "--epochs", "500", "--cpu-minutes", "0.03", "--input-size", "64",
           "--train-crop", "48", "--workers", "2")
    cfg = json.loads((out / "config.json").read_text())
    tr = cfg["training"]
    assert cfg["pretrained_cfg"]["input_size"] == [3, 64, 64]
    assert tr["input_size"] == 64 and tr["train_crop"] == 48 and tr["cpu_minutes"] == 0.03
    assert tr["train_cpu_seconds"] >= 0.03 * 60 and 0 < tr["samples_seen"] < 500 * 32
    assert tr["epochs_run"] < 500  # the budget, not --epochs, ended the run
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    # cumulative CPU seconds of the training steps (rounded to 0.1 s, so a first one-batch epoch may read 0.0)
    cpu = [r["train_cpu_s"] for r in log]
    assert cpu == sorted(cpu) and cpu[-1] >= 0.03 * 60
    assert "--cpu-minutes 0.03 spent" in capsys.readouterr().err
    use_checkpoints(tmp_path / "ck")  # the spec says 160 px: the loader refuses a 64 px checkpoint
    from detector.weights import WeightsError

    with pytest.raises(WeightsError, match=r"trained at input size \[64, 64\].*160x160"):
        load_model("custom_cnn", "cpu")


def test_native_crops_keep_pixel_scale():
    from detector.specs import get_spec

    spec = get_spec("custom_cnn")
    arr = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ds = train._TrainSet(arr, np.array([0, 1]), spec, seed=0, crop=40)
    x, y, i = ds[1]
    assert tuple(x.shape) == (3, 40, 40) and y == 1 and i == 1
    assert tuple(train._TrainSet(arr, np.array([0, 1]), spec, seed=0)[0][0].shape) == (3, 64, 64)


def test_prefix_weights_exclude_the_trained_suffix():
    import timm

    from detector.feature_cache import Prefix

    m = timm.create_model("tf_efficientnet_lite0", num_classes=2)
    p = Prefix(m, 2)
    w = p.weights()
    assert w and all(k.split(".")[0] in ("conv_stem", "bn1") or k.startswith(("blocks.0.", "blocks.1."))
                     for k in w)
    before = {k: v.clone() for k, v in w.items()}
    with __import__("torch").no_grad():
        m.classifier.weight.add_(1.0)
        m.blocks[3][0].conv_pw.weight.add_(1.0)
    assert all((p.weights()[k] == v).all() for k, v in before.items())


@pytest.mark.parametrize("spec, shares", [
    (None, {"gan140k": 0.5, "dfdc": 0.5}),
    ("gan140k=1,dfdc=3", {"gan140k": 0.25, "dfdc": 0.75}),
    ("dfdc=2, gan140k=2", {"gan140k": 0.5, "dfdc": 0.5}),
    ("gan140k=1", "no weight for"),
    ("ffhq=1,dfdc=1", "expected SRC=W"),
    ("gan140k=x,dfdc=1", "not a number"),
    ("gan140k=0,dfdc=1", "positive"),
])
def test_source_weights_parse_into_shares(spec, shares):
    if isinstance(shares, str):
        with pytest.raises(SystemExit, match=shares):
            train._source_shares(spec, ["gan140k", "dfdc"])
    else:
        assert train._source_shares(spec, ["gan140k", "dfdc"]) == pytest.approx(shares)


def test_source_weights_are_recorded_in_the_checkpoint(dataset, tmp_path, capsys):
    out = tmp_path / "sw"
    _train(dataset, tmp_path, out, "--source-weights", "gan140k=1,dfdc=3", "--epochs", "1")
    tr = json.loads((out / "config.json").read_text())["training"]
    assert tr["source_shares"] == {"gan140k": 0.25, "dfdc": 0.75}


def test_logit_differences_invert_the_calibrated_probability():
    from detector.calibrate import logit_differences

    d = np.array([-6.0, -0.5, 0.0, 2.0, 9.0])
    for t in (0.7, 1.0, 2.5):
        p = 1.0 / (1.0 + np.exp(-d / t))
        np.testing.assert_allclose(logit_differences(p, t), d, atol=1e-6)


def test_calibrate_refits_the_temperature_on_val_only_and_writes_it(dataset, tmp_path, use_checkpoints, capsys,
                                                                   monkeypatch):
    from detector import calibrate, data

    out = tmp_path / "ck" / "custom_cnn"
    _train(dataset, tmp_path, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["temperature"] = 0.05  # far too sharp: the refit must move it and lower the val log loss
    (out / "config.json").write_text(json.dumps(cfg))
    use_checkpoints(tmp_path / "ck")
    splits = []
    real_read = data.read_index
    monkeypatch.setattr("detector.evaluate.read_index",
                        lambda root, split, sources=None: splits.append(split) or real_read(root, split, sources))
    capsys.readouterr()
    assert calibrate.main(["--model", "custom_cnn", "--data", str(dataset)]) == 0
    assert json.loads((out / "config.json").read_text())["temperature"] == 0.05  # no --write: unchanged
    assert calibrate.main(["--model", "custom_cnn", "--data", str(dataset), "--write"]) == 0
    assert splits == ["val", "val"]
    rec = json.loads((out / "config.json").read_text())
    r = rec["recalibration"]
    assert rec["temperature"] == pytest.approx(r["temperature"], abs=1e-4) and r["temperature_before"] == 0.05 and r["temperature"] > 0.05
    assert r["n_images"] == 16 and r["split"] == "val" and "--write" in r["command"]
    assert r["val_after"]["log_loss"] < r["val_before"]["log_loss"]
    use_checkpoints(tmp_path / "ck")
    assert load_model("custom_cnn", "cpu").temperature == pytest.approx(rec["temperature"])


@pytest.mark.parametrize("spec, want", [
    ("", []), ("gan140k", ["gan140k"]), ("all", ["gan140k", "dfdc"]), (" dfdc , gan140k", ["dfdc", "gan140k"]),
    ("ffhq", "--strong-augment names ffhq, not among --sources gan140k,dfdc"),
])
def test_strong_augment_parses_sources(spec, want):
    if isinstance(want, str):
        with pytest.raises(SystemExit, match=want):
            train._strong_sources(spec, ["gan140k", "dfdc"])
    else:
        assert train._strong_sources(spec, ["gan140k", "dfdc"]) == want


def test_strong_augment_is_recorded_and_applied_per_source(dataset, tmp_path, capsys):
    out = tmp_path / "sa"
    _train(dataset, tmp_path, out, "--strong-augment", "gan140k", "--epochs", "1")
    assert json.loads((out / "config.json").read_text())["training"]["strong_augment"] == ["gan140k"]
    from detector.specs import get_spec

    arr = np.full((2, 64, 64, 3), 128, np.uint8)
    arr[:, ::2] = 30  # stripes, so that crops and erasing change the tensor
    ds = train._TrainSet(arr, np.array([0, 1]), get_spec("custom_cnn"), seed=0, strong=np.array([False, True]))
    ds[0]
    assert ds.aug is not None and not ds.aug.strong and ds.aug_strong.strong
    used = []
    for name in ("aug", "aug_strong"):
        real = getattr(ds, name)
        setattr(ds, name, lambda rgb, real=real, name=name: used.append(name) or real(rgb))
    ds[0], ds[1], ds[0]
    assert used == ["aug", "aug_strong", "aug"]  # image 1 is of a strong-augment source


def test_cutmix_is_recorded_described_on_the_card_and_mixes_every_batch(dataset, tmp_path, capsys, monkeypatch):
    from detector import augment, card

    calls = []
    real = augment.cutmix

    def spy(x, rng, alpha=1.0):
        out = real(x, rng, alpha)
        calls.append(out[2])
        return out

    monkeypatch.setattr(train, "cutmix", spy)
    out = tmp_path / "cm"
    _train(dataset, tmp_path, out, "--cutmix", "1", "--cutmix-alpha", "0.5", "--epochs", "1")
    tr = json.loads((out / "config.json").read_text())["training"]
    assert tr["cutmix"] == {"p": 1.0, "alpha": 0.5}
    assert len(calls) == 2 and all(0.0 <= lam <= 1.0 for lam in calls)  # every batch of the epoch was mixed
    assert "CutMix on p=1 of the batches" in card._augmentation(tr)
    for bad in (["--cutmix", "1.5"], ["--cutmix", "0.5", "--cutmix-alpha", "0"],
                ["--cutmix", "0.5", "--freeze-blocks", "2"]):
        with pytest.raises(SystemExit, match="cutmix"):
            _train(dataset, tmp_path, tmp_path / "bad", *bad)
