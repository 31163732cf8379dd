"""detector.video: sampling, tracker, aggregation, real clips written here (face / no face / rotated / VFR), every
bad input, and the CLI JSON. Clips are written with cv2.VideoWriter (mp4v) into tmp_path; rotation metadata and
variable frame durations are written by editing the MP4's boxes (tkhd matrix, stts table) in place."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest

from detector.errors import InputError, NoFaceError
from tests.video_clips import H, W, write
from tests.video_clips import coffee as _coffee
from tests.video_clips import face_canvas as _face_canvas
from detector.video import (FaceTracker, VideoProgress, VideoResult, aggregate, analyze_video, face_strip,
                            frame_at, frame_verdict, iou, iter_analyze_video, main, most_suspicious, probe_container,
                            rotate_frame, sample_times)

ROOT = Path(__file__).resolve().parents[2]


# --- clip builders (shared with the app's video tests) -------------------------------------------------------

def _write(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    return write(path, frames, fps)


def _box(data: bytearray, typ: bytes) -> int:
    i = data.find(typ)
    assert i >= 4, typ
    return i - 4


def _set_rotation(path: Path, degrees: int) -> None:
    """Write a display matrix for ``degrees`` into the video track's tkhd (version 0: matrix at byte 48)."""
    m = {90: (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000),
         270: (0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000)}[degrees]
    data = bytearray(path.read_bytes())
    t = _box(data, b"tkhd")
    assert data[t + 8] == 0
    data[t + 48:t + 84] = struct.pack(">9i", *m)
    path.write_bytes(bytes(data))


def _set_frame_durations(path: Path, entries: list[tuple[int, int]]) -> None:
    """Replace stts (sample durations) and fix the sizes of its parent boxes (moov is after mdat, so chunk
    offsets do not move)."""
    data = bytearray(path.read_bytes())
    st = _box(data, b"stts")
    old = struct.unpack(">I", data[st:st + 4])[0]
    body = struct.pack(">II", 0, len(entries)) + b"".join(struct.pack(">II", c, d) for c, d in entries)
    new = struct.pack(">I4s", 8 + len(body), b"stts") + body
    for typ in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        i = data.rfind(typ, 0, st) - 4
        data[i:i + 4] = struct.pack(">I", struct.unpack(">I", data[i:i + 4])[0] + len(new) - old)
    path.write_bytes(bytes(data[:st]) + new + bytes(data[st + old:]))


def _patch_codec(path: Path, fourcc: bytes, out: Path) -> Path:
    """Copy with the video sample entry renamed to ``fourcc`` and its esds descriptor blanked (so FFmpeg cannot
    guess the codec from it)."""
    data = bytearray(path.read_bytes())
    i = data.find(b"mp4v", _box(data, b"stsd"))
    e = data.find(b"esds", i)
    data[i:i + 4] = fourcc
    data[e:e + 4] = b"free"
    out.write_bytes(bytes(data))
    return out


def _index_first(path: Path, out: Path) -> Path:
    """Copy with the moov box moved before mdat ("fast start"), chunk offsets (stco) shifted to match."""
    data = path.read_bytes()
    m = _box(bytearray(data), b"moov")
    moov = bytearray(data[m:])
    assert struct.unpack(">I", moov[:4])[0] == len(moov)
    c = _box(moov, b"stco")
    n = struct.unpack(">I", moov[c + 12:c + 16])[0]
    for i in range(n):
        o = c + 16 + 4 * i
        moov[o:o + 4] = struct.pack(">I", struct.unpack(">I", moov[o:o + 4])[0] + len(moov))
    d = _box(bytearray(data), b"mdat")
    out.write_bytes(data[:d] + bytes(moov) + data[d:m])
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    face = [_face_canvas(dx=2 * i) for i in range(10)]
    coffee = _coffee()
    out = {
        # 4 s at 10 fps: face 0-2 s, coffee 2-3 s, face again 3-4 s
        "mixed": _write(d / "mixed.mp4", face + face + [coffee] * 10 + face),
        "noface": _write(d / "noface.mp4", [coffee] * 10),
        "face3": _write(d / "face3.mp4", face * 3),
    }
    # a phone-style clip: pixels stored sideways, metadata says turn 90 degrees clockwise to display
    import cv2

    side = [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in face[:6]]
    out["rot90"] = _write(d / "rot90.mp4", side)
    _set_rotation(out["rot90"], 90)
    # 30 frames over 3 s: 10 x 0.1 s, 4 x 0.3 s, 16 x 0.05 s (timescale 10240)
    out["vfr"] = _write(d / "vfr.mp4", face * 3)
    _set_frame_durations(out["vfr"], [(10, 1024), (4, 3072), (16, 512)])
    return out


