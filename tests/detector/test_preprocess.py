from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.errors import InputError, NoFaceError, WeightsError
from detector.preprocess import (CLAHE_CLIP_LIMIT, CLAHE_TILE_GRID, FACE_CROP_SCALE, FACE_SCORE_THRESHOLD, align_face,
                                 apply_clahe, crop_face, detect_face, detect_faces, detect_faces_full, face_frame,
                                 level_eyes, load_image, prepare_face, preprocess, resize)
from detector.specs import get_spec
from tests.corpus import build_corpus

SPEC = get_spec("custom_cnn")
CASES = build_corpus()


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_hostile_inputs_get_specific_outcomes(case):
    face_crop = not case.needs_whole_image
    if case.expect == "ok":
        p = preprocess(case.data, SPEC, face_crop=face_crop)
        assert p.tensor.shape == (1, 3, SPEC.input_size, SPEC.input_size)
        assert p.face.dtype == np.uint8 and p.face.shape == (SPEC.input_size, SPEC.input_size, 3)
        assert np.isfinite(p.tensor.numpy()).all()
    else:
        with pytest.raises(InputError) as ei:
            preprocess(case.data, SPEC, face_crop=face_crop)
        assert ei.value.code == case.expect, ei.value.message
        assert "Traceback" not in ei.value.message and len(ei.value.message) > 15


def _case(name):
    return next(c for c in CASES if c.name == name)


@pytest.mark.parametrize("name,needle", [("text.jpg", "text"), ("doc.png", "PDF"), ("archive.jpg", "zip"),
                                         ("script.svg", "SVG"), ("bomb.png", "megapixels"),
                                         ("truncated.jpg", "truncated"), ("empty.png", "empty"),
                                         ("one.png", "1x1")])
def test_error_messages_name_the_problem(name, needle):
    with pytest.raises(InputError, match=needle):
        load_image(_case(name).data)


@pytest.mark.parametrize("name,needle", [("gray16.png", "bit"), ("cmyk.jpg", "CMYK"), ("palette_alpha.png", "white"),
                                         ("rgba.png", "white"), ("animated.gif", "first frame"),
                                         ("animated.webp", "first frame"), ("exif_rotated.jpg", "EXIF"),
                                         ("gray.png", "Grayscale")])
def test_conversions_are_reported(name, needle):
    li = load_image(_case(name).data)
    assert li.image.mode == "RGB"
    assert any(needle in n for n in li.notes), li.notes


def test_exif_rotation_is_applied(astronaut):
    li = load_image(_case("exif_rotated.jpg").data)
    h, w = astronaut.shape[:2]
    assert li.image.size == (w, h)
    # after transposition the image matches the original orientation
    diff = np.abs(np.asarray(li.image).astype(int) - astronaut.astype(int)).mean()
    assert diff < 8


def test_sixteen_bit_scaled_not_clipped():
    img = np.asarray(load_image(_case("gray16.png").data).image)
    assert img.max() > 200 and img.min() < 50  # full 16-bit range mapped to 8 bits


def test_pixel_limit_is_configurable(astronaut):
    with pytest.raises(InputError, match="too large"):
        load_image(astronaut, max_pixels=100 * 100)


def test_no_face_message_offers_whole_image():
    with pytest.raises(NoFaceError, match="whole image"):
        preprocess(_case("noface.png").data, SPEC)
    p = preprocess(_case("noface.png").data, SPEC, face_crop=False)
    assert p.box is None


def test_face_crop_on_real_photo(astronaut):
    box = detect_face(astronaut)
    assert box is not None
    x, y, w, h = box
    # Eileen Collins' face in skimage's astronaut photo lies around x 180-270, y 70-160
    cx, cy = x + w / 2, y + h / 2
    assert 190 < cx < 260 and 80 < cy < 150 and 60 < w < 160
    crop = crop_face(astronaut, box)
    assert crop.shape[0] == crop.shape[1] > w
    p = preprocess(astronaut, SPEC)
    assert p.box == box


def test_largest_of_several_faces_is_used():
    p = preprocess(_case("two_faces.jpg").data, SPEC)
    assert any("faces found" in n for n in p.notes)


