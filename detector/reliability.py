"""How far to trust a detector, in plain words, from its published test metrics; input and faithfulness readings.

* :func:`reliability` reads ``<checkpoint folder>/NAME/metrics.json`` (written by ``python -m detector.evaluate
  --split test --save``; the folder is the loader's, so ``DEEPFAKE_CHECKPOINTS`` moves it) and returns the test ROC
  AUC per source, a plain-words sentence and a ``weak`` flag (any source below :data:`WEAK_AUC`). Nothing is
  hard-coded: a missing or unreadable file gives *unknown* reliability, ``weak=True`` and the reason.
* :func:`ranked` / :func:`default_detector` order detectors best first by their *worst* source's test AUC.
* :func:`input_refusal` / :func:`input_warnings` flag inputs outside what the detectors were trained on.
* :func:`faithfulness_reading` turns a deletion/insertion faithfulness score into good / fair / poor against the
  score of a random map on the same image.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from .specs import ModelSpec

__all__ = ["WEAK_AUC", "SOURCE_WORDS", "Reliability", "DefaultChoice", "reliability", "reliability_from_metrics",
           "ranked", "default_detector", "MIN_IMAGE_SIDE", "input_refusal", "input_warnings", "NO_FACE_WARNING",
           "GOOD_MARGIN", "FAIR_MARGIN", "faithfulness_reading"]

#: A detector whose test ROC AUC is below this on any source is "weak: for comparison only".
WEAK_AUC: float = 0.75

#: Plain words for the dataset sources (``../shared/datasets/faces/README.md``); unknown sources print as named.
SOURCE_WORDS: dict[str, str] = {"gan140k": "GAN faces", "dfdc": "video face swaps"}


@dataclass(frozen=True)
class Reliability:
    """One detector's test-set reliability."""

    name: str
    test_auc: dict[str, float]  #: test ROC AUC per source (empty when unknown)
    weak: bool  #: any source below WEAK_AUC, or unknown
    known: bool  #: False when metrics.json is missing or unusable
    reason: str = ""  #: why reliability is unknown (empty when known)
    pooled_auc: float | None = None
    n_test: int | None = None

    @property
    def min_auc(self) -> float | None:
        """Worst source's test AUC (the ranking key), or None when unknown."""
        return min(self.test_auc.values()) if self.test_auc else None

    @property
    def mean_auc(self) -> float | None:
        """Mean over sources of the test AUC (tie-breaker), or None when unknown."""
        return sum(self.test_auc.values()) / len(self.test_auc) if self.test_auc else None

    @property
    def sentence(self) -> str:
        """E.g. "On held-out test images this detector ranks a fake above a real 87% of the time for GAN faces
        (gan140k) and 71% for video face swaps (dfdc)." """
        if not self.known:
            return f"Reliability unknown: {self.reason}."
        parts = []
        for i, (src, auc) in enumerate(sorted(self.test_auc.items(), key=lambda kv: -kv[1])):
            words = SOURCE_WORDS.get(src)
            what = f"{words} ({src})" if words else src
            parts.append(f"{auc:.0%} of the time for {what}" if i == 0 else f"{auc:.0%} for {what}")
        body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"On held-out test images this detector ranks a fake above a real {body}."

    @property
    def tag(self) -> str:
        """``"weak: for comparison only"``, ``"unknown reliability"`` or ``""``."""
        if not self.known:
            return "unknown reliability"
        return "weak: for comparison only" if self.weak else ""

    def to_json(self) -> dict:
        """The API's ``reliability`` field: ``{"test_auc": {source: auc}, "weak": bool}``."""
        return {"test_auc": {k: round(v, 4) for k, v in self.test_auc.items()}, "weak": self.weak}


def _unknown(name: str, reason: str) -> Reliability:
    return Reliability(name=name, test_auc={}, weak=True, known=False, reason=reason)


