"""Benchmark: our fast defaults vs the libraries' defaults, per method.

``python -m explainers.bench --model NAME [--device cpu|cuda] [--image PATH] [--skip-defaults]
[--lime-same-superpixels] [--threads N] [--repeats N] [--bf16-check [--data DIR --per-source N]]``

Loads the detector with :func:`detector.weights.load_model` (exit 2 with the message if
its weights are missing), preprocesses the image (default: the face in
``skimage.data.astronaut()``), imports the explanation libraries once (reported
separately, as a running app has them loaded), then times the streamed panel
(:func:`explainers.panel.iter_panel`: all six maps + overlays + faithfulness) and each
method again with its ``library_defaults``. For each method it prints the time, the
deletion/insertion score and the Spearman rank correlation between our map and the
library-default map; for the stochastic methods (SHAP, LIME) also the correlation
between two library-default runs with different seeds, the ceiling. The last line is::

    panel_s=... default_s=... speedup=... min_rel_fidelity=...

where ``min_rel_fidelity`` is the minimum over methods of corr / ceiling (ceiling 1 for
deterministic methods).

``--bf16-check`` compares fp32 with bf16 autocast for the forward-only passes: LIME's map with
the same seed (Spearman correlation; beside it, the correlation between two fp32 seeds) and
every method's faithfulness score (largest absolute difference; the app keeps faithfulness in
fp32), with their times, on the bench image and, with ``--data``, on ``--per-source`` val
faces per source.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from typing import Sequence

import numpy as np

STOCHASTIC = ("shap", "lime")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (0 when either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def _warm_imports() -> float:
    t0 = time.perf_counter()
    import captum.attr  # noqa: F401
    import lime.lime_image  # noqa: F401
    import shap  # noqa: F401
    import skimage.segmentation  # noqa: F401
    import zennit.composites  # noqa: F401
    return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m explainers.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="detector name, e.g. custom_cnn")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: best available)")
    ap.add_argument("--image", default=None, help="image file (default: skimage's astronaut)")
    ap.add_argument("--skip-defaults", action="store_true", help="only time our defaults (quick)")
    ap.add_argument("--lime-same-superpixels", action="store_true",
                    help="also compare our LIME with 1000 samples on OUR superpixels (sample-count fidelity)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run the panel this many times and report the median (the first run is cold)")
    ap.add_argument("--bf16-check", action="store_true",
                    help="compare LIME maps and faithfulness scores scored in fp32 and in bf16 (see above)")
    ap.add_argument("--data", default=None, help="with --bf16-check: also check val faces from this dataset folder")
    ap.add_argument("--per-source", type=int, default=3, help="with --data: val faces per source")
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from detector.errors import DetectorError, WeightsError
    from detector.preprocess import preprocess
    from detector.weights import load_model

    from . import get_explainer
    from .faithfulness import deletion_insertion
    from .panel import FAITHFULNESS_STEPS, iter_panel

    try:
        lm = load_model(args.model, args.device)
    except WeightsError as e:
        print(f"error: {e.message}", flush=True)
        return 2
    except KeyError as e:
        print(f"error: {e.args[0]}", flush=True)
        return 2
    spec, model = lm.spec, lm.model
    if args.image:
        source = args.image
    else:
        from skimage.data import astronaut

        source = astronaut()
    try:
        prep = preprocess(source, spec)
    except DetectorError as e:
        print(f"error: {e.message}", flush=True)
        return 2
    x = prep.tensor.to(lm.device)
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), 1)[0]
    target = int(probs.argmax())
    label = spec.label_names[target]
    print(f"model={spec.name} device={lm.device} input={tuple(x.shape)} target={label} p={float(probs[target]):.3f} "
          f"threads={torch.get_num_threads()}", flush=True)
    print(f"imports_s={_warm_imports():.2f} (once per process, not counted below)", flush=True)

    runs: list[float] = []
    for _ in range(max(1, args.repeats)):
        ours: dict[str, object] = {}
        t0 = time.perf_counter()
        first = None
        for r in iter_panel(model, x, prep.face, target, spec, preview_first=True):  # as the app streams
            if first is None:
                first = time.perf_counter() - t0
            ours[r.method] = r
        runs.append(time.perf_counter() - t0)
    panel_s = float(np.median(runs))
    if len(runs) > 1:
        print(f"panel_runs_s={[round(v, 2) for v in runs]} (the first is cold; panel_s below is the median; "
              "the per-method times are the last run's)", flush=True)
    print(f"first_map_s={first:.2f} ({next(iter(ours))})", flush=True)
    errors = {m: r.error for m, r in ours.items() if r.error}
    for m, err in errors.items():
        print(f"{m}: ERROR {err}", flush=True)

    header = f"{'method':22s} {'ours_s':>7s} {'faith':>6s}"
    if not args.skip_defaults:
        header += f" {'default_s':>9s} {'d_faith':>7s} {'corr':>6s} {'ceiling':>7s} {'rel':>6s}"
    default_s = 0.0
    rels: list[float] = []
    rows = []
    for m, r in ours.items():
        if r.error:
            continue
        a = r.attribution
        row = f"{m:22s} {a.runtime_s:7.2f} {r.faithfulness['score'] if r.faithfulness else float('nan'):6.3f}"
        if not args.skip_defaults:
            ex = get_explainer(m)
            seed = {"seed": 0} if m in STOCHASTIC else {}
            t1 = time.perf_counter()
            d = ex.explain(model, x, target=target, spec=spec, **{**ex.library_defaults, **seed})
            f = deletion_insertion(model, x, d.map, target, steps=FAITHFULNESS_STEPS, labels=spec.label_names)
            default_s += time.perf_counter() - t1
            corr = spearman(a.map, d.map)
            ceiling = 1.0
            if m in STOCHASTIC:
                d2 = ex.explain(model, x, target=target, spec=spec, **{**ex.library_defaults, "seed": 1})
                ceiling = spearman(d.map, d2.map)
            rel = corr / ceiling if ceiling > 0 else float("nan")
            rels.append(rel)
            row += f" {d.runtime_s:9.2f} {f['score']:7.3f} {corr:6.3f} {ceiling:7.3f} {rel:6.3f}"
        rows.append(row)
    print(header)
    print("\n".join(rows), flush=True)
    if args.lime_same_superpixels and "lime" in ours and not ours["lime"].error:
        # With segmentation="slic" our superpixels differ from LIME's default quickshift ones, and the
        # pixel rank correlation above mixes segmentation choice with sample count; this isolates the latter.
        ex, a = get_explainer("lime"), ours["lime"].attribution
        d0 = ex.explain(model, x, target=target, spec=spec, num_samples=1000, seed=0)
        d1 = ex.explain(model, x, target=target, spec=spec, num_samples=1000, seed=1)
        c, ceil = spearman(a.map, d0.map), spearman(d0.map, d1.map)
        print(f"lime_same_superpixels: ours({a.params['num_samples']} samples) vs 1000 samples corr={c:.3f} "
              f"ceiling={ceil:.3f} rel={c / ceil:.3f} (1000-sample time {d0.runtime_s:.2f} s)", flush=True)
    if args.bf16_check:
        images = [("bench image", x, target)]
        if args.data:
            from detector.data import cap_per_source, read_index

            val = read_index(args.data, "val")
            for r in cap_per_source(val, args.per_source, sorted({v.source for v in val})):
                xv = preprocess(str(r.path), spec, face_crop=False).tensor.to(lm.device)
                with torch.no_grad():
                    images.append((f"{r.source} {r.path.name}", xv, int(model(xv).argmax())))
        for name, xi, ti in images:
            print(_bf16_row(name, model, xi, ti, spec, ours if xi is x else None, lm.temperature), flush=True)
    if args.skip_defaults:
        print(f"panel_s={panel_s:.2f} default_s=nan speedup=nan min_rel_fidelity=nan", flush=True)
    else:
        mrf = min(rels) if rels else float("nan")
        print(f"panel_s={panel_s:.2f} default_s={default_s:.2f} speedup={default_s / panel_s:.2f} "
              f"min_rel_fidelity={mrf:.3f}", flush=True)
    return 0


@contextlib.contextmanager
def _explain_precision(mode: str):
    """``DEEPFAKE_EXPLAIN_BF16`` set to ``mode`` inside the block (restored after)."""
    old = os.environ.get("DEEPFAKE_EXPLAIN_BF16")
    os.environ["DEEPFAKE_EXPLAIN_BF16"] = mode
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DEEPFAKE_EXPLAIN_BF16", None)
        else:
            os.environ["DEEPFAKE_EXPLAIN_BF16"] = old


def _bf16_row(name: str, model, x, target: int, spec, ours: dict | None, temperature: float) -> str:
    """One ``--bf16-check`` line: LIME (as served: bf16 where native) and faithfulness (served in fp32) in both
    precisions, against LIME's own seed-to-seed variation."""
    import torch

    from . import explain, get_explainer
    from .base import scoring_precision
    from .faithfulness import deletion_insertion
    from .panel import FAITHFULNESS_STEPS

    maps = ({m: r.attribution.map for m, r in ours.items() if not r.error} if ours else
            {m: explain(m, model, x, target=target, spec=spec).map for m in ("saliency", "gradcam", "lrp")})
    lime = get_explainer("lime")
    out: dict[str, dict] = {}
    for mode in ("0", "1"):
        with _explain_precision(mode):
            t = time.perf_counter()
            lm = lime.explain(model, x, target=target, spec=spec)
            lime_s = time.perf_counter() - t
            t = time.perf_counter()
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mode == "1"):
                faith = {m: deletion_insertion(model, x, mp, target, steps=FAITHFULNESS_STEPS,
                                               labels=spec.label_names, temperature=temperature)["score"]
                         for m, mp in maps.items()}
            out[mode] = {"lime": lm.map, "lime_s": lime_s, "faith": faith, "faith_s": time.perf_counter() - t,
                         "precision": scoring_precision(x.device)}
    with _explain_precision("0"):
        other_seed = lime.explain(model, x, target=target, spec=spec, seed=1).map
    a, b = out["0"], out["1"]
    diff = max(abs(a["faith"][m] - b["faith"][m]) for m in maps)
    return (f"bf16_check [{name}]: LIME {a['precision']} vs {b['precision']}: corr={spearman(a['lime'], b['lime']):.3f} "
            f"(fp32 seed 0 vs seed 1: {spearman(a['lime'], other_seed):.3f}) time {a['lime_s']:.2f}->{b['lime_s']:.2f} s; "
            f"faithfulness fp32 vs bf16 autocast: max abs diff {diff:.3f} over {len(maps)} maps, "
            f"time {a['faith_s']:.2f}->{b['faith_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
