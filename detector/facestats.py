"""Measure the face detector (YuNet) and the framing of the dataset's crops.

``python -m detector.facestats --data ../shared/datasets/faces --split val``

Prints, per source and label, the fraction of images in which a face is found (with and
without the grey-padded retry) at several score thresholds; the milliseconds per detection
on a 512 px photo (``skimage.data.astronaut()``) and on the dataset images; how the dataset
crops are framed relative to the refined face box (crop side / face box side and the crop
centre's offset below the face centre, which ``FACE_CROP_SCALE`` / ``FACE_CROP_SHIFT`` are
set from); the in-plane eye angle that alignment removes; and the number of faces reported
on scikit-image sample images that contain no human face (the false-positive check the
score threshold is chosen on). ``--limit N`` takes N images per source for a quick run.
"""
from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from . import preprocess as P
from .data import read_index
from .specs import LABELS

#: scikit-image sample images with no human face (astronaut and camera have one; cat is chelsea).
NON_FACE_IMAGES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins", "moon",
                   "page", "horse", "clock", "brick", "grass", "gravel", "colorwheel", "logo", "retina", "text",
                   "checkerboard", "shepp_logan_phantom", "binary_blobs", "cell", "microaneurysms")
THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.8)
_LOW = 0.3  # scores are collected down to this, then thresholded


def _max_score(faces: list[P.Face]) -> float:
    return max((f.score for f in faces), default=0.0)


def _scores(rgb: np.ndarray) -> tuple[float, float, list[P.Face]]:
    """Best score (collected down to 0.3) without and with the padded retry, and the faces the pipeline reports.

    ``detect_faces_full`` runs its stages (shrunk to DETECT_MAX_SIDE; a larger image again at
    DETECT_FALLBACK_SIDE; a grey-padded copy) until one finds a face at the threshold, so at any
    threshold T it finds a face exactly when some stage's best score is >= T.
    """
    s0 = _max_score(P._detect_once(rgb, P.DETECT_MAX_SIDE, _LOW))
    if max(rgb.shape[:2]) > P.DETECT_MAX_SIDE:
        s0 = max(s0, _max_score(P._detect_once(rgb, P.DETECT_FALLBACK_SIDE, _LOW)))
    s1 = s0
    if s0 < max(THRESHOLDS + (P.FACE_SCORE_THRESHOLD,)):
        padded, _ = P.pad_for_detection(rgb)
        s1 = max(s0, _max_score(P._detect_once(padded, P.DETECT_MAX_SIDE, _LOW)))
    return s0, s1, P.detect_faces_full(rgb)


def _median_ms(fn, runs: int) -> float:
    fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1000)


def _framing(rgb: np.ndarray, face: P.Face) -> tuple[float, float, float]:
    """(crop side / upright face box side, crop centre below face centre in box sides, eye angle)."""
    fr = P.face_frame(rgb, face)
    h, w = rgb.shape[:2]
    dx, dy = w / 2.0 - fr.center[0], h / 2.0 - fr.center[1]
    a = math.radians(fr.angle)  # the image centre's offset in the face's own (eyes-level) axes
    down = -math.sin(a) * dx + math.cos(a) * dy
    return min(h, w) / fr.size, down / fr.size, fr.angle


