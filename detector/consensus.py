"""One combined verdict for "Compare all": a logistic regression over the detectors' calibrated logits.

Each detector's feature is ``log(p / (1 - p))`` of its calibrated ``p_fake`` (``p`` clipped to ``[1e-6, 1 - 1e-6]``),
so a detector that is sure counts more than one that is not, and a weak one gets the weight the validation data
gives it. The regression is fitted on the validation split only (``python -m detector.fit_reliability``), has its
own inconclusive band chosen on validation by the same rule as the detectors (:mod:`detector.verdict_bands`), and
its test AUC (per source and pooled) is computed once after fitting and stored for the About tab; test data never
chooses anything. Everything lives in ``<checkpoint folder>/consensus.json``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .verdict_bands import Band, Verdict, band_precision, choose_band, verdict3

__all__ = ["CONSENSUS_FILE", "EPS", "ConsensusError", "ConsensusModel", "calibrated_logit", "fit", "test_report",
           "consensus_path", "load", "consensus", "consensus_reliability"]

CONSENSUS_FILE = "consensus.json"
#: Probabilities are clipped to [EPS, 1 - EPS] before the logit (float32 softmax saturates at 0 and 1).
EPS: float = 1e-6


class ConsensusError(ValueError):
    """The consensus cannot be computed (file missing or corrupt, a detector it needs is missing)."""


def calibrated_logit(p_fake: float | np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of a calibrated ``p_fake`` (clipped to ``[EPS, 1 - EPS]``)."""
    p = np.clip(np.asarray(p_fake, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class ConsensusModel:
    """A fitted consensus: ``p_fake = sigmoid(intercept + sum_i coef[i] * logit(p_fake[detectors[i]]))``."""

    detectors: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    band: Band
    fit_data: dict = field(default_factory=dict)  #: what it was fitted on
    test: dict = field(default_factory=dict)  #: test figures, computed once after fitting

    def p_fake(self, p_fakes: Mapping[str, float]) -> float:
        """Consensus ``p_fake``; raises :class:`ConsensusError` if a needed detector's score is missing/invalid."""
        missing = [n for n in self.detectors if n not in p_fakes]
        if missing:
            raise ConsensusError(f"the consensus needs scores from {', '.join(self.detectors)}; missing: "
                                 f"{', '.join(missing)}")
        vals = [float(p_fakes[n]) for n in self.detectors]
        bad = [n for n, v in zip(self.detectors, vals) if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
        if bad:
            raise ConsensusError(f"invalid p_fake for {', '.join(bad)} (need a probability in [0, 1])")
        z = self.intercept + float(np.dot(self.coef, calibrated_logit(np.array(vals))))
        return float(1.0 / (1.0 + math.exp(-z))) if z >= 0 else float(math.exp(z) / (1.0 + math.exp(z)))

    def to_json(self) -> dict:
        """The ``consensus.json`` content."""
        return {"kind": "logistic regression over calibrated logits log(p_fake / (1 - p_fake))",
                "detectors": list(self.detectors), "coef": list(self.coef), "intercept": self.intercept,
                "logit_clip": EPS, "decision_band": self.band.to_json(), "fit": self.fit_data, "test": self.test}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ConsensusModel":
        """Parse ``consensus.json`` content; raises :class:`ConsensusError` when it is malformed."""
        try:
            dets = tuple(str(n) for n in d["detectors"])
            coef = tuple(float(c) for c in d["coef"])
            intercept = float(d["intercept"])
            band = Band.from_json(d["decision_band"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConsensusError(f"consensus file is malformed ({e})") from None
        if not dets or len(dets) != len(coef) or not all(math.isfinite(c) for c in coef + (intercept,)):
            raise ConsensusError("consensus file is malformed (detectors and coefficients do not match)")
        return cls(dets, coef, intercept, band, dict(d.get("fit", {})), dict(d.get("test", {})))

    def save(self, path: str | Path) -> Path:
        """Write the JSON file (indented, trailing newline)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def fit(p_val: np.ndarray, y_val: np.ndarray, detectors: Sequence[str], fit_data: dict | None = None,
        C: float = 1.0) -> ConsensusModel:
    """Fit on validation scores ``p_val`` (n_images x n_detectors calibrated ``p_fake``, columns in ``detectors``
    order) and labels ``y_val`` (1 = fake); choose the consensus band on the same validation data."""
    from sklearn.linear_model import LogisticRegression

    p_val = np.asarray(p_val, dtype=np.float64)
    y_val = np.asarray(y_val).astype(int)
    if p_val.ndim != 2 or p_val.shape[1] != len(detectors) or p_val.shape[0] != len(y_val):
        raise ValueError(f"p_val must be (n, {len(detectors)}) matching y_val")
    lr = LogisticRegression(C=C, max_iter=1000).fit(calibrated_logit(p_val), y_val)
    coef, intercept = tuple(float(c) for c in lr.coef_[0]), float(lr.intercept_[0])
    provisional = ConsensusModel(tuple(detectors), coef, intercept, Band(0.5, 0.5))
    p_cons = np.array([provisional.p_fake(dict(zip(detectors, row))) for row in p_val])
    band = choose_band(y_val, p_cons)
    info = {"n_val": int(len(y_val)), "regularisation_C": C, **(fit_data or {})}
    return ConsensusModel(tuple(detectors), coef, intercept, band, info)


def test_report(model: ConsensusModel, p_test: np.ndarray, y_test: np.ndarray, source: Sequence[str]) -> dict:
    """Test figures of a fitted consensus (call once, after fitting): ROC AUC per source and pooled, shaped like
    a ``metrics.json`` (``split``, ``n_scored``, ``per_source``, ``pooled``), and the test precision of the calls
    outside its band. Also the AUCs of each single detector on the same images, for comparison."""
    from sklearn.metrics import roc_auc_score

    p_test = np.asarray(p_test, dtype=np.float64)
    y = np.asarray(y_test).astype(int)
    src = np.asarray(source)
    pc = np.array([model.p_fake(dict(zip(model.detectors, row))) for row in p_test])

    def auc(p: np.ndarray, m: np.ndarray) -> float | None:
        return round(float(roc_auc_score(y[m], p[m])), 4) if len(set(y[m])) == 2 else None

    groups = {s: src == s for s in sorted(set(src.tolist()))}
    every = np.ones(len(y), bool)
    singles = {n: {**{s: auc(p_test[:, i], m) for s, m in groups.items()}, "pooled": auc(p_test[:, i], every)}
               for i, n in enumerate(model.detectors)}
    return {"split": "test", "n_scored": int(len(y)),
            "per_source": {s: {"n": int(m.sum()), "roc_auc": auc(pc, m)} for s, m in groups.items()},
            "pooled": {"n": int(len(y)), "roc_auc": auc(pc, every)},
            "band": band_precision(y, pc, model.band), "single_detectors_roc_auc": singles}


def consensus_path() -> Path:
    """``<checkpoint folder>/consensus.json`` (the loader's folder; ``DEEPFAKE_CHECKPOINTS`` moves it)."""
    from .specs import checkpoint_root

    return checkpoint_root() / CONSENSUS_FILE


def load(path: str | Path | None = None) -> ConsensusModel:
    """Read the consensus (default :func:`consensus_path`); raises :class:`ConsensusError` if missing/corrupt."""
    path = Path(path) if path is not None else consensus_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConsensusError(f"no consensus fitted ({path} is missing; run python -m detector.fit_reliability)") \
            from None
    except (OSError, ValueError) as e:
        raise ConsensusError(f"{path} could not be read ({type(e).__name__})") from None
    if not isinstance(data, Mapping):
        raise ConsensusError(f"{path} is not a JSON object")
    return ConsensusModel.from_json(data)


def consensus(p_fakes: Mapping[str, float], model: ConsensusModel | str | Path | None = None
              ) -> tuple[float, Verdict]:
    """``(p_fake, verdict)`` of the consensus for calibrated per-detector ``p_fakes`` ({name: p_fake}).

    ``model`` is a :class:`ConsensusModel`, a path, or ``None`` for :func:`consensus_path`. Raises
    :class:`ConsensusError` (a ``ValueError``) naming what is missing when a detector the consensus needs has no
    score or when no consensus has been fitted. Detectors it does not use are ignored.
    """
    m = model if isinstance(model, ConsensusModel) else load(model)
    p = m.p_fake(p_fakes)
    return p, verdict3(p, m.band)


def consensus_reliability(model: ConsensusModel | None = None):
    """The consensus's test reliability as a :class:`detector.reliability.Reliability` (name ``"consensus"``)."""
    from .reliability import reliability_from_metrics

    m = model if model is not None else load()
    return reliability_from_metrics("consensus", m.test, "consensus.json test figures")
