"""``/analyze_video`` through ``gradio_client`` against the live server (random-weight checkpoints), and the Video
tab's service functions (analysis/video.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from .conftest import FAST_DETECTOR, TEST_AUC_STRONG, TEST_BANDS
from tests.video_clips import coffee, mixed_frames, write


@pytest.fixture(scope="module")
def video_clips(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("video_api")
    notes = d / "notes.mp4"
    notes.write_text("these are my notes, not a video\n" * 20)
    return {"mixed": write(d / "mixed.mp4", mixed_frames()), "noface": write(d / "noface.mp4", [coffee()] * 10),
            "text": notes}


def _call(client, path, *args):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), *args, api_name="/analyze_video")


def test_endpoint_is_listed_with_its_parameters(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert "/analyze_video" in api["named_endpoints"]
    names = [p["parameter_name"] for p in api["named_endpoints"]["/analyze_video"]["parameters"]]
    assert names == ["file", "detector", "fps", "max_frames"]


def test_analyze_video_returns_the_cli_json(client, video_clips):
    from detector.video import analyze_video

    r = _call(client, video_clips["mixed"], FAST_DETECTOR, 2, 64)
    assert r["model"] == FAST_DETECTOR and r["name"].endswith(".mp4")
    assert r["verdict"] in ("fake", "real", "inconclusive")
    from detector.verdict_bands import verdict3

    lo, hi = TEST_BANDS[FAST_DETECTOR]
    assert r["decision_band"] == {"lo": lo, "hi": hi}
    assert r["verdict"] == verdict3(r["p_fake"], r["decision_band"])
    assert r["headline"].startswith("Verdict:" if r["verdict"] != "inconclusive" else "Inconclusive:")
    assert r["reliability"] == {"test_auc": TEST_AUC_STRONG, "weak": False}
    assert len(r["frames"]) == 8  # 4 s at 2 fps
    no_face = [f for f in r["frames"] if f["p_fake"] is None]
    assert no_face and all(2.0 <= f["t"] < 3.0 and f["error"] == "no face in this frame" for f in no_face)
    assert r["aggregate"]["n_scored"] == 8 - len(no_face)
    # the same JSON as the library / CLI (timings aside)
    lib = analyze_video(video_clips["mixed"], FAST_DETECTOR, 2.0, 64).to_json()
    assert set(r) == set(lib)
    for key in ("p_fake", "verdict", "frames", "aggregate", "tracks", "decision_band", "rotation"):
        assert r[key] == lib[key], key


def test_defaults_and_sampling_parameters(client, video_clips):
    r = _call(client, video_clips["mixed"], None, None, 3)
    assert r["max_frames"] == 3 and len(r["frames"]) == 3  # spread over the clip
    assert r["sample_fps"] == 2.0
    from detector.reliability import default_detector

    assert r["model"] == default_detector().name


@pytest.mark.parametrize("clip,words", [("text", "is not a video"), ("noface", "No face found")])
def test_bad_input_gets_a_clear_error_and_the_server_lives(client, video_clips, clip, words):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        _call(client, video_clips[clip], FAST_DETECTOR)
    assert words in str(e.value)
    assert "Traceback" not in str(e.value)
    r = _call(client, video_clips["mixed"], FAST_DETECTOR, 1, 8)  # still serving
    assert r["frames"]


def test_bad_parameters(client, video_clips):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="fps must be > 0"):
        _call(client, video_clips["mixed"], FAST_DETECTOR, 0, 8)
    with pytest.raises(AppError, match="Unknown|unknown|not a detector|no detector"):
        _call(client, video_clips["mixed"], "no_such_detector", 2, 8)


# --- service functions (no server) ------------------------------------------------------------------------------

def test_size_limit_is_checked_before_decoding(tmp_path):
    from analysis.video import check_upload, effective_limit_bytes
    from detector.errors import InputError

    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 3000)
    s = SimpleNamespace(max_video_bytes=2048, max_file_size="1mb")
    with pytest.raises(InputError) as e:
        check_upload(str(big), s)
    assert e.value.code == "too_large" and "DEEPFAKE_MAX_VIDEO_SIZE" in e.value.message
    assert effective_limit_bytes(s) == 2048
    assert effective_limit_bytes(SimpleNamespace(max_video_bytes=100 * 2 ** 20, max_file_size="20mb")) == 20 * 2 ** 20
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        check_upload(str(tmp_path / "empty.mp4"), s)
    with pytest.raises(InputError, match="No video"):
        check_upload(None, s)


def test_video_path_reads_every_payload_shape():
    from analysis.video import video_path

    assert video_path({"path": "/a.mp4", "meta": {"_type": "gradio.FileData"}}) == "/a.mp4"
    assert video_path({"video": {"path": "/b.webm"}, "subtitles": None}) == "/b.webm"
    assert video_path("/c.mov") == "/c.mov"
    assert video_path(None) is None and video_path({}) is None


def test_timeline_shades_the_band_and_marks_unscored_frames():
    from analysis.video import timeline_figure
    from detector.verdict_bands import Band
    from detector.video import FrameResult

    frames = [FrameResult(0, 0.0, p_fake=0.9, verdict="fake"), FrameResult(1, 0.5, error="no face in this frame"),
              FrameResult(2, 1.0, p_fake=0.1, verdict="real")]
    fig = timeline_figure(frames, Band(0.3, 0.7), 1.5, clip_p=0.8)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "inconclusive band 0.30-0.70" in labels and "clip p(fake) 0.80" in labels
    assert any(lbl.startswith("no face") for lbl in labels)
    assert ax.get_ylim() == (0, 1)


def test_ui_stream_redraws_the_timeline_before_the_verdict(app_server, video_clips):
    from analysis.video import iter_video

    ups = list(iter_video(str(video_clips["mixed"]), FAST_DETECTOR, 2, 64, app_server[1].SETTINGS, redraw_every=2))
    assert ups[0].figure is None and ups[0].status.startswith("mixed.mp4")
    partial = [u for u in ups[:-1] if u.figure is not None]
    assert len(partial) >= 3 and all(u.result is None for u in ups[:-1])
    last = ups[-1]
    assert last.result is not None and last.json["frames"] and len(last.strip) == last.json["aggregate"]["n_scored"]
    assert last.strip[0][1].endswith(f": {last.json['frames'][0]['p_fake']:.2f}")
    lo, hi = TEST_BANDS[FAST_DETECTOR]
    assert f"inconclusive band {lo:.2f}-{hi:.2f}" in [t.get_text() for t in last.figure.axes[0].get_legend().get_texts()]
    md = last.verdict
    assert md.startswith("### Verdict: **" if last.result.verdict != "inconclusive" else "### Inconclusive: p(fake)")
    assert "On held-out test images this detector ranks a fake above a real" in md
    assert "main face lost at 2.0 s" in md
