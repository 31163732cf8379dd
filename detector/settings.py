"""One :class:`Settings` object for every environment variable the project reads.

Each setting is declared once below (variable, default, meaning); the README's
configuration table is generated from these declarations (``python -m
detector.settings`` prints it; a test checks that the README agrees). Nothing is
read at import time: :func:`current` builds the settings on first use and again only
when one of the variables changed (tests and tools that set variables at run time),
and the app builds one object at start-up and passes it down.

Not here: ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` / ``GRADIO_SHARE`` (read by
Gradio itself) and ``HF_*`` (read by ``huggingface_hub``).
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["Settings", "current", "markdown_table", "parse_size", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Variables whose change makes :func:`current` read the environment again.
_PREFIXES = ("DEEPFAKE_", "SPACES_ZERO_GPU")


def _setting(env: str, default: Any, doc: str, parse: Callable[[str], Any] = str, shown: str | None = None) -> Any:
    """A dataclass field read from ``env`` (parsed with ``parse``), documented by ``doc``."""
    meta = {"env": env, "doc": doc, "parse": parse, "shown": shown if shown is not None else str(default)}
    return field(default=default, metadata=meta)


def _opt(value: str) -> str | None:
    return value.strip() or None


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def _auto_flag(value: str) -> str:
    v = value.strip().lower()
    if v in ("auto", ""):
        return "auto"
    if v in ("1", "true", "yes", "on"):
        return "on"
    if v in ("0", "false", "no", "off"):
        return "off"
    raise ValueError(value)


def _mb(value: str) -> float:
    return float(value)


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def parse_size(value: str) -> int:
    """Bytes in a size written like Gradio's ``max_file_size`` (``"100mb"``, ``"512 kb"``; 1 kb = 1024 b)."""
    text = value.replace(" ", "").upper()
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0 or text[digits:] not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size like 100mb")
    return int(text[:digits]) * _SIZE_UNITS[text[digits:]]


def _size(value: str) -> str:
    parse_size(value)
    return value.strip()


