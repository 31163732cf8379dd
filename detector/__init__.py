"""Deepfake face detectors: settings, specs, preprocessing, weights, prediction, training.

Library modules: ``settings``, ``specs``, ``models``, ``preprocess``, ``weights``, ``predict``
(``predict``/``predict_batch``), ``data``, ``metrics``, ``augment``, ``errors``. Command-line
modules (``python -m detector.NAME --help``; each exposes ``main(argv) -> exit status``):
``predict``, ``evaluate``, ``train``, ``bench``, ``card``, ``publish``, ``vggface_convert``,
``facestats``, ``make_examples``, and ``settings`` (prints the configuration table).
"""
from .errors import DetectorError, InputError, NoFaceError, WeightsError
from .specs import LABELS, SPECS, ModelSpec, get_spec, list_specs

__all__ = ["DetectorError", "InputError", "NoFaceError", "WeightsError", "LABELS", "SPECS", "ModelSpec",
           "get_spec", "list_specs"]