def _tilt_errors(images: list[np.ndarray], tilts=(-30, -20, -10, 10, 20, 30)) -> list[float]:
    """|error| in degrees of the eye angle recovered by face_frame after rotating each face by known tilts."""
    import cv2

    errs = []
    for rgb in images:
        faces = P.detect_faces_full(rgb)
        if not faces:
            continue
        base = P.face_frame(rgb, faces[0])
        for t in tilts:
            m = cv2.getRotationMatrix2D(base.center, t, 1.0)
            tilted = cv2.warpAffine(rgb, m, rgb.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
            found = P.detect_faces_full(tilted)
            if not found:
                errs.append(float("nan"))
                continue
            errs.append(abs((base.angle - P.face_frame(tilted, found[0]).angle) - t))
    return errs


def _q(v: list[float]) -> str:
    if not v:
        return "n/a"
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return f"median {p50:.3f} (p10 {p10:.3f}, p90 {p90:.3f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m detector.facestats", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/datasets/faces")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0, help="max images per source (0 = all)")
    ap.add_argument("--runs", type=int, default=50, help="timed runs on the 512 px photo (median reported)")
    args = ap.parse_args(argv)
    thr = P.FACE_SCORE_THRESHOLD
    print(f"YuNet {P.YUNET_PATH.name}, score threshold {thr}, detection at max side {P.DETECT_MAX_SIDE} px, "
          f"crop scale {P.FACE_CROP_SCALE}, shift {P.FACE_CROP_SHIFT}")

    from skimage import data as skdata
    from skimage.transform import resize as sk_resize

    photo = skdata.astronaut()
    photo = (sk_resize(photo, (512, 512), anti_aliasing=True) * 255).round().astype(np.uint8) \
        if photo.shape[:2] != (512, 512) else photo
    faces = P.detect_faces_full(photo)
    det_ms = _median_ms(lambda: P.detect_faces_full(photo), args.runs)
    align_ms = _median_ms(lambda: P.align_face(photo, faces[0]), args.runs) if faces else float("nan")
    print(f"\nastronaut 512x512: {len(faces)} face(s), box {faces[0].box if faces else None}, score "
          f"{faces[0].score if faces else 0:.3f}; detection {det_ms:.1f} ms, landmark refinement + aligned crop "
          f"{align_ms:.1f} ms (median of {args.runs})")

    samples = read_index(args.data, split=args.split)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for s in samples:
        groups[(s.source, LABELS[s.label])].append(s)
    by_src: dict[str, list] = defaultdict(list)
    for key in sorted(groups):
        by_src[key[0]].extend(groups[key])
    found_rows = []
    tilt_images = [photo]
    framing: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for src, items in sorted(by_src.items()):
        if args.limit and len(items) > args.limit:
            items = items[:: max(1, len(items) // args.limit)][: args.limit]
        per_label: dict[str, list] = defaultdict(list)
        step = max(1, len(items) // 10)
        for i, s in enumerate(tqdm(items, desc=src, leave=False)):
            rgb = np.asarray(P.load_image(s.path).image)
            if i % step == 0 and i // step < 10:  # 10 evenly spaced crops per source for the tilt check
                tilt_images.append(rgb)
            s0, s1, faces = _scores(rgb)
            t0 = time.perf_counter()
            P.detect_faces_full(rgb)
            framing[src]["det_ms"].append((time.perf_counter() - t0) * 1000)
            per_label[LABELS[s.label]].append((s0, s1, len(faces)))
            if faces:
                scale, down, angle = _framing(rgb, faces[0])
                framing[src]["scale"].append(scale)
                framing[src]["down"].append(down)
                framing[src]["angle"].append(angle)
        for label, rows in sorted(per_label.items()):
            found_rows.append((src, label, rows))
        found_rows.append((src, "all", [r for rows in per_label.values() for r in rows]))

    print(f"\nFaces found ({args.split} split): at threshold {thr}, with the padded retry [without it]; "
          "then the rate at other thresholds (with retry)")
    for src, label, rows in found_rows:
        n = len(rows)
        hit = sum(max(a, b) >= thr for a, b, _ in rows)
        hit0 = sum(a >= thr for a, _, _ in rows)
        multi = sum(k > 1 for _, _, k in rows)
        others = ", ".join(f"{t}: {sum(max(a, b) >= t for a, b, _ in rows) / n:.2%}" for t in THRESHOLDS)
        print(f"  {src:8s} {label:4s} {hit}/{n} = {hit / n:.2%} [{hit0 / n:.2%}]; >1 face in {multi}; {others}")

    print("\nms per detection (detect_faces_full on the dataset image, median):")
    for src, st in sorted(framing.items()):
        print(f"  {src}: {np.median(st['det_ms']):.1f} ms")

    print("\nFraming of the dataset crops (refined, eyes-level face box; what FACE_CROP_SCALE/SHIFT are set from):")
    scales = {}
    for src, st in sorted(framing.items()):
        scales[src] = (float(np.median(st["scale"])), float(np.median(st["down"]))) if st["scale"] else None
        print(f"  {src}: crop side / face box side {_q(st['scale'])}; crop centre below face centre "
              f"(box sides) {_q(st['down'])}")
    valid = [v for v in scales.values() if v]
    if len(valid) > 1:
        gm = math.exp(sum(math.log(v[0]) for v in valid) / len(valid))
        mean_down = sum(v[1] for v in valid) / len(valid)
        print(f"  between the sources: scale {gm:.3f} (geometric mean), shift {mean_down:+.3f} (mean); "
              f"used: FACE_CROP_SCALE {P.FACE_CROP_SCALE}, FACE_CROP_SHIFT {P.FACE_CROP_SHIFT:+}")

    print("\nIn-plane eye angle that alignment removes (|degrees|):")
    for src, st in sorted(framing.items()):
        a = np.abs(st["angle"])
        if len(a):
            print(f"  {src}: median {np.median(a):.1f}, p90 {np.percentile(a, 90):.1f}, max {a.max():.1f}; "
                  f"> 5 deg {np.mean(a > 5):.1%}, > 10 deg {np.mean(a > 10):.1%}, > 20 deg {np.mean(a > 20):.1%}")

    errs = np.array(_tilt_errors(tilt_images))
    ok = errs[~np.isnan(errs)]
    print(f"\nAlignment accuracy: {len(tilt_images)} faces (astronaut + val crops) tilted by +-10, 20, 30 degrees; "
          f"|recovered - true tilt|: mean {ok.mean():.1f}, p90 {np.percentile(ok, 90):.1f}, max {ok.max():.1f} "
          f"degrees; face lost in {int(np.isnan(errs).sum())} of {len(errs)}")

    print("\nscikit-image images without a human face: faces reported (best score seen at >= 0.3, incl. padded retry)")
    worst = 0.0
    total = 0
    for name in NON_FACE_IMAGES:
        try:
            rgb = np.asarray(P.load_image(getattr(skdata, name)()).image)
        except Exception as e:  # a sample that needs a download
            print(f"  {name}: skipped ({type(e).__name__})")
            continue
        s0, s1, faces = _scores(rgb)
        worst = max(worst, s0, s1)
        total += len(faces)
        print(f"  {name:22s} {rgb.shape[1]}x{rgb.shape[0]}: {len(faces)} face(s), best score {max(s0, s1):.3f}")
    print(f"  total faces reported: {total}; highest non-face score {worst:.3f} (threshold {thr})")


if __name__ == "__main__":
    main()
