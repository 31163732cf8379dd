"""Three-way verdicts: ``fake``, ``real`` or ``inconclusive``, from a per-detector band chosen on validation data.

The band rule (:func:`choose_band`), applied to a detector's *calibrated* ``p_fake`` on the validation split
(never test):

* verdicts: ``fake`` if ``p_fake > hi``, ``real`` if ``p_fake < lo``, ``inconclusive`` if ``lo <= p_fake <= hi``;
  ``lo <= 0.5 <= hi`` always, so the band contains the old decision point;
* for a threshold ``t >= 0.5`` the *fake tail* is the set of val images with ``p_fake > t``; its precision is the
  fraction of them that are truly fake. ``hi`` is the smallest candidate ``t`` (0.5 or a val score above 0.5) such
  that the fake tail at ``t`` and at every larger candidate has precision >= :data:`PRECISION_TARGET`, counting only
  tails with at least :data:`MIN_CALLS` images (smaller tails are too small to estimate a precision from, and are
  judged as part of the larger tails that contain them). In words: the band reaches up to cover every threshold at
  which the "fake" calls above it would be less than 80% right on validation; it is the *widest* band around 0.5
  with that property, not the narrowest one that happens to reach 80% in aggregate;
* ``lo`` is the mirror image: the largest candidate ``t <= 0.5`` such that the *real tail* ``p_fake < t`` at ``t``
  and every smaller candidate (with >= MIN_CALLS images) has precision for "real" >= the target;
* if no threshold qualifies on a side, that side is never called: ``hi = 1.0`` (no ``fake`` verdicts) or
  ``lo = 0.0`` (no ``real`` verdicts). A detector at chance level therefore answers ``inconclusive`` almost always,
  which is the honest answer.

The band is stored in the checkpoint's ``config.json`` under ``"decision_band"`` by
``python -m detector.fit_reliability`` and read back with :func:`read_band` / :func:`band_from_config`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

import numpy as np

__all__ = ["PRECISION_TARGET", "MIN_CALLS", "Band", "Verdict", "choose_band", "verdict3", "headline",
           "band_from_config", "read_band", "band_precision"]

#: Validation precision each side's calls must reach outside the band.
PRECISION_TARGET: float = 0.8
#: Tails with fewer validation images than this are too small to estimate a precision from.
MIN_CALLS: int = 20

Verdict = Literal["fake", "real", "inconclusive"]

RULE = (f"widest [lo, hi] around 0.5 such that on the validation split, for every threshold t >= hi the images with "
        f"p_fake > t are truly fake at least {{target:.0%}} of the time, and for every t <= lo the images with "
        f"p_fake < t are truly real at least {{target:.0%}} of the time (tails with fewer than {{min_calls}} images "
        f"not judged alone); fake if p_fake > hi, real if p_fake < lo, else inconclusive; a side that never reaches "
        f"the target is never called (hi = 1 or lo = 0)")


@dataclass(frozen=True)
class Band:
    """An inconclusive band ``[lo, hi]`` on the calibrated ``p_fake`` and how it was chosen."""

    lo: float
    hi: float
    rule: str = ""
    val_precision_target: float = PRECISION_TARGET
    n_val: int = 0
    extra: dict = field(default_factory=dict, compare=False)  #: val/test figures, provenance

    def to_json(self) -> dict:
        """The ``"decision_band"`` record (``lo``, ``hi``, ``rule``, ``val_precision_target``, ``n_val``, extras)."""
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Band":
        """Parse a ``"decision_band"`` record; raises ``ValueError`` if ``lo``/``hi`` are missing or invalid."""
        try:
            lo, hi = float(d["lo"]), float(d["hi"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"decision_band needs numeric lo and hi ({e})") from None
        if not (0.0 <= lo <= 0.5 <= hi <= 1.0):
            raise ValueError(f"decision_band needs 0 <= lo <= 0.5 <= hi <= 1, got lo={lo}, hi={hi}")
        known = {"lo", "hi", "rule", "val_precision_target", "n_val"}
        return cls(lo=lo, hi=hi, rule=str(d.get("rule", "")),
                   val_precision_target=float(d.get("val_precision_target", PRECISION_TARGET)),
                   n_val=int(d.get("n_val", 0)), extra={k: v for k, v in d.items() if k not in known})


#: Used when a detector has no stored band: every score is inconclusive, because nothing says how often its calls
#: are right (``python -m detector.fit_reliability`` fits one).
NO_BAND = Band(0.0, 1.0, rule="no band fitted: every score inconclusive", val_precision_target=float("nan"))


def _tail_bound(p: np.ndarray, hit: np.ndarray, candidates: np.ndarray, above: bool, target: float,
                min_calls: int) -> tuple[float, int]:
    """The band edge on one side; see the module docstring. ``hit`` marks the images that side calls rightly.

    ``candidates`` are ordered from the decision point outwards. Returns (edge, calls beyond the edge).
    """
    ps = np.sort(p)
    order = np.argsort(p, kind="stable")
    hits = hit[order].astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(hits)])  # csum[k] = hits among the k smallest
    n = len(ps)
    if above:  # tail p > t
        k = np.searchsorted(ps, candidates, side="right")
        calls, right = n - k, csum[n] - csum[k]
    else:  # tail p < t
        k = np.searchsorted(ps, candidates, side="left")
        calls, right = k, csum[k]
    eligible = calls >= min_calls
    ok = np.where(eligible, right >= target * np.maximum(calls, 1), True)
    if not eligible.any():
        return (1.0 if above else 0.0), 0
    # every eligible candidate from index i outwards must pass: find the first i after the last failure
    fails = np.nonzero(~ok)[0]
    start = int(fails[-1]) + 1 if len(fails) else 0
    good = [i for i in range(start, len(candidates)) if eligible[i]]
    if not good:
        return (1.0 if above else 0.0), 0
    i = good[0]
    return float(candidates[i]), int(calls[i])


def choose_band(y: np.ndarray, p_fake: np.ndarray, target: float = PRECISION_TARGET,
                min_calls: int = MIN_CALLS) -> Band:
    """The inconclusive band for validation labels ``y`` (1 = fake) and calibrated scores ``p_fake``.

    See the module docstring for the rule. The returned band's ``extra`` holds the validation figures: share
    of images decided, and the precision of the fake and real calls outside the band.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError("y and p_fake must be 1-D arrays of the same, non-zero length")
    if not np.all(np.isfinite(p)):
        raise ValueError("p_fake has non-finite values")
    up = np.unique(p)
    hi_c = np.concatenate([[0.5], up[up > 0.5]])  # outwards from 0.5
    lo_c = np.concatenate([[0.5], up[up < 0.5][::-1]])
    hi, _ = _tail_bound(p, y == 1, hi_c, True, target, min_calls)
    lo, _ = _tail_bound(p, y == 0, lo_c, False, target, min_calls)
    rule = RULE.format(target=target, min_calls=min_calls)
    val = band_precision(y, p, Band(lo, hi))
    return Band(lo=lo, hi=hi, rule=rule, val_precision_target=target, n_val=int(len(y)),
                extra={"min_calls": min_calls, "val": val})


