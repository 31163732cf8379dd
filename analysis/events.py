"""What :meth:`analysis.service.AnalysisService.explain` yields, in order: one
:class:`VerdictsReady`, one :class:`MapReady` per map (a preview of the first map may come
before its complete result), then one :class:`Done`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

__all__ = ["Verdicts", "VerdictsReady", "MapReady", "Done", "Event"]


@dataclass(frozen=True)
class Verdicts:
    """The verdicts of one request: one detector, or every detector with weights ("all")."""

    detector: str  #: what was asked for: a detector name or "all"
    face_crop: bool
    image_sha256: str
    predictions: list[Any]  #: ``detector.predict.Prediction``, most reliable detector first
    unavailable: dict[str, str] = field(default_factory=dict)  #: detector -> why it could not run ("all" only)
    trust: dict[str, Any] = field(default_factory=dict)  #: detector -> ``analysis.trust.Trust``
    consensus: Any = None  #: ``analysis.trust.ConsensusView`` ("all" only)
    facts: Any = None  #: ``analysis.trust.ImageFacts`` of the image


@dataclass(frozen=True)
class VerdictsReady:
    """The verdicts are in; maps follow for ``explained``."""

    verdicts: Verdicts
    explained: Any  #: the ``Prediction`` whose detector the maps explain (its ``target`` is the class)
    notes: list[str] = field(default_factory=list)  #: e.g. "X is not available; maps explain Y."


@dataclass(frozen=True)
class MapReady:
    """One method's result (``result.pending``: a preview whose faithfulness score follows)."""

    result: Any  #: ``explainers.panel.PanelResult``
    cached: bool  #: served from the result cache
    done: int  #: complete maps so far (previews not counted)
    total: int  #: maps asked for
    grid: np.ndarray | None = None  #: the side-by-side grid so far (only when the caller asked to stream it)


@dataclass(frozen=True)
class Done:
    """The analysis is complete."""

    verdicts: Verdicts
    report: dict  #: the JSON report (:func:`explainers.report.build_report`)
    zip_path: str | None  #: maps (PNG + .npy), faces and report.json (None when not asked for)
    grid: np.ndarray | None  #: the side-by-side grid of every map (None without maps)
    results: list[Any]  #: final ``PanelResult`` per method, display order
    seconds: float  #: wall time of the whole analysis


Event = Union[VerdictsReady, MapReady, Done]