def _local_contrast(gray: np.ndarray, k: int = 16) -> float:
    h, w = gray.shape
    blocks = gray[: h // k * k, : w // k * k].reshape(h // k, k, w // k, k).astype(float)
    return float(blocks.std(axis=(1, 3)).mean())


def test_clahe_raises_local_contrast():
    rng = np.random.default_rng(0)
    base = rng.normal(128, 4, (128, 128)).clip(0, 255)
    base += np.linspace(-10, 10, 128)[None, :]
    img = np.repeat(base.astype(np.uint8)[..., None], 3, axis=2)
    out = apply_clahe(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert _local_contrast(out[..., 0]) > 1.5 * _local_contrast(img[..., 0])
    assert CLAHE_CLIP_LIMIT > 0 and len(CLAHE_TILE_GRID) == 2


def test_clahe_keeps_colour_channels_balanced(astronaut):
    out = apply_clahe(astronaut)
    # chroma is untouched: the mean colour cast stays close
    assert np.abs(out.mean(axis=(0, 1)) - astronaut.mean(axis=(0, 1))).max() < 25


def test_normalisation_uses_spec(astronaut):
    p = preprocess(astronaut, SPEC)
    back = p.tensor[0].permute(1, 2, 0).numpy() * np.array(SPEC.std) + np.array(SPEC.mean)
    assert np.allclose(back * 255, p.face, atol=1.0)


def test_accepts_array_pil_path_and_bytes(tmp_path, astronaut):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    outs = [preprocess(s, SPEC).tensor for s in (astronaut, Image.fromarray(astronaut), path, path.read_bytes(),
                                                   str(path))]
    for o in outs[1:]:
        assert np.allclose(o.numpy(), outs[0].numpy())


# --- face detection (YuNet) and alignment -------------------------------------------------------------------------

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.jpg"))


def _rotate(rgb, degrees, center=None):
    import cv2

    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D(center or (w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / (aw * ah + bw * bh - iw * ih)


def _inside(pt, box, tol=0.0):
    x, y, w, h = box
    return x - tol <= pt[0] <= x + w + tol and y - tol <= pt[1] <= y + h + tol


def test_yunet_finds_the_astronaut_with_landmarks_in_the_box(astronaut):
    faces = detect_faces_full(astronaut)
    assert len(faces) == 1 and faces[0].score >= FACE_SCORE_THRESHOLD
    f = faces[0]
    assert all(_inside(p, f.box) for p in f.landmarks), f
    (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = f.landmarks
    # YuNet's order: subject's right eye (image left), left eye, nose tip, right / left mouth corner
    assert rx < nx < lx and mrx < mlx
    assert max(ry, ly) < ny < min(mry, mly)
    assert detect_faces(astronaut) == [f.box]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_face_found_on_every_example(path):
    rgb = np.asarray(load_image(path).image)
    faces = detect_faces_full(rgb)
    assert faces, path.name
    assert all(_inside(p, faces[0].box, tol=2) for p in faces[0].landmarks), faces[0]


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "hubble_deep_field", "moon", "coins"])
def test_no_face_on_skimage_images_without_people(name):
    from skimage import data as skdata

    rgb = np.asarray(load_image(getattr(skdata, name)()).image)
    assert detect_faces_full(rgb) == []
    with pytest.raises(NoFaceError):
        preprocess(rgb, SPEC)


@pytest.mark.parametrize("degrees", [20, -20])
def test_alignment_levels_a_tilted_face(astronaut, degrees):
    upright = face_frame(astronaut, detect_faces_full(astronaut)[0])
    tilted = _rotate(astronaut, degrees, center=upright.center)
    fr = face_frame(tilted, detect_faces_full(tilted)[0])
    # rotating the image counter-clockwise by d degrees changes the eye angle by -d
    assert abs((upright.angle - fr.angle) - degrees) < 5, (upright.angle, fr.angle)
    crop = align_face(tilted, detect_faces_full(tilted)[0])
    assert crop.shape[0] == crop.shape[1]
    again = detect_faces_full(crop)
    assert again
    (rx, ry), (lx, ly) = again[0].landmarks[:2]
    assert abs(ly - ry) < 0.1 * abs(lx - rx)  # eyes level (< ~6 degrees)
    # and the aligned crop looks like the aligned crop of the untilted photo
    ref = resize(align_face(astronaut, detect_faces_full(astronaut)[0]), 64).astype(float)
    got = resize(crop, 64).astype(float)
    unaligned = resize(crop_face(tilted, detect_faces_full(tilted)[0].box), 64).astype(float)
    assert np.abs(got - ref).mean() < 0.6 * np.abs(unaligned - ref).mean()


def test_aligned_crop_is_framed_by_the_constants(astronaut):
    face = detect_faces_full(astronaut)[0]
    fr = face_frame(astronaut, face)
    crop = align_face(astronaut, face)
    assert crop.shape[:2] == (round(FACE_CROP_SCALE * fr.size),) * 2
    # the face sits in the middle of the crop
    again = detect_faces_full(crop)[0]
    x, y, w, h = again.box
    assert abs(x + w / 2 - crop.shape[1] / 2) < 0.1 * crop.shape[1]


def test_largest_of_two_faces_wins_and_is_reported(astronaut):
    import cv2

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 768, 3), 127, np.uint8)
    canvas[:, :512] = astronaut
    canvas[128:384, 512:] = small
    faces = detect_faces_full(canvas)
    assert len(faces) == 2
    big = detect_faces_full(astronaut)[0].box
    assert _iou(faces[0].box, big) > 0.7 and faces[1].box[0] > 512
    assert faces[0].box[2] * faces[0].box[3] > 2 * faces[1].box[2] * faces[1].box[3]
    rgb, box, notes = prepare_face(canvas, SPEC)
    assert box == faces[0].box
    assert "2 faces found: the largest one was analysed." in notes


def test_small_face_in_a_large_photo_is_found(astronaut):
    canvas = np.full((2560, 2560, 3), 127, np.uint8)
    canvas[1000:1512, 1500:2012] = astronaut
    faces = detect_faces_full(canvas)
    assert faces and 1600 < faces[0].box[0] < 1800 and 1000 < faces[0].box[1] < 1200


def test_detection_is_thread_safe(astronaut):
    import cv2
    from concurrent.futures import ThreadPoolExecutor

    images = [astronaut, cv2.resize(astronaut, (300, 300)), cv2.resize(astronaut, (640, 480))] * 4
    serial = [detect_faces_full(im) for im in images]
    with ThreadPoolExecutor(4) as ex:
        parallel = list(ex.map(detect_faces_full, images))
    assert parallel == serial


def test_dataset_crops_can_be_levelled_in_place():
    rgb = np.asarray(load_image(EXAMPLES[0]).image)
    tilted = _rotate(rgb, 15)
    out, angle = level_eyes(tilted)
    assert out.shape == tilted.shape and angle is not None
    base = face_frame(rgb, detect_faces_full(rgb)[0]).angle
    assert abs((base - angle) - 15) < 6
    face, box, _ = prepare_face(tilted, SPEC, face_crop=False, align=True)
    assert box is None and face.shape == (SPEC.input_size, SPEC.input_size, 3)
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert level_eyes(noise)[1] is None


def test_model_file_checksum_is_verified(monkeypatch, astronaut):
    from detector import preprocess as pp

    monkeypatch.setattr(pp, "_yunet_bytes", None)
    monkeypatch.setattr(pp, "YUNET_SHA256", "0" * 64)
    with pytest.raises(WeightsError, match="corrupt or was replaced: sha256 8f2383e4"):
        detect_faces_full(astronaut)
    monkeypatch.setattr(pp, "YUNET_PATH", Path("/nonexistent/yunet.onnx"))
    with pytest.raises(WeightsError, match="face detector model is missing"):
        preprocess(astronaut, SPEC)


def test_shipped_model_matches_its_checksum():
    import hashlib

    from detector import preprocess as pp

    assert hashlib.sha256(pp.YUNET_PATH.read_bytes()).hexdigest() == pp.YUNET_SHA256
    assert (pp.YUNET_PATH.parent / "LICENSE-yunet").is_file()
