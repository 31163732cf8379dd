"""Issue 11 through the analysis service: one calibrated probability everywhere, the faithfulness reading
against a random map, and the page's verdict wording (random-weight checkpoints, test reliability figures)."""
from __future__ import annotations

import math

from .conftest import CONSENSUS_OF, FAST_DETECTOR


def test_faithfulness_curve_starts_at_the_verdicts_calibrated_probability(app_server, face_image):
    from analysis import AnalysisService
    from detector.reliability import faithfulness_reading
    from detector.weights import load_model

    _, app = app_server
    svc = AnalysisService(app.SETTINGS)  # its own, empty cache
    events = list(svc.explain(str(face_image), FAST_DETECTOR, ["gradcam", "saliency"]))
    pred, report = events[0].explained, events[-1].report
    p_target = pred.p_fake if pred.label == "fake" else pred.p_real
    assert load_model(FAST_DETECTOR).temperature != 1.0  # so an uncalibrated curve would differ
    randoms = set()
    for m in ("gradcam", "saliency"):
        f = report["methods"][m]["faithfulness"]
        assert math.isclose(f["deletion_curve"][0], p_target, abs_tol=1e-4), (m, f["deletion_curve"][0], p_target)
        assert math.isclose(f["insertion_curve"][-1], p_target, abs_tol=1e-4)
        assert f"from {p_target:.2f}" in f["meaning"]
        assert -1 <= f["random_score"] <= 1 and f["reading"] == faithfulness_reading(f["score"], f["random_score"])[0]
        assert f["reading"] in ("good", "fair", "poor") and "range -1 to 1" in f["reading_text"]
        randoms.add(f["random_score"])
    assert len(randoms) == 1  # one random baseline per image and detector


def test_verdict_text_never_capitalises_an_inconclusive_score(app_server, face_image):
    from analysis import AnalysisService, text

    _, app = app_server
    svc = AnalysisService(app.SETTINGS)
    v = svc.verdicts(str(face_image), FAST_DETECTOR)
    t = v.trust[FAST_DETECTOR]
    md = text.verdict_md(v, None)
    assert t.verdict == "inconclusive"  # random weights score near 0.5, inside the test band 0.02-0.98
    assert "FAKE" not in md and "REAL" not in md and "Inconclusive: p(fake) =" in md
    assert t.reliability.sentence in md and "weak" not in md

    every = svc.verdicts(str(face_image), "all")
    md = text.verdict_md(every, every.predictions[0].model)
    assert "Combined verdict" in md and all(text.display_name(n) in md for n in CONSENSUS_OF)
    assert md.count("weak: for comparison only") >= len(every.predictions) - 1  # every detector but the fast one


def test_whole_image_without_face_is_labelled_and_expected_time_is_measured(app_server, tmp_path):
    import numpy as np
    from PIL import Image

    from analysis import AnalysisService, text
    from detector.reliability import NO_FACE_WARNING

    _, app = app_server
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((256, 256, 3), 120, np.uint8)).save(flat)
    svc = AnalysisService(app.SETTINGS)
    assert "not measured on this server yet" in text.expected_time_md(svc, FAST_DETECTOR, None, ["gradcam"])
    events = list(svc.explain(str(flat), FAST_DETECTOR, ["gradcam"], face_crop=False))
    v, done = events[0].verdicts, events[-1]
    assert v.facts.face_found is False and NO_FACE_WARNING in v.trust[FAST_DETECTOR].warnings
    raw, eq = text.crop_labels(v)
    assert "Face crop" not in raw + eq and "no face detected" in raw
    assert f"**Warning:** {NO_FACE_WARNING[0].upper()}{NO_FACE_WARNING[1:]}" in text.verdict_md(v, None)
    seconds, missing = svc.expected_seconds(FAST_DETECTOR, ["gradcam", "lime"])
    assert seconds > 0 and missing == ["lime"]
    md = text.expected_time_md(svc, FAST_DETECTOR, None, ["gradcam"])
    assert "Expected time for Custom CNN: about" in md and "not measured" not in md
    assert done.grid.shape[2] == 4 and done.grid[0, 0, 3] == 0  # see-through between tiles (dark mode)
    assert text.done_status(done.report, 1.0) == "Done in 1.0 s."


def test_self_checks_read_as_passed_or_failed():
    from types import SimpleNamespace

    from analysis.text import method_checks

    assert method_checks(SimpleNamespace(extra={"completeness_error": 0.004}))[0].startswith("**Check passed:**")
    assert method_checks(SimpleNamespace(extra={"completeness_error": 0.2}))[0].startswith("**Check failed:**")
    assert method_checks(SimpleNamespace(extra={"approximate": True}))[0].startswith("**Check failed:**")
    assert method_checks(SimpleNamespace(extra={"approximate": False}))[0].startswith("**Check passed:**")
    assert method_checks(None) == []