# --- pure functions ------------------------------------------------------------------------------------------

def test_sample_times_arithmetic():
    assert sample_times(3.0, 2.0, 64) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert sample_times(3.2, 2.0, 64)[-1] == 3.0 and len(sample_times(3.2, 2.0, 64)) == 7
    assert sample_times(0.3, 2.0, 64) == [0.0]  # a clip shorter than one step still gives one frame
    assert len(sample_times(30.0, 2.0, 64)) == 60
    capped = sample_times(60.0, 2.0, 64)  # 120 at 2 fps > 64: spread evenly over the whole clip
    assert len(capped) == 64 and capped[0] == 0.0 and capped[1] == pytest.approx(60 / 64)
    assert capped[-1] == pytest.approx(60 - 60 / 64)
    assert sample_times(None, 2.0, 5) == [0.0, 0.5, 1.0, 1.5, 2.0]  # unknown duration
    with pytest.raises(ValueError):
        sample_times(3.0, 0.0, 64)
    with pytest.raises(ValueError):
        sample_times(3.0, 2.0, 0)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0 and iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_tracker_follows_loses_finds_and_switches():
    tr = FaceTracker()
    a, a2 = (100, 100, 50, 50), (108, 104, 50, 50)
    big_other = (300, 50, 90, 90)
    assert tr.update(0.0, []) is None and tr.track is None
    assert tr.update(0.5, [a]) == 0 and tr.track == 1
    # a bigger face appears elsewhere: the tracked one (index 1, not the largest) is still the main face
    assert tr.update(1.0, [big_other, a2]) == 1 and tr.track == 1
    assert tr.update(1.5, []) is None  # lost
    assert tr.update(2.0, [a2]) == 0 and tr.track == 1  # found again at its last place
    assert tr.update(2.5, [big_other]) == 0 and tr.track == 2  # a different face takes over
    kinds = [(e.kind, e.track) for e in tr.events]
    assert kinds == [("start", 1), ("several", 1), ("lost", 1), ("found", 1), ("lost", 1), ("new", 2)]
    assert all(isinstance(e.message, str) and e.message for e in tr.events)
    assert tr.n_tracks == 2


def test_aggregate_top_quarter_of_logits():
    p, k = aggregate([0.0, 0.0, 0.0, 4.0])
    assert k == 1 and p == pytest.approx(1 / (1 + np.exp(-4.0)))
    p, k = aggregate([1.0, 2.0, 3.0, -5.0, -5.0, -5.0, -5.0, -5.0])  # k = 2: mean of 3 and 2
    assert k == 2 and p == pytest.approx(1 / (1 + np.exp(-2.5)))
    p, k = aggregate([-2.0])
    assert k == 1 and p == pytest.approx(1 / (1 + np.exp(2.0)))
    assert aggregate([-800.0])[0] >= 0.0 and aggregate([800.0])[0] == 1.0  # no overflow
    z = [-3.0, -1.0, 0.5, 2.0, -0.2]
    assert aggregate(z)[0] >= 1 / (1 + np.exp(-np.mean(z)))  # never below the plain mean
    with pytest.raises(ValueError):
        aggregate([])


def test_frame_verdict_uses_the_band():
    band = {"lo": 0.4, "hi": 0.6}
    assert [frame_verdict(p, band) for p in (0.3, 0.5, 0.7)] == ["real", "inconclusive", "fake"]
    from detector.verdict_bands import verdict3

    assert all(frame_verdict(p, None) == verdict3(p, None) for p in (0.1, 0.49, 0.51, 0.9))  # photos' rule


def test_rotate_frame_matches_opencv_auto_rotation(clips):
    import cv2

    cap = cv2.VideoCapture(str(clips["rot90"]))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    ok, stored = cap.read()
    meta = cap.get(cv2.CAP_PROP_ORIENTATION_META)
    cap.release()
    cap = cv2.VideoCapture(str(clips["rot90"]))
    ok2, auto = cap.read()
    cap.release()
    assert ok and ok2 and meta == 90 and stored.shape == (W, H, 3) and auto.shape == (H, W, 3)
    assert np.array_equal(rotate_frame(stored, meta), auto)
    assert np.array_equal(rotate_frame(rotate_frame(stored, 90), 270), stored)
    assert rotate_frame(stored, 0) is stored and rotate_frame(stored, 180).shape == stored.shape


# --- real clips ----------------------------------------------------------------------------------------------

