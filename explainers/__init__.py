"""Explanations of the detectors' verdicts: attribution methods behind one interface, in one registry.

``explain(name, model, x, target=None, spec=None, **params) -> Attribution`` runs one
method; :func:`explainers.panel.iter_panel` streams all of them with overlays and
faithfulness scores; :mod:`explainers.render` draws overlays. Heavy libraries (captum,
zennit, shap, lime) are imported only when a method runs. A new method is a module with
a registered :class:`Explainer` subclass plus its import below.

Command-line modules: ``python -m explainers.bench`` (our fast defaults against the
libraries' defaults), ``explainers.make_grid`` (side-by-side grids), ``explainers.lime_segments``.
"""
from .base import (METHOD_ORDER, Attribution, Explainer, ExplainerUnavailable, Tunable, explain, get_explainer,
                   list_explainers, register, run_order, scoring_autocast, scoring_precision, unregister)
from . import saliency, gradcam, lrp, integrated_gradients, shap_method, lime_method  # noqa: E402,F401  (register)

__all__ = ["Attribution", "Explainer", "ExplainerUnavailable", "Tunable", "register", "unregister", "get_explainer",
           "list_explainers", "run_order", "explain", "METHOD_ORDER", "scoring_autocast", "scoring_precision"]
