"""Train a detector: ``python -m detector.train --model NAME --data DIR [options]``.

* Data: ``index.csv`` of the faces dataset (train split to learn, val split to select
  and calibrate; test is never read). The images are already face crops, so training
  runs the shared preprocessing with ``face_crop=False`` (centre square, resize), then
  the augmentation, then CLAHE and normalisation: :func:`detector.preprocess.prepare_face`
  and :func:`detector.preprocess.finish`, the same functions inference uses.
* The deterministic part (decode + resize) is cached as uint8 ``.npy`` per split and
  input size under ``--cache`` so that later runs and other detectors skip decoding.
* Source-balanced sampling: every source contributes the same expected number of
  samples per epoch (gan140k is 13x smaller than dfdc).
* AdamW + cosine schedule with warm-up, bf16 autocast on CPUs that support it and on
  CUDA, fixed seed, tqdm progress, per-epoch log of train/val loss and AUC
  (``train_log.jsonl``), best checkpoint by mean per-source val AUC, resume from
  ``OUT/resume/``, and temperature scaling fitted on val and stored in ``config.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .augment import Augment, cutmix
from .data import Sample, cap_per_source, read_index
from .hardware import fast_bf16
from .metrics import binary_metrics, fit_temperature, softmax_np
from .preprocess import finish, prepare_face
from .specs import ModelSpec, get_spec
from .weights import save_checkpoint

PREP_VERSION = 1


def _cache_arrays(samples: list[Sample], spec: ModelSpec, cache_dir: Path, tag: str) -> np.ndarray:
    """uint8 (N, S, S, 3) array of prepared faces, cached on disk."""
    from tqdm import tqdm

    key = hashlib.sha1(("\n".join(str(s.path) for s in samples) + f"|{spec.input_size}|{PREP_VERSION}").encode()
                       ).hexdigest()[:12]
    f = cache_dir / f"{tag}_{spec.input_size}_{key}.npy"
    if f.is_file():
        return np.load(f, allow_pickle=False, mmap_mode="r")
    cache_dir.mkdir(parents=True, exist_ok=True)
    arr = np.empty((len(samples), spec.input_size, spec.input_size, 3), np.uint8)
    for i, s in enumerate(tqdm(samples, desc=f"caching {tag}", file=sys.stderr, mininterval=5)):
        arr[i], _, _ = prepare_face(s.path, spec, face_crop=False)
    tmp = f.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    tmp.rename(f)
    return np.load(f, allow_pickle=False, mmap_mode="r")  # the same object whether just written or reused


class _TrainSet:
    """Augmented, CLAHE'd, normalised training tensors; with ``crop`` a random ``crop x crop``
    window of the full-size tensor (no resizing: the pixels keep their native scale)."""

    def __init__(self, arr: np.ndarray, labels: np.ndarray, spec: ModelSpec, seed: int, crop: int = 0,
                 strong: np.ndarray | None = None) -> None:
        self.arr, self.labels, self.spec, self.seed, self.crop = arr, labels, spec, seed, crop
        self.strong = strong  # per image: use the strong augmentation (see detector.augment)
        self.aug: Augment | None = None
        self.aug_strong: Augment | None = None

    def __len__(self) -> int:
        return len(self.arr)

    def __getitem__(self, i: int):
        if self.aug is None:  # one generator per worker process
            import torch

            info = torch.utils.data.get_worker_info()
            self.aug = Augment(seed=self.seed * 1000 + (info.id if info else 0))
            self.aug_strong = Augment(seed=self.seed * 1000 + 500 + (info.id if info else 0), strong=True)
        aug = self.aug_strong if self.strong is not None and self.strong[i] else self.aug
        x, _ = finish(np.asarray(self.arr[i]), self.spec, aug)
        x = x[0]
        if self.crop:
            top, left = (int(v) for v in self.aug.rng.integers(0, x.shape[-1] - self.crop + 1, size=2))
            x = x[:, top:top + self.crop, left:left + self.crop]
        return x, int(self.labels[i]), i


def prepared_batches(arr: np.ndarray, spec: ModelSpec, device: str, batch: int = 64):
    """Yield ``(B, 3, S, S)`` tensors of the cached uint8 crops in ``arr``, prepared as at inference
    (CLAHE, normalise: :func:`detector.preprocess.finish`), in order, on ``device``."""
    import torch

    for s in range(0, len(arr), batch):
        yield torch.cat([finish(np.asarray(a), spec)[0] for a in arr[s:s + batch]]).to(device)


def _logits(model, arr: np.ndarray, spec: ModelSpec, device: str, amp: bool, batch: int = 64) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
        for x in prepared_batches(arr, spec, device, batch):
            out.append(model(x).float().cpu().numpy())
    return np.concatenate(out)


def _val_report(logits: np.ndarray, y: np.ndarray, src: np.ndarray, temperature: float = 1.0) -> dict:
    p = softmax_np(logits, temperature)[:, 1]
    rep = {"pooled": binary_metrics(y, p)}
    for s in sorted(set(src)):
        m = src == s
        rep[s] = binary_metrics(y[m], p[m])
    rep["mean_auc"] = float(np.mean([rep[s]["roc_auc"] for s in sorted(set(src))]))
    return rep


def calibration_record(before: dict, after: dict) -> dict:
    """The ``training.val`` record of a checkpoint: mean per-source AUC and pooled ECE / log loss
    before and after temperature scaling (two :func:`_val_report` results)."""
    return {"mean_auc": after["mean_auc"], "ece_before": before["pooled"]["ece"], "ece_after": after["pooled"]["ece"],
            "log_loss_before": before["pooled"]["log_loss"], "log_loss_after": after["pooled"]["log_loss"]}


def _save_state(out: Path, model, opt, epoch: int, best: float, history: list) -> None:
    """Resume state as safetensors (model + flattened AdamW moments) plus JSON."""
    import torch
    from safetensors.torch import save_file

    d = out / "resume"
    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    steps = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"opt.{i}.{k}"] = v.detach().cpu().contiguous()
            else:
                steps[f"{i}.{k}"] = float(v)
    save_file(tensors, str(d / "state.safetensors"))
    (d / "state.json").write_text(json.dumps({"epoch": epoch, "best": best, "history": history, "scalars": steps}))


def _load_state(out: Path, model, opt) -> tuple[int, float, list]:
    import torch
    from safetensors.torch import load_file

    d = out / "resume"
    meta = json.loads((d / "state.json").read_text())
    t = load_file(str(d / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    sd = opt.state_dict()
    state: dict = {}
    for key, v in t.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    for key, v in meta["scalars"].items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = torch.tensor(v)
    sd["state"] = state
    opt.load_state_dict(sd)
    return meta["epoch"], meta["best"], meta["history"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="folder with index.csv (e.g. ../shared/datasets/faces)")
    ap.add_argument("--sources", default="gan140k,dfdc")
    ap.add_argument("--source-weights", default=None, metavar="SRC=W,...",
                    help="relative share of the draws per source, e.g. gan140k=1,dfdc=3 (default: equal shares)")
    ap.add_argument("--strong-augment", default="", metavar="SRC,...",
                    help="sources whose train images get the strong augmentation (random resized crop, random "
                         "erasing, harsher JPEG and blur; see detector.augment), e.g. gan140k; 'all' for every source")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samples-per-epoch", type=int, default=0, help="draws per epoch (0: size of the train set)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of steps for linear warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                    help="bf16 autocast (auto: on for CUDA and for CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--val-per-source", type=int, default=0, help="cap val images per source (0: all)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/deepfake-faces"))
    ap.add_argument("--out", default=None, help="checkpoint folder (default: checkpoints/NAME)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/resume/")
    ap.add_argument("--init", default=None,
                    help="start from this checkpoint folder (e.g. VGG-Face weights from detector.vggface_convert)")
    ap.add_argument("--pretrained", default=None,
                    help="start from ImageNet weights of detector.pretrained (e.g. efficientnet_lite0); new head")
    ap.add_argument("--freeze-blocks", type=int, default=None, metavar="K",
                    help="EfficientNet-style models: freeze the stem and blocks[:K], cache their outputs once "
                         "(detector.feature_cache) and train the rest on the cache")
    ap.add_argument("--flip-features", type=float, default=0.5,
                    help="with --freeze-blocks: probability of mirroring a cached feature map")
    ap.add_argument("--drop-rate", type=float, default=None, help="classifier dropout (timm models)")
    ap.add_argument("--drop-path", type=float, default=None, help="stochastic depth rate (timm models)")
    ap.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="constructor argument of the trained model, over the spec's (repeatable; values are JSON, "
                         "e.g. rgb=true for custom_cnn's colour branch). With --init the init's weights are grown "
                         "into the new shape where the architecture knows how (grow_state_dict), else loaded as is")
    ap.add_argument("--teacher", default=None,
                    help="checkpoint folder of a teacher detector: its calibrated logits on the train images "
                         "(computed once, cached) become soft targets beside the hard labels")
    ap.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the distillation term (0..1)")
    ap.add_argument("--kd-temperature", type=float, default=2.0, help="softmax temperature of the distillation term")
    ap.add_argument("--cutmix", type=float, default=0.0, metavar="P",
                    help="probability per batch of CutMix (a rectangle of another image of the batch pasted in, "
                         "labels mixed by area; detector.augment.cutmix), against memorising a small source")
    ap.add_argument("--cutmix-alpha", type=float, default=1.0, help="Beta(alpha, alpha) of the CutMix box area")
    ap.add_argument("--input-size", type=int, default=None,
                    help="train and validate at this size instead of the spec's (for comparisons; a checkpoint "
                         "records its size and the loader refuses one that differs from the spec)")
    ap.add_argument("--train-crop", type=int, default=0, metavar="N",
                    help="train on random NxN windows of the input-size images, without resizing (native-"
                         "resolution crops); validation and inference see the whole image")
    ap.add_argument("--cpu-minutes", type=float, default=0,
                    help="training budget in CPU minutes of this process (all threads; validation not counted): "
                         "the cosine schedule follows the budget and training stops when it is spent, so recipes "
                         "compare at equal CPU time even on a shared machine; data loading runs in-process")
    ap.add_argument("--memory-format", choices=["channels_last", "nchw"], default="channels_last",
                    help="weight layout while training (channels-last: faster convolutions on CPU and GPU; "
                         "`python -m detector.bench --layouts`)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="stop after the epoch that passes this wall time (0: no limit); the best checkpoint "
                         "so far is calibrated and kept")
    args = ap.parse_args(argv)

    import timm
    import torch
    from tqdm import tqdm

    from . import models  # noqa: F401
    from .weights import pick_device

    spec = get_spec(args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.input_size and args.input_size != spec.input_size:
        import dataclasses

        spec = dataclasses.replace(spec, input_size=args.input_size)
    if args.train_crop and not 0 < args.train_crop <= spec.input_size:
        raise SystemExit(f"--train-crop {args.train_crop} must be between 1 and the input size {spec.input_size}")
    if not 0.0 <= args.cutmix <= 1.0 or args.cutmix_alpha <= 0:
        raise SystemExit(f"--cutmix {args.cutmix:g} must be in [0, 1] and --cutmix-alpha {args.cutmix_alpha:g} > 0")
    if args.cutmix and args.freeze_blocks is not None:
        raise SystemExit("--cutmix mixes pixels: it cannot be used with --freeze-blocks (cached feature maps)")
    if args.cpu_minutes:
        args.workers = 0  # so that process CPU time covers decoding and augmentation too
    out = Path(args.out) if args.out else spec.local_dir
    device = pick_device(args.device)
    amp = args.amp == "on" or (args.amp == "auto" and fast_bf16(device))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    sources = [s for s in args.sources.split(",") if s]
    strong_sources = _strong_sources(args.strong_augment, sources)  # checked before the slow data loading
    train = read_index(args.data, "train", sources)
    val = read_index(args.data, "val", sources)
    if args.val_per_source:
        val = cap_per_source(val, args.val_per_source, sources)
    cache = Path(args.cache)
    t_start = time.time()
    xtr = _cache_arrays(train, spec, cache, "train")
    xva = _cache_arrays(val, spec, cache, "val")
    ytr = np.array([s.label for s in train])
    yva = np.array([s.label for s in val])
    sva = np.array([s.source for s in val])
    src_tr = np.array([s.source for s in train])
    share = _source_shares(args.source_weights, sources)
    w = np.zeros(len(train))
    for s in sources:
        m = src_tr == s
        w[m] = share[s] / m.sum()  # each source: its share of the draws (equal by default)
    n_per_epoch = args.samples_per_epoch or len(train)
    gen = torch.Generator().manual_seed(args.seed)
    sampler = torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), n_per_epoch, replacement=True, generator=gen)
    strong = np.isin(src_tr, strong_sources) if strong_sources else None
    ds = _TrainSet(xtr, ytr, spec, args.seed, args.train_crop, strong)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                                         drop_last=True, persistent_workers=args.workers > 0)
    kw = {k: v for k, v in (("drop_rate", args.drop_rate), ("drop_path_rate", args.drop_path)) if v is not None}
    arch_args = _model_args(args.model_arg)
    pretrained_rec = None
    if args.init:
        from .weights import load_checkpoint_dir

        model, _ = load_checkpoint_dir(args.init, get_spec(args.model), device)  # its own size: --input-size may differ
        if kw or arch_args:  # constructor arguments (dropout, stochastic depth, --model-arg): rebuild, same weights
            loaded = model
            model = timm.create_model(spec.architecture, num_classes=spec.num_classes,
                                      **{**getattr(loaded, "model_args", {}), **arch_args}, **kw).to(device)
            sd = loaded.state_dict()
            if hasattr(model, "grow_state_dict"):
                sd = model.grow_state_dict(sd)
            try:
                model.load_state_dict(sd)
            except RuntimeError as e:
                raise SystemExit(f"--init {args.init} does not fit {spec.architecture} with {arch_args}: {e}") from None
        for p in model.parameters():
            p.requires_grad_(True)
        _freeze_spec_params(model, spec)
    elif args.pretrained:
        model, pretrained_rec = _from_pretrained(args.pretrained, spec, kw)
        model = model.to(device)
    else:
        model = spec.create_model(**arch_args, **kw).to(device)
    _freeze_spec_params(model, spec)
    model = model.to(memory_format=torch.channels_last if args.memory_format == "channels_last"
                     else torch.contiguous_format)
    teacher = None
    if args.teacher:
        teacher = _teacher_logits(args.teacher, train, cache, device)
        teacher["alpha"], teacher["temperature"] = args.kd_alpha, args.kd_temperature
    frozen = None
    if args.freeze_blocks is not None:
        frozen = _freeze(model, args.freeze_blocks, spec, cache, xtr, xva, device)
        ftr, fva = frozen["train"], frozen["val"]
        loader = _FeatureBatches(ftr, ytr, sampler, args.batch_size, args.flip_features, args.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * args.epochs
    warm = max(1, int(args.warmup * total))
    budget = _CpuBudget(60 * args.cpu_minutes, args.warmup) if args.cpu_minutes else None
    if budget:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: budget.lr_factor())
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else
            0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    start_epoch, best, history = 0, -1.0, []
    if args.resume:
        start_epoch, best, history = _load_state(out, model, opt)
        for _ in range(start_epoch * steps_per_epoch):
            sched.step()
        print(f"resumed from {out / 'resume'} at epoch {start_epoch} (best val AUC {best:.4f})", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    init = init_record(args.init) if args.init else None
    stage = 1 + len(training_stages(init.get("training"))) if init else 1  # continued runs are later stages
    log_f = (out / "train_log.jsonl").open("a")
    dtype = torch.bfloat16
    mix_rng = np.random.default_rng(args.seed + 7919)  # CutMix draws, apart from the image augmentation's
    for epoch in range(start_epoch, args.epochs):
        model.train()
        t0, tot, n = time.time(), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", file=sys.stderr, mininterval=10)
        net = frozen["suffix"] if frozen else model
        if budget:
            budget.start()
        for x, y, idx in bar:
            if budget and budget.spent():
                break
            x, y = x.to(device), y.to(device)
            mix = None
            if args.cutmix and mix_rng.random() < args.cutmix:
                x, perm, lam = cutmix(x, mix_rng, args.cutmix_alpha)
                mix = (perm, lam)  # perm stays on the CPU, beside idx
            with torch.autocast(device.split(":")[0], dtype=dtype, enabled=amp):
                scores = net(x).float()
            loss = _loss(scores, y, teacher, idx)
            if mix:
                perm, lam = mix
                loss = lam * loss + (1 - lam) * _loss(scores, y[perm.to(device)], teacher, idx[perm])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(y)
            n += len(y)
            bar.set_postfix(loss=f"{tot / n:.4f}", refresh=False)
        if budget:
            budget.pause()
        lv = _feature_logits(frozen["suffix"], fva, device, amp) if frozen else _logits(model, xva, spec, device, amp)
        rep = _val_report(lv, yva, sva)
        val_loss = rep["pooled"]["log_loss"]
        rec = {"stage": stage, "epoch": epoch + 1, "train_loss": tot / max(1, n), "val_loss": val_loss,
               "val_auc": rep["mean_auc"], **{f"val_auc_{s}": rep[s]["roc_auc"] for s in sources},
               "lr": sched.get_last_lr()[0], "epoch_s": round(time.time() - t0, 1), "samples": n}
        if budget:
            rec["train_cpu_s"] = round(budget.used, 1)
        history.append(rec)
        print(json.dumps(rec), flush=True)
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        if rep["mean_auc"] > best:
            best = rep["mean_auc"]
            save_checkpoint(model, spec, out, 1.0, {"best_epoch": epoch + 1})
        _save_state(out, model, opt, epoch + 1, best, history)
        if budget and budget.spent():
            print(f"stopping after epoch {epoch + 1}: --cpu-minutes {args.cpu_minutes:g} spent", file=sys.stderr)
            break
        if args.max_minutes and time.time() - t_start > 60 * args.max_minutes and epoch + 1 < args.epochs:
            print(f"stopping after epoch {epoch + 1}: --max-minutes {args.max_minutes:g} reached", file=sys.stderr)
            break
    # Calibrate the best checkpoint on val.
    from .weights import load_checkpoint_dir

    best_model, cfg = load_checkpoint_dir(out, spec, device)
    if frozen:
        from .feature_cache import Suffix

        lv = _feature_logits(Suffix(best_model, args.freeze_blocks), fva, device, False)
    else:
        lv = _logits(best_model, xva, spec, device, False)
    temp = fit_temperature(lv, yva)
    before = _val_report(lv, yva, sva)
    after = _val_report(lv, yva, sva, temp)
    train_s = time.time() - t_start
    extra = {
        "best_epoch": cfg.get("best_epoch"),
        "training": {
            "command": "python -m detector.train " + " ".join(argv if argv is not None else sys.argv[1:]),
            "epochs": args.epochs, "samples_per_epoch": n_per_epoch, "batch_size": args.batch_size, "lr": args.lr,
            "warmup": args.warmup,
            "weight_decay": args.weight_decay, "seed": args.seed, "amp_bf16": amp, "sources": sources,
            "source_shares": {k: round(v, 4) for k, v in share.items()},
            "train_images": len(train), "val_images": len(val), "device": device,
            "memory_format": args.memory_format,
            "hardware": _hardware(device), "train_seconds": round(train_s, 1),
            "val": calibration_record(before, after),
        },
    }
    if init:
        extra["training"]["init"] = init
    if pretrained_rec:
        extra["training"]["pretrained"] = pretrained_rec
    if frozen:
        extra["training"]["frozen_prefix"] = {
            "blocks": args.freeze_blocks, "flip_features": args.flip_features,
            "feature_cache_seconds": frozen["seconds"],
            "check_max_abs_logit_diff": _check_split(best_model, args.freeze_blocks, xva, fva, spec, device)}
    if kw:
        extra["training"].update(kw)
    if arch_args:
        extra["training"]["model_args"] = arch_args
    if args.input_size:
        extra["training"]["input_size"] = spec.input_size
    if args.train_crop:
        extra["training"]["train_crop"] = args.train_crop
    if strong_sources:
        extra["training"]["strong_augment"] = strong_sources
    if args.cutmix:
        extra["training"]["cutmix"] = {"p": args.cutmix, "alpha": args.cutmix_alpha}
    if budget:
        extra["training"]["cpu_minutes"] = args.cpu_minutes
        extra["training"]["train_cpu_seconds"] = round(budget.used, 1)
        extra["training"]["samples_seen"] = int(sum(h.get("samples", 0) for h in history
                                                     if h.get("stage", stage) == stage))
    if teacher:
        extra["training"]["teacher"] = {k: teacher[k] for k in ("from", "alpha", "temperature", "teacher_temperature",
                                                                "seconds", "train_auc")}
    extra["training"]["epochs_run"] = len([h for h in history if h.get("stage", stage) == stage])
    save_checkpoint(best_model, spec, out, temp, extra)
    print(json.dumps({"done": str(out), "temperature": temp, "val_mean_auc": after["mean_auc"],
                      "val_ece_before": before["pooled"]["ece"], "val_ece_after": after["pooled"]["ece"],
                      "train_seconds": round(train_s, 1)}), flush=True)
    return 0


def _strong_sources(spec: str, sources: list[str]) -> list[str]:
    """Parse ``--strong-augment``: a comma list of sources, or ``all``; unknown names exit with a message."""
    names = list(sources) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = sorted(set(names) - set(sources))
    if unknown:
        raise SystemExit(f"--strong-augment names {', '.join(unknown)}, not among --sources {','.join(sources)}")
    return names


def _source_shares(spec: str | None, sources: list[str]) -> dict[str, float]:
    """Share of the training draws per source from ``"gan140k=1,dfdc=3"`` (normalised); equal if None."""
    if not spec:
        return {s: 1.0 / len(sources) for s in sources}
    raw = {}
    for part in spec.split(","):
        name, sep, val = part.partition("=")
        name = name.strip()
        if not sep or name not in sources:
            raise SystemExit(f"--source-weights: expected SRC=W with SRC in {sources}, got {part!r}")
        try:
            raw[name] = float(val)
        except ValueError:
            raise SystemExit(f"--source-weights: {val!r} is not a number (in {part!r})") from None
        if raw[name] <= 0:
            raise SystemExit(f"--source-weights: weights must be positive, got {part!r}")
    missing = [s for s in sources if s not in raw]
    if missing:
        raise SystemExit(f"--source-weights: no weight for {missing}")
    total = sum(raw.values())
    return {s: raw[s] / total for s in sources}


class _CpuBudget:
    """Process CPU time spent in training steps, against a budget in seconds.

    ``lr_factor`` is linear warm-up over the first ``warmup`` fraction of the budget, then a
    cosine decay to zero at the end of it; validation runs while the clock is paused."""

    def __init__(self, seconds: float, warmup: float) -> None:
        self.total, self.warmup, self.used, self._t0 = seconds, warmup, 0.0, None

    def start(self) -> None:
        self._t0 = time.process_time()

    def pause(self) -> None:
        self.used = self._now()
        self._t0 = None

    def _now(self) -> float:
        return self.used + (time.process_time() - self._t0 if self._t0 is not None else 0.0)

    def spent(self) -> bool:
        return self._now() >= self.total

    def lr_factor(self) -> float:
        f = min(1.0, self._now() / self.total)
        if f < self.warmup:
            return max(f / self.warmup, 1e-3)
        return 0.5 * (1 + math.cos(math.pi * (f - self.warmup) / max(1e-9, 1 - self.warmup)))


def _freeze_spec_params(model, spec: ModelSpec) -> None:
    """Parameters the spec says training must never update (e.g. the custom CNN's fixed high-pass)."""
    params = dict(model.named_parameters())
    for name in spec.frozen_params:
        params[name].requires_grad_(False)


def _model_args(pairs: list[str]) -> dict:
    """``["rgb=true", "width=0.5"]`` -> ``{"rgb": True, "width": 0.5}`` (values as JSON, else strings)."""
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise SystemExit(f"--model-arg {p!r}: expected KEY=VALUE, e.g. rgb=true")
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _loss(out, y, teacher: dict | None, idx):
    """Cross-entropy on the hard labels, plus (with a teacher) ``alpha * T^2 * KL(teacher || student)``
    at temperature ``T`` on the teacher's calibrated logits."""
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(out, y)
    if not teacher:
        return ce
    a, t = teacher["alpha"], teacher["temperature"]
    soft = torch.from_numpy(teacher["logits"][idx.numpy()]).to(out.device) / t
    kd = F.kl_div(F.log_softmax(out / t, dim=1), F.log_softmax(soft, dim=1), reduction="batchmean", log_target=True)
    return (1 - a) * ce + a * t * t * kd


def _teacher_logits(folder: str, train: list[Sample], cache: Path, device: str) -> dict:
    """The teacher's calibrated logits on the train images, cached by weights hash and image list.

    A teacher trained with a frozen prefix (``training.frozen_prefix`` in its config) reuses
    that run's feature cache when it is there, so only its suffix runs.
    """
    from .weights import load_checkpoint_dir

    folder_p = Path(folder)
    cfg = json.loads((folder_p / "config.json").read_text())
    tspec = get_spec(cfg.get("detector") or folder_p.name)
    h = hashlib.sha1((folder_p / "model.safetensors").read_bytes())
    h.update("\n".join(str(s.path) for s in train).encode())
    f = cache / f"teacher_{tspec.name}_{h.hexdigest()[:12]}.npy"
    t0 = time.time()
    temp = float(cfg.get("temperature", 1.0))
    if f.is_file():
        logits = np.load(f, allow_pickle=False)
    else:
        model, cfg = load_checkpoint_dir(folder_p, tspec, device)  # validates the folder; only needed to score
        xt = _cache_arrays(train, tspec, cache, "train")
        fp = (cfg.get("training") or {}).get("frozen_prefix")
        if fp:
            frozen = _freeze(model, fp["blocks"], tspec, cache, xt, None, device)
            logits = _feature_logits(frozen["suffix"], frozen["train"], device, False)
        else:
            logits = _logits(model, xt, tspec, device, False)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(f, logits.astype(np.float32))
    y = np.array([s.label for s in train])
    from .metrics import binary_metrics

    auc = binary_metrics(y, softmax_np(logits, temp)[:, 1])["roc_auc"]
    print(f"teacher {folder}: train AUC {auc:.4f} (temperature {temp:.3f})", file=sys.stderr)
    return {"from": str(folder), "logits": (logits / temp).astype(np.float32), "teacher_temperature": temp,
            "seconds": round(time.time() - t0, 1), "train_auc": auc}


def _from_pretrained(name: str, spec: ModelSpec, kw: dict):
    """A timm model with ImageNet weights from :mod:`detector.pretrained` and a new 2-class head."""
    import timm

    from .pretrained import SOURCES, load_pretrained_state

    src = SOURCES.get(name)
    if src is None:
        raise SystemExit(f"unknown --pretrained {name!r}; known: {', '.join(SOURCES)}")
    if src.timm_arch != spec.architecture:
        raise SystemExit(f"--pretrained {name} is for {src.timm_arch}, but {spec.name} is {spec.architecture}")
    if tuple(src.mean) != tuple(spec.mean) or tuple(src.std) != tuple(spec.std):
        raise SystemExit(f"{spec.name}'s mean/std {spec.mean}/{spec.std} differ from what {name} was trained with "
                         f"({src.mean}/{src.std})")
    model = timm.create_model(spec.architecture, num_classes=spec.num_classes, **kw)
    head = model.get_classifier()
    sd = {k: v for k, v in load_pretrained_state(name).items() if not k.startswith(_head_prefix(model, head))}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any(not k.startswith(_head_prefix(model, head)) for k in missing):
        raise SystemExit(f"pretrained {name} does not fit {spec.architecture}: missing {missing}, unexpected {unexpected}")
    return model, src.record()


def _head_prefix(model, head) -> str:
    for n, m in model.named_modules():
        if m is head:
            return n + "."
    raise ValueError("classifier not found")


def _freeze(model, k: int, spec: ModelSpec, cache: Path, xtr: np.ndarray, xva: np.ndarray | None,
            device: str) -> dict:
    """Freeze stem + blocks[:k], cache their outputs for train and val, leave the rest trainable.

    The cache is keyed by the prefix's own weights rounded to fp16 (as checkpoints store them)
    and the image array's file, so a checkpoint trained on the cache (a teacher, or ``--init``
    for a later stage) finds it again, whatever the rest of the model holds."""
    import torch

    from .feature_cache import Prefix, Suffix, cache_features

    prefix, suffix = Prefix(model, k), Suffix(model, k)
    for p in model.parameters():
        p.requires_grad_(False)
    for m in suffix.trainable_modules():
        for p in m.parameters():
            p.requires_grad_(True)
    h = hashlib.sha1()
    for n, v in prefix.weights().items():
        h.update(n.encode())
        h.update(v.detach().cpu().half().numpy().tobytes())
    ident = f"{spec.name}|{spec.architecture}|k={k}|{h.hexdigest()}|{PREP_VERSION}"
    prep = lambda a: finish(a, spec)[0]  # noqa: E731  (the inference preprocessing, no augmentation)
    t0 = time.time()
    ftr = cache_features(prefix, xtr, prep, cache, "train", ident + f"|{_array_id(xtr)}", device=device)
    fva = None if xva is None else cache_features(prefix, xva, prep, cache, "val", ident + f"|{_array_id(xva)}",
                                                  device=device)
    torch.manual_seed(0)
    return {"train": ftr, "val": fva, "suffix": suffix, "seconds": round(time.time() - t0, 1)}


def _array_id(arr: np.ndarray) -> str:
    """What a cached image array is, for keys: its file name (it encodes the image list and the size)."""
    name = getattr(arr, "filename", None)
    return Path(name).name if name else f"n={len(arr)}"


class _FeatureBatches:
    """Batches of cached features drawn by ``sampler``, with optional left-right mirroring."""

    def __init__(self, feats: np.ndarray, labels: np.ndarray, sampler, batch: int, p_flip: float, seed: int) -> None:
        import torch

        self.feats, self.labels, self.sampler, self.batch, self.p_flip = feats, labels, sampler, batch, p_flip
        self.gen = torch.Generator().manual_seed(seed + 1)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch

    def __iter__(self):
        import torch

        from .feature_cache import flip_features

        idx = list(self.sampler)
        for s in range(0, len(self) * self.batch, self.batch):
            b = np.asarray(idx[s:s + self.batch])
            order = np.argsort(b)  # sorted reads from the memory map
            x = torch.from_numpy(np.asarray(self.feats[b[order]], dtype=np.float32))
            y = torch.from_numpy(self.labels[b[order]].astype(np.int64))
            yield flip_features(x, self.p_flip, self.gen), y, torch.from_numpy(b[order])


def _feature_logits(suffix, feats: np.ndarray, device: str, amp: bool, batch: int = 128) -> np.ndarray:
    import torch

    suffix.eval()
    out = []
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
        for s in range(0, len(feats), batch):
            x = torch.from_numpy(np.asarray(feats[s:s + batch], dtype=np.float32)).to(device)
            out.append(suffix(x).float().cpu().numpy())
    return np.concatenate(out)


def _check_split(model, k: int, xva: np.ndarray, fva: np.ndarray, spec: ModelSpec, device: str, n: int = 8) -> float:
    """Max |logit difference| between the full model on images and the suffix on cached features
    (fp16 storage of the cache is the only difference)."""
    from .feature_cache import Suffix

    full = _logits(model, xva[:n], spec, device, False)
    part = _feature_logits(Suffix(model, k), fva[:n], device, False)
    return float(np.abs(full - part).max())


def init_record(folder: str | Path) -> dict:
    """What a run started from: the ``--init`` folder and that checkpoint's own training record
    (command, time, hardware, its own ``init``...), so a card can list every stage."""
    rec: dict = {"from": str(folder)}
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return rec
    rec["best_epoch"] = cfg.get("best_epoch")
    if cfg.get("training"):
        rec["training"] = cfg["training"]
    return rec


def training_stages(training: dict | None) -> list[dict]:
    """A checkpoint's training records, first stage first, following ``init.training`` links."""
    chain, cur = [], training
    while cur:
        chain.append(cur)
        cur = (cur.get("init") or {}).get("training")
    return chain[::-1]


def _hardware(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads"


if __name__ == "__main__":
    sys.exit(main())
