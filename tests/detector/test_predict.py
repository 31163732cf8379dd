import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.errors import InputError
from detector.predict import Prediction, predict, predict_batch
from tests.corpus import build_corpus

ROOT = Path(__file__).resolve().parents[2]


def _run_cli(args, ckpt_root):
    env = dict(os.environ, DEEPFAKE_CHECKPOINTS=str(ckpt_root), HF_HUB_OFFLINE="1", DEEPFAKE_DEVICE="cpu")
    return subprocess.run([sys.executable, "-m", "detector.predict", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_predict_returns_everything_the_app_needs(tiny_ckpt_root, use_checkpoints, astronaut):
    use_checkpoints(tiny_ckpt_root)
    p = predict(astronaut, "custom_cnn")
    assert p.label in ("real", "fake") and p.label == ("fake" if p.p_fake >= 0.5 else "real")
    assert 0 <= p.p_fake <= 1 and abs(p.p_fake + p.p_real - 1) < 1e-6
    assert p.face_box is not None and p.face.shape == p.face_raw.shape == (160, 160, 3)
    assert set(p.timings) == {"preprocess", "forward"} and p.weights.startswith("local:")
    assert json.loads(json.dumps(p.to_json()))["label"] == p.label


def test_batch_matches_single_and_keeps_errors_in_place(tiny_ckpt_root, use_checkpoints, astronaut):
    use_checkpoints(tiny_ckpt_root)
    bad = b"not an image at all"
    out = predict_batch([astronaut, bad, astronaut[:, ::-1]], "custom_cnn", batch_size=2)
    assert isinstance(out[0], Prediction) and isinstance(out[1], InputError) and isinstance(out[2], Prediction)
    single = predict(astronaut, "custom_cnn")
    assert abs(out[0].p_fake - single.p_fake) < 1e-4


def test_cli_json_one_line_per_image(tmp_path, tiny_ckpt_root, astronaut):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(d / "face.png")
    Image.fromarray(astronaut).save(d / "sub" / "face2.jpg")
    (d / "broken.jpg").write_bytes(b"hello")
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(d / "noface.png")
    r = _run_cli([str(d), "--model", "custom_cnn", "--json"], tiny_ckpt_root)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 4
    by = {Path(x["path"]).name: x for x in lines}
    for x in lines:
        assert set(x) == {"path", "model", "label", "p_fake", "face", "weights", "error"}
    assert by["face.png"]["error"] is None and by["face.png"]["label"] in ("real", "fake")
    assert len(by["face.png"]["face"]) == 4 and by["face.png"]["weights"].startswith("local:")
    assert "not an image" in by["broken.jpg"]["error"]
    assert "No face found" in by["noface.png"]["error"]
    r2 = _run_cli([str(d / "noface.png"), "--model", "custom_cnn", "--json", "--no-face-crop"], tiny_ckpt_root)
    assert r2.returncode == 0 and json.loads(r2.stdout)["face"] is None


def test_cli_exit_codes(tmp_path, tiny_ckpt_root):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    r = _run_cli([str(bad), "--json"], tiny_ckpt_root)
    assert r.returncode == 1 and "empty" in json.loads(r.stdout)["error"]
    r = _run_cli([str(bad), "--model", "densenet121"], tmp_path / "none")
    assert r.returncode == 2 and "No weights for detector 'densenet121'" in r.stderr
    r = _run_cli([str(bad), "--model", "nope"], tiny_ckpt_root)
    assert r.returncode == 2 and "unknown detector" in r.stderr


def test_cli_survives_every_hostile_file_in_one_run(tmp_path, tiny_ckpt_root, astronaut):
    cases = [c for c in build_corpus() if c.expect != "ok"]
    paths = []
    for i, case in enumerate(cases):
        p = tmp_path / f"{i:02d}_{''.join(ch if ch.isalnum() or ch in '._' else '_' for ch in case.name)}"
        p.write_bytes(case.data)
        paths.append(str(p))
    Image.fromarray(astronaut).save(tmp_path / "zz_good.png")
    r = _run_cli([*paths, str(tmp_path / "zz_good.png"), "--json"], tiny_ckpt_root)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == len(cases) + 1
    for case, row in zip(cases, rows):
        assert row["error"] and "Traceback" not in row["error"], (case.what, row)
        assert row["label"] is None and row["p_fake"] is None
    assert rows[-1]["error"] is None and rows[-1]["label"] in ("real", "fake")