def reliability_from_metrics(name: str, data: Any, where: str = "metrics.json") -> Reliability:
    """:class:`Reliability` from a parsed ``metrics.json`` dict (``{"split": "test", "per_source": {src:
    {"roc_auc": ..}}, "pooled": {..}}``); unknown (weak) with the reason when it is not usable."""
    if not isinstance(data, Mapping):
        return _unknown(name, f"{where} is not a JSON object")
    if data.get("split", "test") != "test":
        return _unknown(name, f"{where} holds the {data.get('split')!r} split, not test")
    per = data.get("per_source")
    if not isinstance(per, Mapping) or not per:
        return _unknown(name, f"{where} has no per-source metrics")
    aucs: dict[str, float] = {}
    for src, m in per.items():
        v = m.get("roc_auc") if isinstance(m, Mapping) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            return _unknown(name, f"{where} has no valid test ROC AUC for source {src!r}")
        aucs[str(src)] = float(v)
    pooled = data.get("pooled")
    pooled_auc = pooled.get("roc_auc") if isinstance(pooled, Mapping) else None
    pooled_auc = float(pooled_auc) if isinstance(pooled_auc, (int, float)) and math.isfinite(pooled_auc) else None
    n = data.get("n_scored", data.get("n_images"))
    return Reliability(name=name, test_auc=aucs, weak=any(a < WEAK_AUC for a in aucs.values()), known=True,
                       pooled_auc=pooled_auc, n_test=int(n) if isinstance(n, int) else None)


def reliability(name: str) -> Reliability:
    """Reliability of detector ``name`` from ``<checkpoint folder>/<name>/metrics.json``. Never raises for a
    missing or corrupt file (unknown reliability, ``weak=True``); raises ``KeyError`` for an unknown detector."""
    from .specs import get_spec

    path = get_spec(name).local_dir / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return _unknown(name, f"no test metrics ({path} is missing)")
    except (OSError, ValueError) as e:
        return _unknown(name, f"{path} could not be read ({type(e).__name__})")
    return reliability_from_metrics(name, data, str(path))


def _rank_key(r: Reliability) -> tuple:
    if not r.known:
        return (1, 0.0, 0.0, r.name)
    return (0, -(r.min_auc or 0.0), -(r.mean_auc or 0.0), r.name)


def ranked(names: Iterable[str] | None = None) -> list[str]:
    """Detector names, most reliable first (default: every detector in ``SPECS``).

    Key: the *minimum* over sources of the test AUC, ties broken by the mean, then the name. The minimum, not the
    mean, because a user does not know which kind of fake they hold, so the guarantee is the worst source; it is
    also the quantity the ``weak`` tag tests, so a weak detector never outranks a non-weak one, and a high GAN-face
    AUC cannot hide a weak video-face-swap AUC (the sources differ in size by 13x, so a pooled or mean figure is
    dominated by one of them). Detectors with unknown reliability come last, in the order given.
    """
    from .specs import SPECS

    names = list(SPECS) if names is None else list(names)
    rels = {n: reliability(n) for n in names}
    known = sorted((n for n in names if rels[n].known), key=lambda n: _rank_key(rels[n]))
    return known + [n for n in names if not rels[n].known]


@dataclass(frozen=True)
class DefaultChoice:
    """The detector to preselect and explain by default, and why."""

    name: str
    all_weak: bool  #: True when no detector passes WEAK_AUC (the best weak one was chosen)
    reason: str


def default_detector(names: Iterable[str] | None = None) -> DefaultChoice:
    """The most reliable non-weak detector; if every detector is weak (or unknown), the best of them, saying so."""
    order = ranked(names)
    if not order:
        raise ValueError("no detectors to choose from")
    rels = [reliability(n) for n in order]
    for r in rels:
        if not r.weak:
            return DefaultChoice(r.name, False, f"{r.name} is the most reliable detector (worst-source test AUC "
                                                f"{r.min_auc:.2f})")
    best = rels[0]
    if best.known:
        why = (f"every detector is weak (test AUC below {WEAK_AUC:.2f} on some source); {best.name} is the best of "
               f"them (worst-source test AUC {best.min_auc:.2f}), so treat its verdicts as indications only")
    else:
        why = f"no detector has usable test metrics; {best.name} was chosen by order only ({best.reason})"
    return DefaultChoice(best.name, True, why)


# --- out-of-range inputs -------------------------------------------------------------------------------------

#: Images with a side under this many pixels are refused (see :func:`input_refusal`).
MIN_IMAGE_SIDE: int = 64

NO_FACE_WARNING = "no face detected: this score is not meaningful"


