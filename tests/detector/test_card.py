"""Model cards list every training stage, and their numbers come from the checkpoint's files."""
from __future__ import annotations

import json

import torch

from detector.card import render_card
from detector.specs import get_spec
from detector.train import init_record
from detector.weights import save_checkpoint

SPEC = get_spec("custom_cnn")


def _tiny():
    import timm

    import detector.models  # noqa: F401

    torch.manual_seed(0)
    return timm.create_model("custom_cnn", num_classes=2, widths=(4, 4, 4, 4))


def test_card_lists_both_stages_of_a_continued_run(tmp_path, use_checkpoints):
    stage1 = {"command": "python -m detector.train --model custom_cnn --epochs 5", "epochs": 5,
              "samples_per_epoch": 100, "train_seconds": 600.0, "hardware": "CPU A", "device": "cpu"}
    first = save_checkpoint(_tiny(), SPEC, tmp_path / "first", 1.0, {"best_epoch": 5, "training": stage1})
    rec = init_record(first)
    assert rec["training"] == stage1 and rec["best_epoch"] == 5
    stage2 = {"command": "python -m detector.train --model custom_cnn --init first --epochs 2", "epochs": 2,
              "samples_per_epoch": 300, "train_seconds": 1200.0, "hardware": "CPU B", "device": "cpu", "init": rec}
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn", 1.3, {"best_epoch": 2, "training": stage2})
    (tmp_path / "custom_cnn" / "train_log.jsonl").write_text(
        "\n".join(json.dumps({"stage": s, "epoch": e, "train_loss": 0.6, "val_loss": 0.6, "val_auc_gan140k": 0.7,
                              "val_auc_dfdc": 0.6}) for s, e in [(1, 1), (2, 1)]))
    use_checkpoints(tmp_path)
    card = render_card("custom_cnn")
    assert "Trained in 2 stages" in card
    assert "| 1 | `python -m detector.train --model custom_cnn --epochs 5` | 500 | 10.0 min | CPU A (cpu) |" in card
    assert "| 2 | `python -m detector.train --model custom_cnn --init first --epochs 2` | 600 | 20.0 min |" in card
    assert "Total training time: 30.0 min" in card
    assert "| 2 | 1 | 0.6000 |" in card


def test_card_names_a_stage_that_changed_the_architecture_and_only_that_one(tmp_path, use_checkpoints):
    s1 = {"command": "python -m detector.train --model custom_cnn", "epochs": 1, "samples_per_epoch": 10,
          "train_seconds": 60.0, "hardware": "CPU", "device": "cpu"}
    first = save_checkpoint(_tiny(), SPEC, tmp_path / "first", 1.0, {"best_epoch": 1, "training": s1})
    s2 = {**s1, "command": "python -m detector.train --model custom_cnn --init first --model-arg rgb=true",
          "model_args": {"rgb": True}, "init": init_record(first)}
    second = save_checkpoint(_tiny(), SPEC, tmp_path / "second", 1.0, {"best_epoch": 1, "training": s2})
    s3 = {**s1, "command": "python -m detector.train --model custom_cnn --init second --model-arg rgb=true",
          "model_args": {"rgb": True}, "init": init_record(second)}
    third = save_checkpoint(_tiny(), SPEC, tmp_path / "third", 1.0, {"best_epoch": 1, "training": s3})
    s4 = {**s1, "command": "python -m detector.train --model custom_cnn --init third", "init": init_record(third)}
    fourth = save_checkpoint(_tiny(), SPEC, tmp_path / "fourth", 1.0, {"best_epoch": 1, "training": s4})
    s5 = {**s1, "command": "python -m detector.train --model custom_cnn --init fourth --model-arg rgb=true",
          "model_args": {"rgb": True}, "init": init_record(fourth)}
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn", 1.0, {"best_epoch": 1, "training": s5})
    use_checkpoints(tmp_path)
    card = render_card("custom_cnn")
    assert "Stage 2 changed the architecture to `rgb=true`" in card
    assert "Stage 3 changed" not in card and "Stage 1 changed" not in card  # same args as before: no change
    assert "Stage 5 changed" not in card  # stage 4 kept rgb from its init without repeating --model-arg


