"""tools.flip_probe: val only, the mirror is left-right, and mirror-symmetric images score alike."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tools import flip_probe


@pytest.fixture()
def symmetric_faces(tmp_path):
    """Left-right symmetric images (so mirroring changes nothing), labels by texture."""
    rng = np.random.default_rng(0)
    rows = ["path,label,source,group,split"]
    for source in ("gan140k", "dfdc"):
        for split in ("val", "test"):
            for label in ("real", "fake"):
                for i in range(6):
                    half = rng.integers(0, 256, (48, 24, 3), dtype=np.uint8)
                    if label == "fake":
                        half[::2] //= 2
                    img = np.concatenate([half, half[:, ::-1]], axis=1)
                    rel = f"{source}/{label}/{split}_{i}.png"
                    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(tmp_path / rel)
                    rows.append(f"{rel},{label},{source},{source}-{split}-{i},{split}")
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _check_cli(faces, capsys, flag: str, good: int, line: str, bad: int) -> None:
    """The CLI accepts ``flag good`` and prints ``line``; it refuses ``flag bad`` as out of range."""
    assert flip_probe.main(["--model", "custom_cnn", "--data", str(faces), "--per-source", "4", flag, str(good)]) == 0
    assert line in capsys.readouterr().out
    with pytest.raises(SystemExit):
        flip_probe.main(["--model", "custom_cnn", "--data", str(faces), flag, str(bad)])
    assert f"{flag} {bad} must be between 16 and 1024" in capsys.readouterr().err


def test_flip_probe_reads_val_only_and_mirror_invariant_images_score_alike(symmetric_faces, tiny_ckpt_root,
                                                                           use_checkpoints, monkeypatch, capsys):
    use_checkpoints(tiny_ckpt_root)
    from detector import data

    splits = []
    real_read = data.read_index

    def spy(root, split, sources=None):
        splits.append(split)
        return real_read(root, split, sources)

    monkeypatch.setattr(data, "read_index", spy)
    rep = flip_probe.flip_probe("custom_cnn", str(symmetric_faces), ["gan140k", "dfdc"])
    assert splits == ["val"]
    assert set(rep) == {"gan140k", "dfdc"}
    for r in rep.values():
        assert r["n"] == 12
        assert 0.0 <= r["plain"] <= 1.0
        assert r["mirrored"] == pytest.approx(r["plain"]) and r["averaged"] == pytest.approx(r["plain"])
    from detector.weights import load_model

    lm = load_model("custom_cnn", "cpu")
    paths = sorted(str(p) for p in symmetric_faces.rglob("val_*.png"))
    a, b = flip_probe.mirror_logits(lm, paths)
    assert a.shape == b.shape == (len(paths),)
    import torch

    from detector.preprocess import preprocess

    x = torch.cat([preprocess(p, lm.spec, face_crop=False).tensor for p in paths])
    with torch.inference_mode():
        want = [(z[:, 1] - z[:, 0]).numpy() for z in (lm.model(x), lm.model(x.flip(-1)), lm.model(x.flip(-2)))]
    np.testing.assert_allclose(a, want[0], atol=1e-5)
    np.testing.assert_allclose(b, want[1], atol=1e-5)  # mirrored left-right: the width axis
    assert np.abs(b - want[2]).max() > 1e-4  # not upside down
    assert flip_probe.main(["--model", "custom_cnn", "--data", str(symmetric_faces), "--per-source", "4"]) == 0
    assert "custom_cnn gan140k n=4: plain" in capsys.readouterr().out


def test_input_size_scores_at_that_size_and_bad_sizes_are_refused(symmetric_faces, tiny_ckpt_root, use_checkpoints,
                                                                   capsys):
    use_checkpoints(tiny_ckpt_root)
    import dataclasses

    import torch

    from detector.preprocess import preprocess
    from detector.weights import load_model

    lm = load_model("custom_cnn", "cpu")
    paths = sorted(str(p) for p in symmetric_faces.rglob("val_*.png"))[:6]
    size = lm.spec.input_size + 16
    a, _ = flip_probe.mirror_logits(lm, paths, size)
    big = dataclasses.replace(lm.spec, input_size=size)
    x = torch.cat([preprocess(p, big, face_crop=False).tensor for p in paths])
    assert x.shape[-1] == size
    with torch.inference_mode():
        z = lm.model(x)
    np.testing.assert_allclose(a, (z[:, 1] - z[:, 0]).numpy(), atol=1e-5)
    own, _ = flip_probe.mirror_logits(lm, paths)
    assert np.abs(own - a).max() > 1e-4  # the size really changed what the model saw
    _check_cli(symmetric_faces, capsys, "--input-size", size, f"custom_cnn at {size} px gan140k n=4: plain", 4)


def test_detail_keeps_the_input_size_but_removes_the_fine_detail(symmetric_faces, tiny_ckpt_root, use_checkpoints,
                                                                  capsys):
    use_checkpoints(tiny_ckpt_root)
    import cv2
    import torch

    from detector.preprocess import finish, prepare_face
    from detector.weights import load_model

    lm = load_model("custom_cnn", "cpu")
    paths = sorted(str(p) for p in symmetric_faces.rglob("val_*.png"))[:6]
    size, detail = lm.spec.input_size, lm.spec.input_size // 4
    a, _ = flip_probe.mirror_logits(lm, paths, detail=detail)
    faces = [prepare_face(p, lm.spec, face_crop=False)[0] for p in paths]
    blurred = [cv2.resize(cv2.resize(f, (detail, detail), interpolation=cv2.INTER_AREA), (size, size),
                          interpolation=cv2.INTER_LINEAR) for f in faces]
    x = torch.cat([finish(f, lm.spec)[0] for f in blurred])
    assert x.shape[-2:] == (size, size)  # the checkpoint's own size
    with torch.inference_mode():
        z = lm.model(x)
    np.testing.assert_allclose(a, (z[:, 1] - z[:, 0]).numpy(), atol=1e-5)
    own, _ = flip_probe.mirror_logits(lm, paths)
    assert np.abs(own - a).max() > 1e-4  # the detail really went
    same, _ = flip_probe.mirror_logits(lm, paths, detail=size)  # shrinking to its own size is a no-op
    np.testing.assert_allclose(same, own, atol=1e-5)
    _check_cli(symmetric_faces, capsys, "--detail", detail, f"custom_cnn with {detail} px of detail gan140k n=4: plain",
               2000)
