"""Run several explanation methods and stream each result as soon as it is ready.

Methods run one after the other (the CPU is the bottleneck; threads would not make the
first map arrive sooner), cheapest first (:func:`explainers.base.run_order`, from each
method's ``run_cost``): the single-pass gradient methods first (the first map is ready
after about one backward pass), then Integrated Gradients, SHAP and LIME. Each result carries its overlay and, optionally, its deletion/insertion
faithfulness. A method that fails (missing package, out of memory, any error) yields a
result with a clear one-line ``error`` and the others still run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from detector.errors import DetectorError

from .base import Attribution, get_explainer, run_order
from .faithfulness import deletion_insertion, random_map
from .render import overlay

__all__ = ["PanelResult", "iter_panel", "FAITHFULNESS_STEPS", "error_message"]

log = logging.getLogger(__name__)

#: Deletion/insertion resolution in the panel (2 * steps forward passes per method).
FAITHFULNESS_STEPS: int = 8


@dataclass
class PanelResult:
    """One method's outcome in the panel."""

    method: str
    display_name: str
    attribution: Attribution | None
    overlay: np.ndarray | None  #: uint8 RGB from :func:`explainers.render.overlay`
    faithfulness: dict | None
    error: str | None  #: one line for the user when the method failed
    #: True for a preview: the map is drawn, its faithfulness score follows in a second result.
    pending: bool = False


def error_message(display_name: str, exc: BaseException) -> str:
    """A one-line, user-facing message for ``exc`` (no stack trace)."""
    if isinstance(exc, DetectorError):
        return exc.message
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return (f"{display_name} ran out of memory; try a smaller setting for it (fewer samples or steps) "
                "or run it on the CPU.")
    if isinstance(exc, MemoryError):
        return f"{display_name} ran out of memory; try fewer samples or steps."
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{display_name} failed: {type(exc).__name__}: {text}"


def random_baseline(model, x, target: int, temperature: float = 1.0, labels=None) -> dict:
    """Faithfulness of a seeded random map on the same image and detector (what a map must beat)."""
    h, w = x.shape[-2:]
    return deletion_insertion(model, x, random_map((h, w)), target, steps=FAITHFULNESS_STEPS, labels=labels,
                              temperature=temperature)


def iter_panel(model, x, face: np.ndarray, target: int, spec=None, methods: list[str] | None = None,
               params: dict[str, dict] | None = None, faithfulness: bool = True,
               preview_first: bool = False, temperature: float = 1.0) -> Iterator[PanelResult]:
    """Yield one :class:`PanelResult` per method as soon as it is computed (cheap methods first).

    With ``preview_first``, the first map that is drawn is also yielded before its
    faithfulness score is computed (``pending=True``), then again complete: on a large
    network the deletion/insertion passes cost more than the map itself, and the first
    map should appear at once. ``temperature`` calibrates the faithfulness probabilities as
    the verdict's are. Each faithfulness record also holds ``random_score`` (a seeded random
    map's score on the same input, computed once per call) and ``reading``/``reading_text``
    (:func:`detector.reliability.faithfulness_reading`).
    """
    from detector.reliability import faithfulness_reading

    params = params or {}
    previewed = False
    baseline: list[float] = []
    labels = tuple(spec.label_names) if spec is not None else None
    target_label = labels[target] if labels and 0 <= target < len(labels) else None
    for name in run_order(methods):
        try:
            explainer = get_explainer(name)
            display = explainer.display_name
        except KeyError as e:
            yield PanelResult(name, name, None, None, None, str(e.args[0]))
            continue
        try:
            attr = explainer.explain(model, x, target=target, spec=spec, **params.get(name, {}))
        except Exception as e:  # one failing method must not stop the others
            log.warning("explainer %s failed", name, exc_info=True)
            yield PanelResult(name, display, None, None, None, error_message(display, e))
            continue
        try:
            ov = overlay(face, attr.map, attr.signed, title=display, target_label=target_label)
        except Exception as e:
            log.warning("overlay for %s failed", name, exc_info=True)
            yield PanelResult(name, display, attr, None, None, error_message(f"{display} overlay", e))
            continue
        faith = None
        if faithfulness and preview_first and not previewed:
            previewed = True
            yield PanelResult(name, display, attr, ov, None, None, pending=True)
        if faithfulness:
            try:
                faith = deletion_insertion(model, x, attr.map, target, steps=FAITHFULNESS_STEPS, labels=labels,
                                           temperature=temperature)
                if not baseline:
                    baseline.append(random_baseline(model, x, target, temperature, labels)["score"])
                label, sentence = faithfulness_reading(faith["score"], baseline[0])
                faith.update({"random_score": baseline[0], "reading": label, "reading_text": sentence})
            except Exception as e:
                log.warning("faithfulness for %s failed", name, exc_info=True)
                attr.notes.append(error_message("Faithfulness check", e))
        yield PanelResult(name, display, attr, ov, faith, None)
