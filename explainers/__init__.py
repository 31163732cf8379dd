"""Explanations of the detectors' verdicts: six attribution methods behind one interface.

``explain(name, model, x, target=None, spec=None, **params) -> Attribution`` runs one
method; :func:`explainers.panel.iter_panel` streams all of them with overlays and
faithfulness scores; :mod:`explainers.render` draws overlays; ``python -m
explainers.bench`` times our fast defaults against the libraries' defaults. Heavy
libraries (captum, zennit, shap, lime) are imported only when a method runs.
"""
from .base import (METHOD_ORDER, Attribution, Explainer, ExplainerUnavailable, Tunable, explain, get_explainer,
                   list_explainers, register, run_order, unregister)
from . import saliency, gradcam, lrp, integrated_gradients, shap_method, lime_method  # noqa: E402,F401  (register)

__all__ = ["Attribution", "Explainer", "ExplainerUnavailable", "Tunable", "register", "unregister", "get_explainer",
           "list_explainers", "run_order", "explain", "METHOD_ORDER"]
