"""Measure the face detector: found rate and crop framing on dataset images.

``python -m detector.facestats --data ../shared/datasets/faces --split val``

Prints, per source, the fraction of images in which the Haar cascade finds a face and
the median ratio (image side / face box side), which is what ``FACE_CROP_SCALE`` is set
from, plus the result on ``skimage.data.astronaut()`` (a full photo).
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from .data import read_index
from .preprocess import detect_faces, load_image


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m detector.facestats", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0, help="max images per source (0 = all)")
    args = ap.parse_args(argv)
    samples = read_index(args.data, split=args.split)
    by_src: dict[str, list] = defaultdict(list)
    for s in samples:
        by_src[s.source].append(s)
    for src, items in sorted(by_src.items()):
        if args.limit:
            items = items[:: max(1, len(items) // args.limit)][: args.limit]
        found, ratios, t0 = 0, [], time.perf_counter()
        for s in tqdm(items, desc=src, leave=False):
            rgb = np.asarray(load_image(s.path).image)
            faces = detect_faces(rgb)
            if faces:
                found += 1
                ratios.append(min(rgb.shape[:2]) / faces[0][2])
        dt = (time.perf_counter() - t0) / max(1, len(items))
        print(f"{src}: face found in {found}/{len(items)} = {found / max(1, len(items)):.1%} "
              f"(median image/box side ratio {np.median(ratios) if ratios else float('nan'):.2f}, "
              f"{dt * 1000:.1f} ms/image incl. decode)")
    from skimage import data as skdata

    faces = detect_faces(skdata.astronaut())
    print(f"skimage astronaut (512x512 full photo): {len(faces)} face(s) found, boxes {faces}")


if __name__ == "__main__":
    main()
