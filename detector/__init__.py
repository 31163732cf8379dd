"""Deepfake face detectors: specs, preprocessing, weights, prediction, training."""
from .errors import DetectorError, InputError, NoFaceError, WeightsError
from .specs import LABELS, SPECS, ModelSpec, get_spec, list_specs

__all__ = ["DetectorError", "InputError", "NoFaceError", "WeightsError", "LABELS", "SPECS", "ModelSpec",
           "get_spec", "list_specs"]
