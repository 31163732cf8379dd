"""Explainer base class, the :class:`Attribution` result and the method registry.

Every method lives in its own module and subclasses :class:`Explainer`, implementing
``_explain``. The base class does what all methods share: it checks that the optional
library is importable (else :class:`ExplainerUnavailable`), merges parameters with the
method's defaults, picks the target (argmax) when none is given, runs with gradients
enabled and the model in eval mode (restoring its mode afterwards), times the call and
turns the raw result into a float32 ``(H, W)`` map.

The registry is the only list of methods: each class states its display position
(``display_order``), its relative cost (``run_cost``: the panel runs cheap methods
first) and the UI range of each tunable parameter (``tunables``). ``METHOD_ORDER``,
the panel's run order, the app's sliders and the API's parameter checks are all
derived from them, so a new method is one module (plus its import in
``explainers/__init__.py``, which registers it).
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from detector.errors import DetectorError

__all__ = ["Attribution", "Explainer", "ExplainerUnavailable", "RawAttribution", "Tunable", "register",
           "unregister", "get_explainer", "list_explainers", "run_order", "explain", "METHOD_ORDER", "norm_stats",
           "resolve_module", "scoring_autocast", "scoring_precision"]

#: Display order of the registered methods (by ``Explainer.display_order``); kept up to date by
#: :func:`register`. The panel computes cheap ones first (:func:`run_order`).
METHOD_ORDER: list[str] = []

#: pip names for import names that differ.
_PIP_NAMES = {"skimage": "scikit-image", "sklearn": "scikit-learn"}

#: Normalisation assumed when no spec is given (tiny test models).
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class Tunable:
    """A numeric parameter users may change (a slider in the UI, a key in the API's parameters)."""

    key: str  #: parameter name in ``default_params``, e.g. ``"n_steps"``
    label: str  #: slider label, e.g. "Integrated Gradients: steps"
    minimum: int
    maximum: int

    def clamp(self, value: Any) -> int:
        """``value`` as an int within [minimum, maximum]; ``InputError`` if it is not a number."""
        from detector.errors import InputError

        try:
            return int(min(max(float(value), self.minimum), self.maximum))
        except (TypeError, ValueError):
            raise InputError(f"{self.label} must be a number, got {value!r}.", "bad_param") from None


class ExplainerUnavailable(DetectorError):
    """An explanation method cannot run because an optional package is missing."""

    code = "explainer_unavailable"


@dataclass
class Attribution:
    """One attribution map and how it was made."""

    method: str
    map: np.ndarray  #: float32 (H, W); positive = evidence FOR ``target``
    target: int
    params: dict
    runtime_s: float
    notes: list[str] = field(default_factory=list)
    signed: bool = True  #: False for inherently non-negative maps (saliency, ReLU'd Grad-CAM)
    extra: dict = field(default_factory=dict)


@dataclass
class RawAttribution:
    """What a method's ``_explain`` returns; the base class turns it into an :class:`Attribution`."""

    map: Any  #: torch.Tensor or np.ndarray, (H, W) after squeezing leading singleton dims
    signed: bool = True
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _importable(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def norm_stats(spec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the input normalisation: the spec's, else mean 0.5 / std 0.25."""
    if spec is None:
        return DEFAULT_MEAN, DEFAULT_STD
    return tuple(spec.mean), tuple(spec.std)


def norm_tensors(spec, x):
    """:func:`norm_stats` as (1, C, 1, 1) tensors on ``x``'s device and dtype."""
    import torch

    mean, std = norm_stats(spec)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return m, s


def resolve_module(model, path: str):
    """The sub-module at dotted ``path`` (e.g. ``features.relu4_2``); ``ValueError`` if absent."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ValueError(f"the model has no layer {path!r}") from None


def scoring_precision(device) -> str:
    """``"bf16"`` or ``"fp32"``: the precision of forward-only scoring passes on ``device``.

    LIME only reads p(target) from many perturbed forward passes, so where bf16 is native
    (CUDA, CPUs with AVX512-BF16/AMX) they run under bf16 autocast: about 2x faster for
    EfficientNet-Lite0's LIME on this project's 2-core CPU, with maps that correlate with the
    fp32 map more closely than two fp32 seeds do (``python -m explainers.bench --model NAME
    --bf16-check``). Gradient methods, the faithfulness curves (bf16 moved their scores by up
    to 0.07) and the verdict stay fp32. ``DEEPFAKE_EXPLAIN_BF16`` = ``auto`` / ``1`` / ``0``.
    """
    from detector.hardware import fast_bf16
    from detector.settings import current

    mode = current().explain_bf16
    kind = str(device).split(":")[0]
    if kind not in ("cpu", "cuda"):
        return "fp32"
    if mode == "on" or (mode == "auto" and fast_bf16(kind)):
        return "bf16"
    return "fp32"


@contextlib.contextmanager
def scoring_autocast(device, precision: str | None = None) -> Iterator[str]:
    """bf16 autocast around forward-only scoring passes; yields the precision used.

    ``precision`` (``"bf16"``/``"fp32"``) is what a caller resolved once with
    :func:`scoring_precision` for a whole explanation, so every batch and the note agree;
    ``None`` asks :func:`scoring_precision` now."""
    import torch

    prec = precision or scoring_precision(device)
    if prec not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', not {prec!r}")
    if prec == "bf16":
        with torch.autocast(str(device).split(":")[0], dtype=torch.bfloat16):
            yield prec
    else:
        yield prec


@contextlib.contextmanager
def _autograd_ready(model) -> Iterator[None]:
    """Gradients on (even inside ``no_grad``/``inference_mode``), model in eval mode; both restored."""
    import torch

    was_training = model.training
    try:
        with torch.inference_mode(False), torch.enable_grad():
            model.eval()
            yield
    finally:
        model.train(was_training)


class Explainer:
    """Base class of all explanation methods; see the module docstring."""

    name: str = ""
    display_name: str = ""
    meaning: str = ""  #: one sentence for end users: what the map shows
    default_params: dict = {}  #: our fast defaults
    library_defaults: dict = {}  #: the library's documented defaults (used by the benchmark)
    requires: tuple[str, ...] = ()  #: import names of optional packages
    display_order: int = 1000  #: position in tabs, reports and galleries (lower first)
    run_cost: int = 1000  #: relative cost; the panel runs cheaper methods first so the first map comes fast
    tunables: tuple[Tunable, ...] = ()  #: parameters exposed in the UI ("Advanced") and checked in the API

    def missing(self) -> list[str]:
        """Import names in ``requires`` that cannot be imported."""
        return [r for r in self.requires if not _importable(r)]

    def available(self) -> bool:
        """True when every package in ``requires`` is importable (nothing is imported)."""
        return not self.missing()

    def check_available(self) -> None:
        """Raise :class:`ExplainerUnavailable` naming the first missing package."""
        missing = self.missing()
        if missing:
            pkg = missing[0]
            pip = _PIP_NAMES.get(pkg, pkg)
            raise ExplainerUnavailable(f"{self.display_name} needs the '{pkg}' package: pip install {pip}")

    def explain(self, model, x, target: int | None = None, spec=None, **params) -> Attribution:
        """Attribution map of ``model``'s ``target`` logit for the normalised input ``x`` (1, 3, H, W)."""
        import torch

        self.check_available()
        known = set(self.default_params) | set(self.library_defaults)
        unknown = sorted(set(params) - known)
        if unknown:
            raise TypeError(f"{self.display_name}: unknown parameter(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        p = {**self.default_params, **params}
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"expected a tensor of shape (1, C, H, W), got {getattr(x, 'shape', type(x))}")
        t0 = time.perf_counter()
        with _autograd_ready(model):
            x = x.detach().clone().float()
            if target is None:
                with torch.no_grad():
                    target = int(model(x).argmax(1)[0])
            target = int(target)
            try:
                raw = self._explain(model, x, target, spec, p)
            except ImportError as e:  # a broken install of an optional package
                top = (getattr(e, "name", None) or "").split(".")[0]
                if top in self.requires:
                    pip = _PIP_NAMES.get(top, top)
                    raise ExplainerUnavailable(f"{self.display_name} needs the '{top}' package: pip install {pip} "
                                               f"({e})") from None
                raise
        h, w = x.shape[-2:]
        amap, notes = _to_map(raw.map, h, w)
        return Attribution(method=self.name, map=amap, target=target, params=p,
                           runtime_s=time.perf_counter() - t0, notes=list(raw.notes) + notes,
                           signed=bool(raw.signed), extra=dict(raw.extra))

    def _explain(self, model, x, target: int, spec, params: dict) -> RawAttribution:  # pragma: no cover
        raise NotImplementedError


def _to_map(m, h: int, w: int) -> tuple[np.ndarray, list[str]]:
    """float32 (h, w) array from a tensor/array with optional leading singleton dims."""
    if hasattr(m, "detach"):
        m = m.detach().float().cpu().numpy()
    m = np.asarray(m, dtype=np.float32)
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.shape != (h, w):
        raise RuntimeError(f"attribution map has shape {m.shape}, expected {(h, w)}")
    notes = []
    bad = ~np.isfinite(m)
    if bad.any():
        notes.append(f"{int(bad.sum())} non-finite values in the map were set to 0.")
        m = np.where(bad, 0.0, m).astype(np.float32)
    return np.ascontiguousarray(m), notes


_REGISTRY: dict[str, Explainer] = {}


def _reorder() -> None:
    METHOD_ORDER[:] = sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].display_order, n))