def test_mixed_clip_tracks_scores_and_reports(clips):
    events: list[VideoProgress] = []
    res = analyze_video(clips["mixed"], "custom_cnn", fps=2.0, progress=events.append)
    assert isinstance(res, VideoResult) and res.model == "custom_cnn" and res.weights.startswith("local:")
    assert res.duration == pytest.approx(4.0) and res.rotation == 0
    assert [f.t for f in res.frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    no_face = [f.t for f in res.frames if f.error]
    assert no_face == pytest.approx([2.0, 2.5])
    assert all(f.error == "no face in this frame" and f.n_faces == 0 and f.p_fake is None for f in res.frames[4:6])
    scored = res.scored
    assert len(scored) == 6 and all(f.track == 1 and f.box is not None for f in scored)
    assert [e.kind for e in res.events] == ["start", "lost", "found"]
    assert res.events[1].t == pytest.approx(2.0) and res.events[2].t == pytest.approx(3.0)
    # aggregate and verdicts follow the documented rule and the detector's band
    p, k = aggregate([f.logit for f in scored])
    assert k == 2 and res.p_fake == pytest.approx(p) and res.verdict == frame_verdict(res.p_fake, res.band)
    assert all(f.verdict == frame_verdict(f.p_fake, res.band) for f in scored)
    assert all(abs(f.logit - np.log(f.p_fake / (1 - f.p_fake))) < 1e-4 for f in scored)
    # a frame is scored exactly as the same picture through the photo pipeline
    from detector.predict import predict

    frame = frame_at(clips["mixed"], scored[1].t)
    assert frame.shape == (H, W, 3)
    assert predict(frame, "custom_cnn").p_fake == pytest.approx(scored[1].p_fake, abs=1e-4)
    # UI helpers
    strip = face_strip(res)
    assert len(strip) == 6 and strip[0][0].shape == (160, 160, 3) and "p(fake)" in strip[0][1]
    top = most_suspicious(res)
    assert top is not None and top.p_fake == max(f.p_fake for f in scored) and top.rgb.shape == (H, W, 3)
    assert top.t == res.frames[top.index].t
    # progress
    assert events[0].stage == "open" and events[-1].stage == "score"
    assert [e.done for e in events if e.stage == "detect"] == list(range(1, 9))
    # JSON
    js = json.loads(json.dumps(res.to_json()))
    assert js["p_fake"] == pytest.approx(res.p_fake, abs=1e-6) and js["verdict"] == res.verdict
    assert set(js["frames"][0]) == {"t", "box", "faces", "track", "p_fake", "verdict", "error"}
    assert js["frames"][4]["error"] and js["frames"][4]["p_fake"] is None
    assert js["aggregate"]["k"] == 2 and js["aggregate"]["n_scored"] == 6
    assert set(js["timings_s"]) == {"decode", "detect", "score", "total"}
    assert any("no face" in n for n in js["notes"])


def test_max_frames_spreads_samples_over_the_clip(clips):
    res = analyze_video(clips["face3"], "custom_cnn", fps=10.0, max_frames=3)
    assert [f.t for f in res.frames] == pytest.approx([0.0, 1.0, 2.0])


def test_rotated_phone_clip_is_turned_upright(clips):
    res = analyze_video(clips["rot90"], "custom_cnn")
    assert res.rotation == 90 and any("rotation metadata" in n for n in res.notes)
    assert len(res.scored) == len(res.frames) == 2
    x, y, w, h = res.frames[0].box
    assert 40 <= x <= 120 and 20 <= y <= 120 and res.suspicious.rgb.shape == (H, W, 3)  # upright coordinates


def test_variable_frame_rate_is_sampled_by_timestamps(clips):
    res = analyze_video(clips["vfr"], "custom_cnn", fps=2.0)
    ts = [f.t for f in res.frames]
    # frame times: 0..0.9 step 0.1, then 1.0 1.3 1.6 1.9, then 2.2 .. 2.95 step 0.05. A sampler that counted
    # frames at the average 10 fps would take frame 15 (t = 2.25) for 1.5 s.
    assert ts[:5] == pytest.approx([0.0, 0.5, 1.0, 1.6, 2.2])
    assert ts[5] == pytest.approx(2.45) or ts[5] == pytest.approx(2.5)


# --- bad input -----------------------------------------------------------------------------------------------

def _code(path, **kw) -> str:
    with pytest.raises(InputError) as e:
        analyze_video(path, "custom_cnn", **kw)
    assert e.value.message and len(e.value.message) < 400
    return e.value.code


def test_every_bad_input_gets_a_clear_error(clips, tmp_path):
    good = clips["face3"]
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert probe_container(trunc).truncated
    assert _code(trunc) == "truncated"
    # cut inside the media data of an index-first file: what is there is analysed, with a note
    fast = _index_first(good, tmp_path / "fast.mp4")
    assert analyze_video(fast, "custom_cnn", max_frames=2).frames[1].t == pytest.approx(1.5)  # intact copy works
    (tmp_path / "fast_cut.mp4").write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.55)])
    info = probe_container(tmp_path / "fast_cut.mp4")
    assert info.truncated and info.indexed and info.video_codecs == ["mp4v"]
    part = analyze_video(tmp_path / "fast_cut.mp4", "custom_cnn")
    assert 1 <= len(part.frames) < 6 and any("truncated" in n for n in part.notes)
    assert any("Decoding stopped" in n for n in part.notes)
    text = tmp_path / "notes.mp4"
    text.write_text("these are my notes, not a video\n" * 20)
    assert _code(text) == "not_video"
    jpeg = tmp_path / "photo.mp4"
    jpeg.write_bytes((ROOT / "examples" / "gan140k_real_00032.jpg").read_bytes())
    assert _code(jpeg) == "not_video"
    # audio only: a real WAV (stdlib wave) renamed .mp4; and an MP4 whose only track is relabelled sound
    wav = tmp_path / "voice.mp4"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 3000).astype("<i2").tobytes())
    assert _code(wav) == "audio_only"
    snd = bytearray(good.read_bytes())
    h = snd.find(b"vide", _box(snd, b"hdlr"))
    snd[h:h + 4] = b"soun"
    (tmp_path / "sound.m4a").write_bytes(bytes(snd))
    assert _code(tmp_path / "sound.m4a") == "audio_only"
    # unsupported codec: FFmpeg has no decoder for this fourcc
    assert _code(_patch_codec(good, b"zzzz", tmp_path / "zzzz.mp4")) == "unsupported_codec"
    # opens (H.264 decoder exists) but no frame decodes: the data is MPEG-4 Part 2
    assert _code(_patch_codec(good, b"avc1", tmp_path / "avc1.mp4")) == "no_frames"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert _code(empty) == "empty" and _code(tmp_path / "missing.mp4") == "not_found"
    assert _code(good, max_bytes=1000) == "too_large"
    assert _code(good, max_seconds=1.5) == "too_long"
    with pytest.raises(NoFaceError) as e:
        analyze_video(clips["noface"], "custom_cnn")
    assert e.value.code == "no_face" and "2 sampled frames" in e.value.message


