"""Method selection and parameters from the UI sliders and the API (no server)."""
from __future__ import annotations

import pytest

from analysis.params import LEGACY_POSITIONAL, method_params, slider_params, sliders
from detector.errors import InputError


def test_sliders_come_from_the_registry():
    got = [(s.method, s.tunable.key, s.tunable.minimum, s.tunable.maximum, s.default) for s in sliders()]
    assert got == [("shap", "nsamples", 8, 1024, 16), ("lime", "num_samples", 16, 2000, 96),
                   ("integrated_gradients", "n_steps", 2, 128, 12)]
    assert slider_params([5000, "", 7.6]) == {"shap": {"nsamples": 1024}, "integrated_gradients": {"n_steps": 7}}


def test_legacy_positional_form():
    assert [m for m, _ in LEGACY_POSITIONAL] == ["integrated_gradients", "shap", "lime"]
    names, params = method_params(["gradcam", "shap", "occlusion"], (1, 16.0, None))
    assert names == ["shap", "gradcam"]  # display order; unknown names skipped as before
    assert params == {"integrated_gradients": {"n_steps": 2}, "shap": {"nsamples": 16}}
    with pytest.raises(InputError, match="SHAP: samples must be a number"):
        method_params(["shap"], (None, "many", None))


def test_json_object_form():
    names, params = method_params({"lime": {"num_samples": 10}, "saliency": {}, "gradcam": None}, (99, 99, 99))
    assert names == ["lime", "saliency", "gradcam"] and params == {"lime": {"num_samples": 16}}
    assert method_params('{"shap": {"nsamples": 32}}') == (["shap"], {"shap": {"nsamples": 32}})
    with pytest.raises(InputError, match="no parameter 'layer'; tunable: none"):
        method_params({"gradcam": {"layer": "features"}})
    with pytest.raises(InputError, match="Unknown explanation method"):
        method_params({"occlusion": {}})
    with pytest.raises(InputError, match="list of method names or an object"):
        method_params(3)
