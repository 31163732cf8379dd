"""Fit the verdict bands and the consensus: ``python -m detector.fit_reliability --data ../shared/datasets/faces``.

For every detector in :data:`detector.specs.SPECS` that has a local checkpoint (``<checkpoint folder>/NAME/`` with
``config.json`` + ``model.safetensors``; others are skipped with a message):

1. score the val and test splits with the shared inference path (:func:`detector.predict.predict_batch` on the
   whole image, as ``detector.evaluate`` does), caching each image's calibrated ``p_fake`` under
   ``~/.cache/deepfake-reliability/`` keyed by the weights' and index's hashes and the temperature, so a re-run
   only scores what changed;
2. choose the detector's inconclusive band on **val** (:func:`detector.verdict_bands.choose_band`) and write it into
   its ``config.json`` as ``"decision_band"`` (only that key changes); the test precision outside the band is
   computed once afterwards and recorded beside it, never used to choose;
3. fit the consensus logistic regression on the val predictions of all those detectors
   (:func:`detector.consensus.fit`), choose its band on val, compute its test AUC once, and write
   ``<checkpoint folder>/consensus.json``.

Re-run it whenever a checkpoint is added or retrained: everything is refitted from the cached scores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["CACHE_DIR", "score_split", "file_sha256", "write_band", "main"]

#: Where per-image predictions are cached.
CACHE_DIR = Path.home() / ".cache" / "deepfake-reliability"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _index_key(data: Path) -> str:
    index = data / "index.csv"
    if index.is_file():
        return file_sha256(index)[:12]
    return hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:12]


def score_split(name: str, data: str | Path, split: str, cache_dir: Path = CACHE_DIR, batch_size: int = 32,
                progress: bool = True) -> dict:
    """Calibrated ``p_fake`` of every image of ``split`` for detector ``name`` (local checkpoint), cached.

    Returns ``{"model", "split", "weights_sha256", "temperature", "path": [...], "y": [...], "source": [...],
    "p_fake": [...], "failed": [[path, message], ...]}`` with paths relative to ``data``.
    """
    from .data import read_index
    from .predict import Prediction, predict_batch
    from .specs import get_spec

    data = Path(data)
    folder = get_spec(name).local_dir
    sha = file_sha256(folder / "model.safetensors")
    temperature = float(json.loads((folder / "config.json").read_text()).get("temperature", 1.0))
    key = f"{name}-{split}-{sha[:16]}-T{temperature:.6f}-{_index_key(data)}.json"
    cached = cache_dir / key
    if cached.is_file():
        try:
            return json.loads(cached.read_text())
        except ValueError:
            pass
    samples = read_index(data, split)
    if not samples:
        raise ValueError(f"no images for split {split!r} in {data}")
    t0 = time.perf_counter()
    preds = predict_batch([s.path for s in samples], name, face_crop=False, batch_size=batch_size,
                          progress=progress)
    ok = [(s, p) for s, p in zip(samples, preds) if isinstance(p, Prediction)]
    if ok and not ok[0][1].weights.startswith("local:"):
        raise RuntimeError(f"{name}: weights came from {ok[0][1].weights}, not the local checkpoint {folder}; "
                           "unset DEEPFAKE_HUB_* to fit bands for the local files")
    out = {"model": name, "split": split, "data": str(data), "weights_sha256": sha, "temperature": temperature,
           "seconds": round(time.perf_counter() - t0, 1),
           "path": [str(Path(s.path).relative_to(data)) if Path(s.path).is_relative_to(data) else str(s.path)
                    for s, _ in ok],
           "y": [int(s.label) for s, _ in ok], "source": [s.source for s, _ in ok],
           "p_fake": [float(p.p_fake) for _, p in ok],
           "failed": [[str(s.path), getattr(p, "message", str(p))] for s, p in zip(samples, preds)
                      if not isinstance(p, Prediction)]}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(cached)
    return out


def write_band(name: str, band_record: dict) -> Path:
    """Set ``"decision_band"`` in ``<checkpoint folder>/<name>/config.json``, leaving every other key as it is."""
    from .specs import get_spec

    path = get_spec(name).local_dir / "config.json"
    text = path.read_text()
    cfg = json.loads(text)
    cfg["decision_band"] = band_record
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + ("\n" if text.endswith("\n") else ""))
    tmp.replace(path)
    return path


def _describe(split: dict) -> str:
    from collections import Counter

    c = Counter(split["source"])
    return f"{len(split['y'])} images: " + ", ".join(f"{s} {n}" for s, n in sorted(c.items()))


def _aligned(splits: dict[str, dict], names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(p matrix n x k, y, source, path) over the images every detector scored, in the first one's order."""
    maps = {n: dict(zip(splits[n]["path"], range(len(splits[n]["path"])))) for n in names}
    first = splits[names[0]]
    common = [i for i, p in enumerate(first["path"]) if all(p in maps[n] for n in names)]
    paths = [first["path"][i] for i in common]
    pm = np.array([[splits[n]["p_fake"][maps[n][p]] for n in names] for p in paths], dtype=np.float64)
    return pm, np.array([first["y"][i] for i in common]), [first["source"][i] for i in common], paths


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 nothing to fit, 2 usage error)."""
    ap = argparse.ArgumentParser(prog="python -m detector.fit_reliability", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="faces dataset folder (index.csv with val and test splits)")
    ap.add_argument("--cache", default=str(CACHE_DIR), help=f"prediction cache folder (default {CACHE_DIR})")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV CPU threads while scoring (default 1)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--models", default=None,
                    help="comma-separated subset of detectors (default: every detector in SPECS with a checkpoint)")
    ap.add_argument("--dry-run", action="store_true", help="print what would be written, write nothing")
    args = ap.parse_args(argv)

    from . import consensus as cons
    from .specs import SPECS, checkpoint_root
    from .verdict_bands import band_precision, choose_band

    data = Path(args.data)
    if not (data / "index.csv").is_file():
        print(f"error: {data}/index.csv not found (need the faces dataset with val and test splits)",
              file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        import cv2

        cv2.setNumThreads(max(1, args.threads))
    except ImportError:
        pass
    names: list[str] = []
    val: dict[str, dict] = {}
    test: dict[str, dict] = {}
    wanted = args.models.split(",") if args.models else list(SPECS)
    unknown = [n for n in wanted if n not in SPECS]
    if unknown:
        print(f"error: unknown detector(s) {', '.join(unknown)}; known: {', '.join(SPECS)}", file=sys.stderr)
        return 2
    for name, spec in SPECS.items():
        if name not in wanted:
            continue
        folder = spec.local_dir
        if not ((folder / "config.json").is_file() and (folder / "model.safetensors").is_file()):
            print(f"skip {name}: no checkpoint in {folder}", file=sys.stderr)
            continue
        for split, store in (("val", val), ("test", test)):
            t0 = time.perf_counter()
            store[name] = score_split(name, data, split, Path(args.cache), args.batch_size)
            if store[name]["failed"]:
                print(f"{name} {split}: {len(store[name]['failed'])} images could not be scored", file=sys.stderr)
            print(f"{name} {split}: {len(store[name]['p_fake'])} images scored "
                  f"({time.perf_counter() - t0:.1f} s, cache {args.cache})", file=sys.stderr)
        names.append(name)
    if not names:
        print("error: no detector has a checkpoint; nothing to fit", file=sys.stderr)
        return 1

    for name in names:
        v, t = val[name], test[name]
        band = choose_band(np.array(v["y"]), np.array(v["p_fake"]))
        rec = band.to_json()
        rec["fit_on"] = f"val split of {data.name} ({_describe(v)})"
        rec["weights_sha256"] = v["weights_sha256"]
        rec["test"] = band_precision(np.array(t["y"]), np.array(t["p_fake"]), band)  # reported once, not tuned
        print(f"{name:18s} band lo={band.lo:.4f} hi={band.hi:.4f}  val decided {rec['val']['decided']:.1%} "
              f"(fake P={rec['val']['fake_precision']}, real P={rec['val']['real_precision']})  "
              f"test decided {rec['test']['decided']:.1%} (fake P={rec['test']['fake_precision']}, "
              f"real P={rec['test']['real_precision']})")
        if not args.dry_run:
            write_band(name, rec)

    pv, yv, sv, _ = _aligned(val, names)
    fit_data = {"split": "val", "data": data.name, "description": _describe({"y": yv, "source": sv}),
                "weights_sha256": {n: val[n]["weights_sha256"] for n in names}}
    model = cons.fit(pv, yv, names, fit_data)
    pt, yt, st, _ = _aligned(test, names)
    model = cons.ConsensusModel(model.detectors, model.coef, model.intercept, model.band, model.fit_data,
                                cons.test_report(model, pt, yt, st))
    print("consensus coef " + ", ".join(f"{n}={c:+.4f}" for n, c in zip(model.detectors, model.coef))
          + f", intercept {model.intercept:+.4f}; band lo={model.band.lo:.4f} hi={model.band.hi:.4f}")
    print("consensus test AUC " + ", ".join(f"{s}={m['roc_auc']}" for s, m in model.test["per_source"].items())
          + f", pooled={model.test['pooled']['roc_auc']}; decided {model.test['band']['decided']:.1%}")
    if not args.dry_run:
        print(f"wrote {model.save(checkpoint_root() / cons.CONSENSUS_FILE)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
