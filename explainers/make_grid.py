"""Side-by-side grid of all six maps for images: ``python -m explainers.make_grid IMAGE... --model NAME``.

``python -m explainers.make_grid examples/gan140k_real_00025.jpg examples/gan140k_fake_00ELJIYESN.jpg
--model custom_cnn --whole-image --out examples/grids`` writes one ``<stem>_<model>_grid.png`` per image: the
CLAHE face the model saw, then each method's overlay (with colour bar and faithfulness in the
title), computed by :meth:`analysis.AnalysisService.explain` (the app's path) with our default parameters.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m explainers.make_grid", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--model", default="custom_cnn")
    ap.add_argument("--whole-image", action="store_true", help="no face detection (dataset face crops)")
    ap.add_argument("--out", default="examples/grids")
    args = ap.parse_args(argv)
    from PIL import Image

    from analysis import AnalysisService, Done
    from detector.errors import DetectorError
    from detector.settings import current
    from detector.weights import load_model

    from .base import METHOD_ORDER, run_order
    from .render import grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        load_model(args.model)
    except DetectorError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    service = AnalysisService(current())
    for path in args.images:
        try:
            done = next(ev for ev in service.explain(path, args.model, METHOD_ORDER, face_crop=not args.whole_image,
                                                     write_zip=False) if isinstance(ev, Done))
        except DetectorError as e:
            print(f"{path}: {e.message}", file=sys.stderr)
            continue
        pred = done.verdicts.predictions[0]
        by_method = {r.method: r for r in done.results}
        items = []
        for r in (by_method[m] for m in run_order(list(by_method))):
            if r.overlay is not None:
                f = r.faithfulness or {}
                # the overlay carries the method name; the grid title adds its faithfulness score
                reading = f" ({f['reading']})" if f.get("reading") else ""
                items.append((f"faithfulness {f['score']:+.2f}{reading}" if "score" in f else "", r.overlay))
            else:
                print(f"{path}: {r.display_name}: {r.error}", file=sys.stderr)
        img = grid(pred.face, items)
        dst = out / f"{Path(path).stem}_{args.model}_grid.png"
        Image.fromarray(np.asarray(img)).save(dst)
        print(f"{dst}: {done.verdicts.trust[pred.model].verdict} p_fake={pred.p_fake:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
