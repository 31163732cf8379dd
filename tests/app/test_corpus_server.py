"""Every hostile-input case through the running server: a specific message, then a normal request works."""
from __future__ import annotations

import pytest

from detector.reliability import MIN_IMAGE_SIDE
from tests.corpus import build_corpus

from .conftest import FAST_DETECTOR

CASES = build_corpus()
#: A word each error message must contain, per InputError code.
NEEDLE = {"not_image": "not an image", "empty": "empty", "truncated": "truncated", "too_large": "too large",
          "too_small": "pixels", "no_face": "No face found", "refused_small": f"under {MIN_IMAGE_SIDE} px on a side"}


def _min_side(data: bytes) -> int:
    """The shorter side of an image file (a large number if Pillow cannot read it)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return min(im.size)
    except Exception:
        return 1 << 30


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_corpus_case_through_server(client, face_image, tmp_path, case):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    # the server sees the real file name, odd characters included
    path = tmp_path / case.name.replace("\u2215", "_")
    path.write_bytes(case.data)
    whole = case.needs_whole_image
    expect = case.expect
    if expect == "ok" and _min_side(case.data) < MIN_IMAGE_SIDE:
        expect = "refused_small"  # the library scores it; the app refuses it (issue 11: not scored, says why)
    if expect == "ok":
        r = client.predict(handle_file(str(path)), FAST_DETECTOR, whole, api_name="/predict")
        assert r["label"] in ("real", "fake") and 0.0 <= r["p_fake"] <= 1.0
    else:
        with pytest.raises(AppError) as info:
            client.predict(handle_file(str(path)), FAST_DETECTOR, whole, api_name="/predict")
        msg = str(info.value)
        assert NEEDLE[expect].lower() in msg.lower(), msg
        assert "Traceback" not in msg and "File \"" not in msg
    ok = client.predict(handle_file(str(face_image)), FAST_DETECTOR, False, api_name="/predict")
    assert ok["label"] in ("real", "fake")
