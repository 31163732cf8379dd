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
