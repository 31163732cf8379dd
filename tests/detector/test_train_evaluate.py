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