def test_limits_come_from_settings(clips, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_MAX_VIDEO_SECONDS", "2")
    assert _code(clips["face3"]) == "too_long"
    monkeypatch.setenv("DEEPFAKE_MAX_VIDEO_SIZE", "1kb")
    assert _code(clips["face3"]) == "too_large"


def test_bytes_input_leaves_no_temporary_files(clips):
    def ours() -> set[str]:
        return {p.name for p in Path(tempfile.gettempdir()).glob("deepfake-video-*")}

    before = ours()
    res = analyze_video(clips["face3"].read_bytes(), "custom_cnn", max_frames=2)
    assert len(res.scored) == 2 and ours() == before
    with pytest.raises(InputError):
        analyze_video(b"not a video at all, just text", "custom_cnn")
    assert ours() == before
    it = iter_analyze_video(clips["face3"].read_bytes(), "custom_cnn")
    next(it)  # abandoned mid-way (a closed browser tab): closing the generator removes the folder
    it.close()
    assert ours() == before


# --- CLI -----------------------------------------------------------------------------------------------------

def test_cli_json(clips):
    env = dict(os.environ, HF_HUB_OFFLINE="1", DEEPFAKE_DEVICE="cpu")
    r = subprocess.run([sys.executable, "-m", "detector.video", str(clips["mixed"]), "--model", "custom_cnn",
                        "--fps", "1", "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert js["model"] == "custom_cnn" and js["verdict"] in ("fake", "real", "inconclusive")
    assert [f["t"] for f in js["frames"]] == pytest.approx([0, 1, 2, 3]) and js["frames"][2]["error"]
    assert 0 <= js["p_fake"] <= 1 and js["decision_band"] is not None and "[open]" in r.stderr


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "x.mp4"
    bad.write_text("hello")
    assert main([str(bad), "--json", "--quiet"]) == 1
    out = capsys.readouterr()
    assert json.loads(out.out)["code"] == "not_video" and "error:" in out.err
    assert main([str(bad), "--model", "nope"]) == 2
    assert main([str(bad), "--fps", "0"]) == 2
