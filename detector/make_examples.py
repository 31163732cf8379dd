"""Copy a few test-split images into ``examples/``: ``python -m detector.make_examples --data DIR``.

Takes, per source and label, the first ``--per-class`` test images (in index order)
in which the face detector finds a face, so that clicking an example in the app runs
the normal face-crop path, and names them ``<source>_<label>_<id>.jpg`` (the label is
the true class). Adds one full photo that needs face cropping: ``skimage.data.astronaut()``
(NASA, public domain). Never takes train or val images.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from .data import read_index
from .preprocess import detect_face, load_image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.make_examples", description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="examples")
    ap.add_argument("--per-class", type=int, default=2)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = read_index(args.data, "test")
    for src in sorted({s.source for s in test}):
        for label in (0, 1):
            n = 0
            for s in (t for t in test if t.source == src and t.label == label):
                if detect_face(np.asarray(load_image(s.path).image)) is None:
                    continue
                dst = out / f"{src}_{['real', 'fake'][label]}_{s.path.stem}{s.path.suffix.lower()}"
                shutil.copyfile(s.path, dst)
                print(f"{s.path} -> {dst}")
                n += 1
                if n >= args.per_class:
                    break
    from PIL import Image
    from skimage import data as skdata

    Image.fromarray(skdata.astronaut()).save(out / "photo_astronaut_real.jpg", quality=92)
    print(f"skimage astronaut -> {out / 'photo_astronaut_real.jpg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