@dataclass(frozen=True)
class Settings:
    """Every ``DEEPFAKE_*`` setting, parsed. Build with :meth:`from_env` or :func:`current`."""

    hub_org: str | None = _setting(
        "DEEPFAKE_HUB_ORG", None, "load every detector from `ORG/<name>` on the Hub (allow-list: only configured "
        "repos are ever loaded)", _opt, shown="none")
    hub_repos: tuple[tuple[str, str], ...] = _setting(
        "DEEPFAKE_HUB_REPO_<NAME>", (), "Hub repo for one detector, e.g. `DEEPFAKE_HUB_REPO_CUSTOM_CNN=org/repo`",
        shown="none")
    hub_timeout: float = _setting(
        "DEEPFAKE_HUB_TIMEOUT", 5.0, "seconds to wait for the Hub before using the local checkpoints (the failure "
        "is remembered, no retry storm)", float, shown="5")
    checkpoints: Path = _setting(
        "DEEPFAKE_CHECKPOINTS", REPO_ROOT / "checkpoints", "local checkpoint folder (`<folder>/<name>/config.json` "
        "+ `model.safetensors`)", Path, shown="`checkpoints/`")
    data: Path = _setting(
        "DEEPFAKE_DATA", REPO_ROOT.parent / "shared" / "datasets" / "faces", "dataset folder for `.ci/run`'s "
        "regression guard", Path, shown="`../shared/datasets/faces`")
    device: str | None = _setting(
        "DEEPFAKE_DEVICE", None, "`cpu`, `cuda`, `mps` (default: CUDA, then MPS, then CPU)", _opt, shown="best")
    max_pixels: int = _setting(
        "DEEPFAKE_MAX_PIXELS", 40_000_000, "decode limit against decompression bombs", int, shown="40,000,000")
    concurrency: int = _setting(
        "DEEPFAKE_CONCURRENCY", 2, "verdicts (`/predict`) served at once, beside one explanation", int)
    queue_size: int = _setting("DEEPFAKE_QUEUE_SIZE", 64, "requests the queue holds", int)
    max_file_size: str = _setting("DEEPFAKE_MAX_FILE_SIZE", "20mb", "upload limit")
    max_video_size: str = _setting("DEEPFAKE_MAX_VIDEO_SIZE", "100mb", "video file limit (`detector.video`)", _size)
    max_video_seconds: float = _setting(
        "DEEPFAKE_MAX_VIDEO_SECONDS", 120.0, "longest video analysed, seconds (`detector.video`)", float, shown="120")
    cache_entries: int = _setting("DEEPFAKE_CACHE_ENTRIES", 256, "entries of the in-memory result cache", int)
    cache_mb: float = _setting("DEEPFAKE_CACHE_MB", 256.0, "megabytes of the in-memory result cache", _mb,
                               shown="256")
    preload: bool = _setting(
        "DEEPFAKE_PRELOAD", True, "`0`: do not load the detectors and explainer libraries at start-up", _flag,
        shown="1")
    malloc_arenas: int = _setting(
        "DEEPFAKE_MALLOC_ARENAS", 2, "cap on glibc malloc arenas in the server (0 keeps glibc's default)", int)
    explain_bf16: str = _setting(
        "DEEPFAKE_EXPLAIN_BF16", "auto", "bf16 autocast for LIME's perturbed samples (forward-only): `auto` = on "
        "CUDA and on CPUs with AVX512-BF16/AMX, `1`, `0`; gradient methods, faithfulness scores and the verdict "
        "always run in fp32", _auto_flag)
    pretrained_cache: Path = _setting(
        "DEEPFAKE_PRETRAINED_CACHE", Path.home() / ".cache" / "deepfake-pretrained",
        "where pretrained (ImageNet) initial weights are kept", Path, shown="`~/.cache/deepfake-pretrained`")
    zero_gpu: bool = _setting(
        "SPACES_ZERO_GPU", False, "set by Hugging Face ZeroGPU Spaces: GPU-bound calls run under `@spaces.GPU`",
        lambda v: v.strip().lower() == "true", shown="unset")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``); a bad value raises ``ValueError`` naming it."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name.endswith("<NAME>"):
                prefix = name[: -len("<NAME>")]
                values[f.name] = tuple(sorted((k[len(prefix):].lower(), v) for k, v in env.items()
                                              if k.startswith(prefix) and v.strip()))
                continue
            raw = env.get(name)
            if raw is None or (raw.strip() == "" and f.metadata["parse"] is not _opt):
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not valid ({f.metadata['doc']})") from None
        return cls(**values)

    def hub_repo(self, name: str) -> str | None:
        """Hub repo configured for detector ``name``: its own variable, then the org, else None."""
        per_model = dict(self.hub_repos).get(name.lower())
        if per_model:
            return per_model
        return f"{self.hub_org}/{name}" if self.hub_org else None

    @property
    def max_video_bytes(self) -> int:
        """``max_video_size`` in bytes."""
        return parse_size(self.max_video_size)

    @property
    def cache_bytes(self) -> int:
        """``cache_mb`` in bytes."""
        return int(self.cache_mb * 1024 * 1024)


_lock = threading.Lock()
_current: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def _snapshot() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_PREFIXES)))


def current() -> Settings:
    """The process's settings: read on first use, re-read only if a ``DEEPFAKE_*`` variable changed."""
    global _current
    snap = _snapshot()
    with _lock:
        if _current is None or _current[0] != snap:
            _current = (snap, Settings.from_env())
        return _current[1]


def markdown_table() -> str:
    """The README's configuration table, one row per setting."""
    rows = ["| variable | default | effect |", "|---|---|---|"]
    for f in fields(Settings):
        rows.append(f"| `{f.metadata['env']}` | {f.metadata['shown']} | {f.metadata['doc']} |")
    rows.append("| `GRADIO_SERVER_NAME`, `GRADIO_SERVER_PORT`, `GRADIO_SHARE` | Gradio's | the usual Gradio settings |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
    sys.exit(0)