def input_refusal(image_size: Sequence[int]) -> str | None:
    """The message refusing an image with a side under :data:`MIN_IMAGE_SIDE` px, or ``None`` if it is accepted.

    Refused rather than scored with a warning: the detectors look for fine texture (blending seams, GAN
    up-sampling patterns, compression traces) in 224-256 px training crops; under 64 px that detail does not exist,
    and the enlarged image is scored on interpolation artefacts, so the number would carry no information about
    the image (a 20x20 picture was scored "fake 0.75"). A warning next to such a number still anchors the reader.
    """
    w, h = (int(v) for v in image_size[:2])
    if min(w, h) < MIN_IMAGE_SIDE:
        return (f"The image is {w}x{h} px; images under {MIN_IMAGE_SIDE} px on a side are not scored, because "
                f"the detectors need the fine texture of a larger face (they were trained on 224-256 px crops).")
    return None


def input_warnings(image_size: Sequence[int], face_box: Sequence[int] | None, spec: "ModelSpec",
                   face_found: bool | None, whole_image: bool) -> list[str]:
    """Warnings to show beside a verdict (empty when none).

    ``image_size`` is ``(width, height)`` of the uploaded image, ``face_box`` the ``(x, y, w, h)`` face analysed
    (``None`` in whole-image mode), ``face_found`` whether face detection found a face (``None``: not run),
    ``whole_image`` whether the user asked to analyse the whole image. Cases:

    * a face (or, in whole-image mode, the image's shorter side) smaller than ``spec.input_size``: it was
      enlarged to the detector's input, which blurs the texture detectors rely on;
    * whole-image mode without a face: :data:`NO_FACE_WARNING` (and if detection was not run, a softer note);
    * an image under :data:`MIN_IMAGE_SIDE`: the refusal message too, in case a caller scores it anyway.
    """
    out: list[str] = []
    refusal = input_refusal(image_size)
    if refusal:
        out.append(refusal)
    side = spec.input_size
    if not whole_image and face_box is not None:
        fw, fh = int(face_box[2]), int(face_box[3])
        if max(fw, fh) < side:
            out.append(f"The face is only {fw}x{fh} px, smaller than this detector's {side} px input: it was "
                       f"enlarged, which blurs the fine detail detectors rely on. Treat the score with caution.")
    if whole_image:
        if face_found is False:
            out.append(NO_FACE_WARNING)
        elif face_found is None:
            out.append("Whole image scored without face detection: the score means something only if the image "
                       "is a close-up of one face.")
        w, h = (int(v) for v in image_size[:2])
        if min(w, h) < side and not refusal:
            out.append(f"The image is {w}x{h} px, smaller than this detector's {side} px input: it was enlarged, "
                       f"which blurs the fine detail detectors rely on. Treat the score with caution.")
    return out


# --- faithfulness ---------------------------------------------------------------------------------------------

#: A map whose faithfulness score beats a random map's by at least this much reads "good".
GOOD_MARGIN: float = 0.15
#: ... by at least this much (and less than GOOD_MARGIN) "fair"; anything less "poor".
FAIR_MARGIN: float = 0.05


def faithfulness_reading(score: float, random_baseline_score: float) -> tuple[str, str]:
    """``(label, sentence)``: ``"good"``, ``"fair"``, ``"poor"`` (or ``"unknown"``) for a faithfulness score.

    The score is :func:`explainers.faithfulness.deletion_insertion`'s ``score`` = insertion AUC - deletion AUC of
    the target probability as the map's most important pixels are removed / restored. Both AUCs are in [0, 1], so
    the score is in **[-1, 1]**: higher means removing what the map marks changes the verdict more. Its level
    depends on the image and the detector (how far blurring the whole face moves the probability), so it is judged
    against ``random_baseline_score``, the score of a random map on the same image and detector: margin >=
    :data:`GOOD_MARGIN` is good, >= :data:`FAIR_MARGIN` fair, below that (including worse than random) poor. The
    margins are a judgement, a sizeable share of the [-1, 1] range, not a statistical test.
    """
    s, r = float(score), float(random_baseline_score)
    if not (math.isfinite(s) and math.isfinite(r)):
        return "unknown", "Faithfulness could not be measured for this map."
    margin = s - r
    label = "good" if margin >= GOOD_MARGIN else "fair" if margin >= FAIR_MARGIN else "poor"
    meaning = {
        "good": "removing the pixels this map highlights changes the verdict much more than removing random pixels",
        "fair": "removing the pixels this map highlights changes the verdict somewhat more than removing random "
                "pixels",
        "poor": "removing the pixels this map highlights changes the verdict no more than removing random pixels "
                "would, so the map may not show what the detector used",
    }[label]
    return label, (f"Faithfulness {s:.2f} (range -1 to 1, higher is better; a random map scores {r:.2f} on this "
                   f"image): {label}: {meaning}.")