def band_precision(y: np.ndarray, p_fake: np.ndarray, band: Band) -> dict:
    """``decided`` (share of images outside the band), ``fake_calls``/``real_calls`` and their precision."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    fake, real = p > band.hi, p < band.lo

    def prec(m: np.ndarray, label: int) -> float | None:
        return round(float((y[m] == label).mean()), 4) if m.any() else None

    return {"n": int(len(y)), "decided": round(float((fake | real).mean()), 4) if len(y) else 0.0,
            "fake_calls": int(fake.sum()), "fake_precision": prec(fake, 1),
            "real_calls": int(real.sum()), "real_precision": prec(real, 0)}


def verdict3(p_fake: float, band: Band | Mapping[str, Any] | None) -> Verdict:
    """``"fake"`` if ``p_fake > hi``, ``"real"`` if ``p_fake < lo``, else ``"inconclusive"``.

    ``band`` may be a :class:`Band`, a ``"decision_band"`` dict, or ``None`` (no band fitted: always
    ``"inconclusive"``, since nothing says how often that detector's calls are right). A non-finite ``p_fake`` is
    inconclusive.
    """
    b = NO_BAND if band is None else band if isinstance(band, Band) else Band.from_json(band)
    p = float(p_fake)
    if not math.isfinite(p):
        return "inconclusive"
    if p > b.hi:
        return "fake"
    if p < b.lo:
        return "real"
    return "inconclusive"


def headline(p_fake: float, band: Band | Mapping[str, Any] | None) -> str:
    """The verdict headline. ``FAKE``/``REAL`` in capitals only for a decided score; an inconclusive one is
    written in lower case with the band it fell in, e.g. ``"Inconclusive: p(fake) = 0.52 is inside this
    detector's uncertain range 0.41-0.63 (...)"``."""
    v = verdict3(p_fake, band)
    b = NO_BAND if band is None else band if isinstance(band, Band) else Band.from_json(band)
    p = float(p_fake)
    if v == "fake":
        return f"Verdict: FAKE (p(fake) = {p:.2f})"
    if v == "real":
        return f"Verdict: REAL (p(fake) = {p:.2f})"
    if not math.isfinite(p):
        return "Inconclusive: no valid score"
    if band is None:
        return (f"Inconclusive: p(fake) = {p:.2f}; this detector has no validated decision range yet "
                f"(python -m detector.fit_reliability)")
    if b.lo <= 0.0 and b.hi >= 1.0:
        return (f"Inconclusive: p(fake) = {p:.2f}; this detector's calls were never {b.val_precision_target:.0%} "
                f"right on validation images, so it gives no verdict")
    if b.lo == b.hi:
        return f"Inconclusive: p(fake) = {p:.2f} is exactly at the decision point"
    return (f"Inconclusive: p(fake) = {p:.2f} is inside this detector's uncertain range {b.lo:.2f}-{b.hi:.2f} "
            f"(chosen on validation images so that calls outside it are at least {b.val_precision_target:.0%} right)")


def band_from_config(cfg: Mapping[str, Any]) -> Band | None:
    """The band stored in a checkpoint config dict (e.g. ``LoadedModel.config``), or ``None`` if absent/invalid."""
    rec = cfg.get("decision_band") if isinstance(cfg, Mapping) else None
    if not isinstance(rec, Mapping):
        return None
    try:
        return Band.from_json(rec)
    except ValueError:
        return None


def read_band(name: str) -> Band | None:
    """The band in ``<checkpoint folder>/<name>/config.json`` (the loader's folder), or ``None``. Never raises
    for a missing or corrupt file."""
    from .specs import get_spec

    try:
        cfg = json.loads((get_spec(name).local_dir / "config.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    return band_from_config(cfg)