def test_card_of_a_single_run_says_from_scratch(tmp_path, use_checkpoints):
    tr = {"command": "python -m detector.train --model custom_cnn", "epochs": 1, "samples_per_epoch": 10,
          "train_seconds": 60.0, "hardware": "CPU", "device": "cpu"}
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn", 1.0, {"best_epoch": 1, "training": tr})
    use_checkpoints(tmp_path)
    card = render_card("custom_cnn")
    assert "From scratch (random init)" in card and "Trained in" not in card and "Not evaluated yet." in card


def test_card_states_a_recalibration_and_the_source_shares(tmp_path, use_checkpoints):
    tr = {"command": "python -m detector.train --model custom_cnn --source-weights gan140k=1,dfdc=3", "epochs": 1,
          "samples_per_epoch": 10, "train_seconds": 60.0, "hardware": "CPU", "device": "cpu",
          "source_shares": {"gan140k": 0.25, "dfdc": 0.75}}
    rc = {"command": "python -m detector.calibrate --model custom_cnn --data D --write", "n_images": 3175,
          "temperature_before": 2.0781, "temperature": 1.2939, "val_before": {"ece": 0.0622, "log_loss": 0.6173},
          "val_after": {"ece": 0.041, "log_loss": 0.6092}}
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn", 1.2939, {"best_epoch": 1, "training": tr,
                                                                     "recalibration": rc})
    use_checkpoints(tmp_path)
    card = render_card("custom_cnn")
    assert "| share of draws per source | {'gan140k': 0.25, 'dfdc': 0.75} |" in card
    assert "strong recipe" not in card
    assert ("Recalibrated on the whole val split (3175 images) after training, weights unchanged: "
            "`python -m detector.calibrate --model custom_cnn --data D --write`. Temperature 2.0781 -> 1.2939; "
            "val ECE 0.0622 -> 0.0410") in card


def test_results_table_lists_every_shipped_detector_from_its_metrics():
    import json

    from detector.card import results_table
    from detector.specs import SPECS

    table = results_table()
    for name, spec in SPECS.items():
        f = spec.local_dir / "metrics.json"
        if f.is_file():
            m = json.loads(f.read_text())
            for src, v in m["per_source"].items():
                assert f"| [{spec.display_name}](checkpoints/{name}/README.md) | {src} | {v['n']} | {v['roc_auc']:.4f} |" \
                    in table


def test_card_of_a_cpu_budget_run_shows_samples_counted_and_cpu_minutes(tmp_path, use_checkpoints):
    """A ``--cpu-minutes`` run stops mid-epoch: the card shows the samples it counted, not epochs x draws."""
    tr = {"command": "python -m detector.train --model custom_cnn --cpu-minutes 12", "epochs": 10,
          "samples_per_epoch": 12000, "epochs_run": 2, "samples_seen": 21664, "train_seconds": 981.0,
          "train_cpu_seconds": 720.0, "hardware": "CPU", "device": "cpu"}
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn", 1.0, {"best_epoch": 2, "training": tr})
    use_checkpoints(tmp_path)
    card = render_card("custom_cnn")
    assert "| samples seen | 21664 |" in card
    assert "| training time | 16.4 min (12.0 CPU-min of training steps, `--cpu-minutes`);" in card


def test_card_names_the_strong_augmentation_and_its_sources(tmp_path, use_checkpoints):
    tr = {"command": "python -m detector.train --model custom_cnn --strong-augment gan140k", "epochs": 1,
          "samples_per_epoch": 10, "train_seconds": 60.0, "hardware": "CPU", "device": "cpu",
          "strong_augment": ["gan140k"]}
    save_checkpoint(_tiny(), SPEC, tmp_path / "custom_cnn", 1.0, {"best_epoch": 1, "training": tr})
    use_checkpoints(tmp_path)
    row = next(x for x in render_card("custom_cnn").splitlines() if x.startswith("| augmentation |"))
    assert "gan140k images instead got the strong recipe (`--strong-augment`)" in row
    assert "random erasing" in row and row.startswith("| augmentation | flip, rotation")
