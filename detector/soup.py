"""Weight averaging ("model soup") of checkpoints of one detector, scored and calibrated on val.

Runs continued from the same checkpoint stay in one basin of the loss, and the average of their
weights often scores better than any of them alone, at the cost of one model (Wortsman et al.,
2022, "Model soups"). This tool averages the ``model.safetensors`` of two or more checkpoint
folders of the same detector (uniformly, or with ``--weights``), recomputes the BatchNorm
statistics of the averaged network on un-augmented train images (averaged statistics do not
belong to averaged weights), fits the temperature on val and writes a normal checkpoint folder.
It prints the val AUCs of every ingredient and of the soup, so that the choice is made on val.

    python -m detector.soup --model densenet121 --data ../shared/datasets/faces \\
        --ingredients checkpoints/densenet121 /tmp/ckpt/run_a /tmp/ckpt/run_b --out /tmp/ckpt/soup

The first ingredient is the soup's ``init`` (its training chain is the one the card lists as the
earlier stages); every ingredient's own record is kept under ``training.soup``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["average_state_dicts", "recompute_batchnorm", "main"]


def average_state_dicts(state_dicts: list[dict], weights: list[float] | None = None) -> dict:
    """Weighted average of float tensors (in float64, cast back to the first one's dtype); integer
    tensors (BatchNorm's ``num_batches_tracked``) take the largest value. Raises ``ValueError`` if the
    state dicts do not have the same keys and shapes, or the weights are not positive."""
    import torch

    if len(state_dicts) < 2:
        raise ValueError("a soup needs at least two state dicts")
    w = np.ones(len(state_dicts)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(state_dicts) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"need one positive weight per state dict, got {list(w)} for {len(state_dicts)}")
    w = w / w.sum()
    keys = list(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 2):
        if set(sd) != set(keys):
            diff = sorted(set(sd) ^ set(keys))[:5]
            raise ValueError(f"ingredient {i} has different tensors from ingredient 1 (e.g. {diff}): "
                             "only checkpoints of one architecture can be averaged")
        bad = [k for k in keys if sd[k].shape != state_dicts[0][k].shape]
        if bad:
            raise ValueError(f"ingredient {i}: shape of {bad[0]} is {tuple(sd[bad[0]].shape)}, "
                             f"ingredient 1 has {tuple(state_dicts[0][bad[0]].shape)}")
    out = {}
    for k in keys:
        ref = state_dicts[0][k]
        if ref.is_floating_point():
            acc = sum(float(wi) * sd[k].to(torch.float64) for wi, sd in zip(w, state_dicts))
            out[k] = acc.to(ref.dtype)
        else:
            out[k] = torch.stack([sd[k] for sd in state_dicts]).max(0).values
    return out


def recompute_batchnorm(model, images: np.ndarray, spec, device: str = "cpu", batch: int = 64) -> int:
    """Reset every BatchNorm layer's running mean and variance and re-estimate them as the plain
    average over ``images`` (uint8 face crops, prepared as at inference: CLAHE, resize, normalise).
    Returns the number of BatchNorm layers (0: nothing to do). The model is left in eval mode."""
    import torch

    from .train import prepared_batches

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.inference_mode():
        for x in prepared_batches(images, spec, device, batch):
            model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
    return len(bns)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m detector.soup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="detector name, e.g. densenet121")
    ap.add_argument("--data", required=True, help="folder with index.csv (e.g. ../shared/datasets/faces)")
    ap.add_argument("--ingredients", nargs="+", required=True, metavar="DIR",
                    help="checkpoint folders (config.json + model.safetensors) of this detector; the first is the "
                         "soup's init")
    ap.add_argument("--weights", default=None, metavar="W,...", help="one weight per ingredient (default: uniform)")
    ap.add_argument("--bn-images", type=int, default=2048,
                    help="train images (drawn evenly across sources, no augmentation) to re-estimate BatchNorm "
                         "statistics on (0: keep the averaged statistics)")
    ap.add_argument("--sources", default="gan140k,dfdc")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--cache", default=str(Path("~/.cache/deepfake-faces").expanduser()))
    ap.add_argument("--out", required=True, help="folder to write the soup checkpoint to")
    args = ap.parse_args(argv)

    import torch

    from .data import read_index
    from .metrics import fit_temperature
    from .specs import get_spec
    from .train import _cache_arrays, _hardware, _logits, _val_report, calibration_record, init_record
    from .weights import load_checkpoint_dir, save_checkpoint

    if len(args.ingredients) < 2:
        ap.error("--ingredients needs at least two checkpoint folders")
    weights = None
    if args.weights:
        try:
            weights = [float(v) for v in args.weights.split(",")]
        except ValueError:
            ap.error(f"--weights {args.weights!r}: expected numbers separated by commas")
        if len(weights) != len(args.ingredients) or any(not w > 0 for w in weights):
            ap.error(f"--weights needs {len(args.ingredients)} positive numbers, one per ingredient")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = get_spec(args.model)
    t0 = time.time()
    models, rows, first_cfg = [], [], None
    for d in args.ingredients:
        try:
            m, cfg = load_checkpoint_dir(d, spec, "cpu")
            first_cfg = first_cfg or cfg
        except Exception as e:  # noqa: BLE001 - any unreadable folder is a usage error here
            print(f"error: cannot load ingredient {d}: {e}", file=sys.stderr)
            return 2
        models.append(m)
    try:
        avg = average_state_dicts([m.state_dict() for m in models], weights)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sources = [s for s in args.sources.split(",") if s]
    train = read_index(args.data, "train", sources)
    val = read_index(args.data, "val", sources)
    cache = Path(args.cache)
    xva = _cache_arrays(val, spec, cache, "val")
    yva = np.array([s.label for s in val])
    sva = np.array([s.source for s in val])
    for d, m in zip(args.ingredients, models):  # each ingredient on val, before the first becomes the soup
        rows.append((d, _val_report(_logits(m, xva, spec, "cpu", False), yva, sva)))
    soup = models[0]
    soup.load_state_dict(avg)
    if first_cfg.get("model_args"):  # the constructor arguments the ingredients were built with
        soup.model_args = dict(first_cfg["model_args"])
    n_bn = 0
    bn_idx = np.array([], dtype=int)
    if args.bn_images:
        xtr = _cache_arrays(train, spec, cache, "train")
        src_tr = np.array([s.source for s in train])
        rng = np.random.default_rng(args.seed)
        per = args.bn_images // len(sources)
        bn_idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(src_tr == s), min(per, int((src_tr == s).sum())),
                                                    replace=False) for s in sources]))
        n_bn = recompute_batchnorm(soup, xtr[bn_idx], spec)
    lv = _logits(soup, xva, spec, "cpu", False)
    temp = fit_temperature(lv, yva)
    before, after = _val_report(lv, yva, sva), _val_report(lv, yva, sva, temp)
    rows.append(("soup", before))
    for d, rep in rows:
        print(f"{d}: val AUC " + ", ".join(f"{s} {rep[s]['roc_auc']:.4f}" for s in sources)
              + f", mean {rep['mean_auc']:.4f}")
    secs = time.time() - t0
    cmd = "python -m detector.soup " + " ".join(argv if argv is not None else sys.argv[1:])
    training = {
        "command": cmd, "device": "cpu", "hardware": _hardware("cpu"), "train_seconds": round(secs, 1),
        "samples_seen": 0, "sources": sources, "train_images": len(train), "val_images": len(val),
        "soup": {"ingredients": [init_record(d) for d in args.ingredients],
                 "weights": [round(float(w), 6) for w in (weights or [1.0] * len(args.ingredients))],
                 "bn_layers": n_bn, "bn_images": int(len(bn_idx)),
                 "val_mean_auc": {d: rep["mean_auc"] for d, rep in rows}},
        "init": init_record(args.ingredients[0]),
        "val": calibration_record(before, after),
    }
    extra = {"best_epoch": None, "training": training}
    save_checkpoint(soup, spec, args.out, temp, extra)
    print(json.dumps({"done": str(args.out), "temperature": temp, "val_mean_auc": after["mean_auc"],
                      "val_ece_after": after["pooled"]["ece"], "seconds": round(secs, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
