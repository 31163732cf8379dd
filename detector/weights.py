"""Weight loading and saving in timm's Hub format (``config.json`` + ``model.safetensors``).

One loader serves ``hf-hub:ORG/NAME`` and local folders. Where weights come from is
configuration, never user input:

* ``DEEPFAKE_HUB_ORG=org``: load ``org/<detector name>`` from the Hub for every detector;
* ``DEEPFAKE_HUB_REPO_<NAME>=org/repo`` (e.g. ``DEEPFAKE_HUB_REPO_CUSTOM_CNN``): one detector;
* neither: the local ``checkpoints/<name>/`` folder (``DEEPFAKE_CHECKPOINTS`` moves it).

A configured Hub that does not answer within ``DEEPFAKE_HUB_TIMEOUT`` seconds (default 5)
is given up on for the rest of the process (until :func:`clear_cache`) and the local
folder is used; the result says which source was used. A timeout or connection failure
marks the whole Hub endpoint as down, so the other detectors do not each wait for it.
Only safetensors are read: pickle files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``,
``.pickle``) are refused. Missing or corrupt weights raise :class:`WeightsError` naming
the detector and the path; random weights are never substituted.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WeightsError
from .settings import current
from .specs import LABELS, SPECS, ModelSpec, get_spec

__all__ = ["LoadedModel", "WEIGHTS_FILE", "CONFIG_FILE", "PICKLE_SUFFIXES", "pick_device", "hub_repo_for",
           "load_model", "hub_failures", "load_checkpoint_dir", "save_checkpoint", "weights_status", "clear_cache", "build_config"]

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class LoadedModel:
    """A detector ready for inference."""

    model: Any  #: torch.nn.Module in eval mode on ``device``
    spec: ModelSpec
    config: dict
    source: str  #: e.g. "local:checkpoints/custom_cnn" or "hub:org/custom_cnn"
    device: str
    temperature: float = 1.0
    notes: list[str] = field(default_factory=list)


def pick_device(requested: str | None = None) -> str:
    """``requested`` or ``$DEEPFAKE_DEVICE`` if set, else CUDA, then MPS, then CPU."""
    import torch

    want = requested or current().device
    if want:
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise WeightsError(f"Device {want!r} was requested but CUDA is not available.")
        return want
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def hub_repo_for(spec: ModelSpec) -> str | None:
    """The Hub repo configured for ``spec`` (per-model variable, then org, then spec default)."""
    return current().hub_repo(spec.name) or spec.hub_repo


def _register() -> None:
    from . import models  # noqa: F401  (registers custom_cnn and vggface16 with timm)


def build_config(spec: ModelSpec, temperature: float = 1.0, extra: dict | None = None) -> dict:
    """A timm Hub ``config.json`` dict for ``spec``."""
    cfg = {
        "architecture": spec.architecture,
        "num_classes": spec.num_classes,
        "num_features": None,
        "label_names": list(spec.label_names),
        "pretrained_cfg": {
            "input_size": [3, spec.input_size, spec.input_size],
            "interpolation": "bilinear",
            "mean": list(spec.mean),
            "std": list(spec.std),
            "crop_pct": 1.0,
            "num_classes": spec.num_classes,
        },
        "temperature": float(temperature),
        "detector": spec.name,
    }
    if extra:
        cfg.update(extra)
    return cfg


def save_checkpoint(model, spec: ModelSpec, out_dir: str | Path, temperature: float = 1.0,
                    extra: dict | None = None, fp16: bool = True) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (fp16 storage by default) to ``out_dir``."""
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if fp16 and v.is_floating_point():
            v = v.to(torch.float16)
        sd[k] = v
    cfg = build_config(spec, temperature, extra)
    cfg["num_features"] = getattr(model, "num_features", None)
    if getattr(model, "model_args", None):
        cfg["model_args"] = dict(model.model_args)
    save_file(sd, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def _check_folder(name: str, folder: Path) -> tuple[Path, Path]:
    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise WeightsError(f"No weights for detector '{name}': folder {folder} does not exist. "
                           f"Train it with `python -m detector.train --model {name} ...` or configure a Hub repo.")
    if not w_path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise WeightsError(f"Refusing to load pickle file(s) {', '.join(pickles)} for detector '{name}' in {folder}: "
                               f"only {WEIGHTS_FILE} (safetensors) is accepted, because unpickling can run code.")
        raise WeightsError(f"No weights for detector '{name}': {w_path} is missing.")
    if not cfg_path.is_file():
        raise WeightsError(f"Detector '{name}': {cfg_path} is missing.")
    return cfg_path, w_path


def read_config(name: str, folder: Path) -> dict:
    """Parse and validate ``config.json`` in ``folder`` (raises :class:`WeightsError`)."""
    cfg_path, _ = _check_folder(name, folder)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"Detector '{name}': {cfg_path} is not valid JSON ({e}).") from None
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise WeightsError(f"Detector '{name}': {cfg_path} has no 'architecture' field.")
    return cfg


