"""How far to trust each verdict: the three-way verdict, its detector's reliability, warnings, the consensus.

Thin glue between the service and :mod:`detector.reliability`, :mod:`detector.verdict_bands` and
:mod:`detector.consensus` (which hold the rules and figures; nothing here is a number of its own).
Every figure comes from the checkpoints' ``metrics.json``, ``config.json`` (``decision_band``) and
``consensus.json``, so a new detector in ``detector.specs.SPECS`` is ranked, banded and shown without
an edit here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

__all__ = ["ImageFacts", "Trust", "ConsensusView", "band_of", "detector_order", "default_choice", "available_default",
           "trust", "consensus_view", "verdict_json", "consensus_json", "predict_json"]


@dataclass(frozen=True)
class ImageFacts:
    """What the warnings need to know about the uploaded image (cached with the verdicts)."""

    size: tuple[int, int]  #: (width, height) after EXIF orientation
    face_found: bool | None  #: whether face detection found a face (also checked in whole-image mode)


@dataclass(frozen=True)
class Trust:
    """One detector's verdict as the page and the API state it."""

    model: str
    verdict: str  #: "fake", "real" or "inconclusive" (:func:`detector.verdict_bands.verdict3`)
    headline: str  #: :func:`detector.verdict_bands.headline`: capitals only for a decided score
    reliability: Any  #: :class:`detector.reliability.Reliability`
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConsensusView:
    """The combined verdict of "Compare all", or why there is none."""

    p_fake: float | None
    verdict: str | None
    detectors: tuple[str, ...] = ()  #: the detectors it combines
    reliability: Any = None  #: its test reliability (``Reliability``), when known
    note: str = ""  #: why it could not be computed (empty when it was)


def band_of(name: str) -> Any:
    """The detector's decision band: from the loaded model's config (Hub or local), else the local config.json."""
    from detector import weights
    from detector.verdict_bands import band_from_config, read_band

    for lm in list(weights._cache.values()):  # a loaded model's config is what its verdicts came from
        if getattr(getattr(lm, "spec", None), "name", None) == name:
            return band_from_config(lm.config)
    return read_band(name)


def detector_order(names: Iterable[str] | None = None) -> list[str]:
    """Detector names, most reliable first (:func:`detector.reliability.ranked`)."""
    from detector.reliability import ranked

    return ranked(names)


def default_choice(available: Iterable[str] | None = None) -> Any:
    """:class:`detector.reliability.DefaultChoice` among ``available`` (default: every detector)."""
    from detector.reliability import default_detector

    names = list(available) if available is not None else None
    return default_detector(names or None)


def available_default() -> Any:
    """The ``DefaultChoice`` among the detectors that have weights (every detector if none has)."""
    from detector.weights import weights_status

    status = weights_status()
    return default_choice([n for n in detector_order() if status.get(n) is None])


def trust(pred: Any, facts: ImageFacts | None, face_crop: bool) -> Trust:
    """The verdict, reliability and warnings of one ``Prediction``."""
    from detector.reliability import input_warnings, reliability
    from detector.specs import get_spec
    from detector.verdict_bands import headline, verdict3

    band = band_of(pred.model)
    warnings = []
    if facts is not None:
        warnings = input_warnings(facts.size, pred.face_box, get_spec(pred.model), facts.face_found,
                                  whole_image=not face_crop)
    return Trust(pred.model, verdict3(pred.p_fake, band), headline(pred.p_fake, band), reliability(pred.model),
                 warnings)


def consensus_view(preds: Sequence[Any]) -> ConsensusView:
    """The consensus of the predictions' calibrated ``p_fake``, or a :class:`ConsensusView` with a ``note``."""
    from detector.consensus import ConsensusError, consensus_reliability, load

    try:
        model = load()
        p = model.p_fake({q.model: q.p_fake for q in preds})
    except ConsensusError as e:
        return ConsensusView(None, None, note=f"No combined verdict: {e}.")
    from detector.verdict_bands import verdict3

    return ConsensusView(p, verdict3(p, model.band), tuple(model.detectors), consensus_reliability(model))


def verdict_json(t: Trust) -> dict:
    """The API's added fields of one verdict: ``verdict``, ``reliability``, ``warnings``."""
    return {"verdict": t.verdict, "reliability": t.reliability.to_json(), "warnings": list(t.warnings)}


def consensus_json(c: ConsensusView) -> dict:
    """The API's ``consensus``: ``p_fake``, ``verdict``, ``detectors``, ``reliability`` and ``note``."""
    return {"p_fake": None if c.p_fake is None else round(c.p_fake, 6), "verdict": c.verdict,
            "detectors": list(c.detectors), "reliability": c.reliability.to_json() if c.reliability else None,
            "note": c.note or None}


def predict_json(v: Any) -> dict:
    """``/predict``'s answer for :class:`analysis.events.Verdicts` ``v`` (documented in the README's API section)."""
    from explainers.report import verdict_record

    from .service import display_name

    results = [{**verdict_record(p, display_name(p.model)), **verdict_json(v.trust[p.model])} for p in v.predictions]
    out: dict[str, Any] = {"detector": v.detector, "face_crop": v.face_crop, "image_sha256": v.image_sha256,
                           "results": results, "unavailable": dict(v.unavailable)}
    if v.consensus is not None:
        out["consensus"] = consensus_json(v.consensus)
    else:
        p = v.predictions[0]
        out.update({"label": p.label, "p_fake": p.p_fake, "p_real": p.p_real, "verdict": v.trust[p.model].verdict})
    return out