def register(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    for t in cls.tunables:
        if t.key not in cls.default_params:
            raise ValueError(f"{cls.__name__}: tunable {t.key!r} has no default in default_params")
    _REGISTRY[cls.name] = cls()
    _reorder()
    return cls


def unregister(name: str) -> None:
    """Remove method ``name`` from the registry (tests that register a throwaway method)."""
    _REGISTRY.pop(name, None)
    _reorder()


def get_explainer(name: str) -> Explainer:
    """The registered explainer called ``name``; ``KeyError`` listing the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown explanation method {name!r}; known: {', '.join(list_explainers())}") from None


def list_explainers() -> list[str]:
    """Registered method names in display order."""
    return list(METHOD_ORDER)


def run_order(methods: list[str] | None = None) -> list[str]:
    """``methods`` (default: all registered) in computation order: cheapest ``run_cost`` first.

    Unknown names keep their place at the end (the panel reports them as errors).
    """
    wanted = list_explainers() if methods is None else list(methods)
    known = sorted((m for m in wanted if m in _REGISTRY), key=lambda m: (_REGISTRY[m].run_cost, m))
    return known + [m for m in wanted if m not in _REGISTRY]


def explain(name: str, model, x, target: int | None = None, spec=None, **params) -> Attribution:
    """Shortcut for ``get_explainer(name).explain(model, x, target, spec, **params)``."""
    return get_explainer(name).explain(model, x, target=target, spec=spec, **params)