def load_checkpoint_dir(folder: str | Path, spec: ModelSpec | None = None, device: str = "cpu"):
    """Build the model named in ``folder/config.json`` and load ``model.safetensors`` into it.

    Returns ``(model, config)``; the model is float32, in eval mode, on ``device``.
    """
    import timm
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _register()
    folder = Path(folder)
    name = spec.name if spec else folder.name
    cfg = read_config(name, folder)
    arch = cfg["architecture"]
    if not timm.is_model(arch):
        raise WeightsError(f"Detector '{name}': {folder / CONFIG_FILE} names unknown architecture {arch!r}.")
    if spec and arch != spec.architecture:
        raise WeightsError(f"Detector '{name}': {folder / CONFIG_FILE} names architecture {arch!r}, "
                           f"expected {spec.architecture!r}.")
    labels = cfg.get("label_names")
    if labels is not None and tuple(labels) != (spec.label_names if spec else LABELS):
        raise WeightsError(f"Detector '{name}': label_names {labels} in {folder / CONFIG_FILE} do not match "
                           f"the expected order {list(spec.label_names if spec else LABELS)}.")
    size = (cfg.get("pretrained_cfg") or {}).get("input_size")
    if spec and size is not None and list(size)[-2:] != [spec.input_size, spec.input_size]:
        raise WeightsError(f"Detector '{name}': {folder / CONFIG_FILE} was trained at input size {list(size)[-2:]}, "
                           f"but the detector's spec preprocesses to {spec.input_size}x{spec.input_size}; "
                           f"change the spec's input_size or retrain at {spec.input_size} px.")
    w_path = folder / WEIGHTS_FILE
    try:
        sd = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"Detector '{name}': {w_path} is corrupt or truncated ({e}).") from None
    model_args = cfg.get("model_args") or {}
    if not isinstance(model_args, dict):
        raise WeightsError(f"Detector '{name}': model_args in {folder / CONFIG_FILE} is not an object.")
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=int(cfg.get("num_classes", 2)), **model_args)
    except TypeError as e:
        raise WeightsError(f"Detector '{name}': {folder / CONFIG_FILE} has model_args {model_args} that "
                           f"{arch!r} does not take ({e}).") from None
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"Detector '{name}': {w_path} does not fit architecture {arch!r} ({str(e)[:300]}).") from None
    # channels-last weights make every convolution run in the NHWC layout that oneDNN and cuDNN
    # prefer (inputs may stay NCHW): on the 2-core CPU, EfficientNet-Lite0's batched forward
    # takes 30 instead of 67 ms an image, and the other detectors gain 3-25% (docs/channels_last.txt).
    model.eval().to(device=device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, cfg


_hub_failed: dict[str, str] = {}
#: Reason of the timeout/connection failure, per Hub endpoint (until :func:`clear_cache`).
_hub_down: dict[str, str] = {}


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _endpoint_down() -> str | None:
    """Why the Hub endpoint is considered down, or ``None``."""
    return _hub_down.get(_endpoint())


def _is_network_failure(e: BaseException) -> bool:
    names = {c.__name__ for c in type(e).__mro__}
    return isinstance(e, (TimeoutError, ConnectionError)) or bool(
        names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError",
                 "LocalEntryNotFoundError", "OfflineModeIsEnabled"})
_hub_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hub")


def _hub_snapshot(repo: str, timeout: float) -> Path:
    """Download (or take from the local HF cache) the repo's config + safetensors."""
    from huggingface_hub import snapshot_download

    fut = _hub_pool.submit(snapshot_download, repo_id=repo, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, "README.md"],
                           cache_dir=os.environ.get("HF_HUB_CACHE") or None)
    try:
        return Path(fut.result(timeout=timeout))
    except FutureTimeout:
        raise TimeoutError(f"no answer from the Hub within {timeout:g} s") from None


def _resolve(spec: ModelSpec, device: str) -> LoadedModel:
    notes: list[str] = []
    repo = hub_repo_for(spec)
    down = _endpoint_down() if repo else None
    if repo and down and repo not in _hub_failed:
        _hub_failed[repo] = f"the Hub did not answer earlier: {down}"[:300]
    if repo and repo not in _hub_failed:
        timeout = current().hub_timeout
        try:
            folder = _hub_snapshot(repo, timeout)
            model, cfg = load_checkpoint_dir(folder, spec, device)
            return LoadedModel(model, spec, cfg, f"hub:{repo}", device, float(cfg.get("temperature", 1.0)), notes)
        except WeightsError:
            raise
        except Exception as e:  # network, missing repo, offline without cache...
            _hub_failed[repo] = f"{type(e).__name__}: {e}"[:300]
            if _is_network_failure(e):
                _hub_down[_endpoint()] = _hub_failed[repo]
            log.warning("Hub repo %s unavailable (%s); using local checkpoints", repo, _hub_failed[repo])
    if repo:
        notes.append(f"Hub repo {repo} unavailable ({_hub_failed[repo]}); using local weights.")
    folder = spec.local_dir
    model, cfg = load_checkpoint_dir(folder, spec, device)
    try:
        shown = folder.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = folder
    return LoadedModel(model, spec, cfg, f"local:{shown}", device, float(cfg.get("temperature", 1.0)), notes)


_cache: dict[tuple[str, str], LoadedModel] = {}
_lock = threading.Lock()


def load_model(name: str, device: str | None = None) -> LoadedModel:
    """Load detector ``name`` (cached per (name, device)); raises :class:`WeightsError`."""
    spec = get_spec(name)
    dev = pick_device(device)
    key = (name, dev)
    with _lock:
        if key not in _cache:
            _cache[key] = _resolve(spec, dev)
        return _cache[key]


def clear_cache() -> None:
    """Forget loaded models and Hub failures (tests, config changes)."""
    with _lock:
        _cache.clear()
        _hub_failed.clear()
        _hub_down.clear()


def hub_failures() -> dict[str, str]:
    """Configured Hub repos that could not be used so far in this process, with the reason."""
    with _lock:
        return dict(_hub_failed)


def weights_status() -> dict[str, str | None]:
    """For each detector, ``None`` if its local weights look loadable, else the error text.

    Cheap: reads configs and file headers only, loads no model.
    """
    out: dict[str, str | None] = {}
    for name, spec in SPECS.items():
        try:
            read_config(name, spec.local_dir)
            out[name] = None
        except WeightsError as e:
            out[name] = e.message
    return out
