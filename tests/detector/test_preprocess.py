import numpy as np
import pytest
from PIL import Image

from detector.errors import InputError, NoFaceError
from detector.preprocess import (CLAHE_CLIP_LIMIT, CLAHE_TILE_GRID, apply_clahe, crop_face, detect_face, load_image,
                                 preprocess)
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
