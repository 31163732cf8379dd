"""Which methods to run with which parameters, from the UI's sliders or the API's JSON.

Everything is derived from the explainer registry: the sliders are the registered
methods' ``tunables`` (:func:`sliders`), values are clamped to their ranges, and the
API's JSON object ``{method: {parameter: value}}`` accepts exactly those parameters.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from detector.errors import InputError

__all__ = ["Slider", "sliders", "slider_params", "method_params", "LEGACY_POSITIONAL"]

#: ``/explain``'s deprecated positional parameters (ig_steps, shap_samples, lime_samples), in order.
LEGACY_POSITIONAL: tuple[tuple[str, str], ...] = (("integrated_gradients", "n_steps"), ("shap", "nsamples"),
                                                  ("lime", "num_samples"))


@dataclass(frozen=True)
class Slider:
    """One tunable parameter of one method, as the UI shows it."""

    method: str
    tunable: Any  #: ``explainers.Tunable``
    default: int  #: the method's default value

    @property
    def elem_id(self) -> str:
        """The slider's HTML id (one tunable per method keeps the historical ``param-<method>``)."""
        return f"param-{self.method}"


def sliders() -> list[Slider]:
    """Every tunable parameter of every registered method, in display order."""
    from explainers import METHOD_ORDER, get_explainer

    out = []
    for m in METHOD_ORDER:
        ex = get_explainer(m)
        out += [Slider(m, t, int(ex.default_params[t.key])) for t in ex.tunables]
    return out


def _tunable(method: str, key: str) -> Any:
    from explainers import get_explainer

    for t in get_explainer(method).tunables:
        if t.key == key:
            return t
    return None


def slider_params(values: Sequence[Any], methods: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Per-method parameters from slider values in :func:`sliders` order (clamped; None/"" skipped)."""
    out: dict[str, dict[str, int]] = {}
    for s, v in zip(sliders(), values):
        if v is None or v == "" or (methods is not None and s.method not in methods):
            continue
        out.setdefault(s.method, {})[s.tunable.key] = s.tunable.clamp(v)
    return out


def _selected(methods: Any) -> Any:
    if isinstance(methods, str):
        text = methods.strip()
        if text.startswith(("{", "[")):
            try:
                return json.loads(text)
            except ValueError:
                raise InputError("methods is not valid JSON.", "bad_param") from None
        return [text] if text else []
    return methods


def method_params(methods: Any, legacy: Sequence[Any] = ()) -> tuple[list[str], dict[str, dict[str, int]]]:
    """``(methods in display order, parameters)`` from the API's ``methods`` argument.

    ``methods`` is either a JSON object ``{"shap": {"nsamples": 32}, "gradcam": {}}`` (run these
    methods with these parameters; the rest take their defaults) or, deprecated, a list of
    method names, whose parameters then come from ``legacy``: the positional values of
    :data:`LEGACY_POSITIONAL`. In the object form, unknown methods or parameters raise
    :class:`InputError`; the list form skips unknown names, as it always has.
    """
    from explainers import METHOD_ORDER

    chosen = _selected(methods)
    if chosen is None:
        chosen = []
    if isinstance(chosen, Mapping):
        names, given = list(chosen), chosen
    elif isinstance(chosen, (list, tuple)):
        names, given = list(chosen), None
    else:
        raise InputError("methods must be a list of method names or an object {method: {parameter: value}}.",
                         "bad_param")
    unknown = [m for m in names if m not in METHOD_ORDER]
    if unknown and given is not None:  # the deprecated list form has always skipped unknown names
        raise InputError(f"Unknown explanation method(s) {', '.join(map(str, unknown))}; choose from: "
                         f"{', '.join(METHOD_ORDER)}.", "bad_choice")
    ordered = [m for m in METHOD_ORDER if m in names]
    params: dict[str, dict[str, int]] = {}
    if given is None:
        for (m, key), v in zip(LEGACY_POSITIONAL, legacy):
            t = _tunable(m, key) if m in METHOD_ORDER else None
            if t is not None and v is not None and v != "":
                params[m] = {key: t.clamp(v)}
        return ordered, params
    for m in ordered:
        p = given[m] or {}
        if not isinstance(p, Mapping):
            raise InputError(f"Parameters of {m} must be an object, got {p!r}.", "bad_param")
        for key, v in p.items():
            t = _tunable(m, key)
            if t is None:
                from explainers import get_explainer

                known = ", ".join(x.key for x in get_explainer(m).tunables) or "none"
                raise InputError(f"{m} has no parameter {key!r}; tunable: {known}.", "bad_param")
            params.setdefault(m, {})[key] = t.clamp(v)
    return ordered, params
