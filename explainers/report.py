"""The downloadable report: a JSON summary plus every map as PNG and ``.npy``.

:func:`build_report` turns verdicts (``detector.predict.Prediction``) and explanation
results (``explainers.panel.PanelResult``) into a JSON-serialisable dict;
:func:`write_zip` writes that dict with the images and raw maps into one zip:

``report.json``, ``face_raw.png`` (crop before CLAHE), ``face.png`` (what the model
saw), ``side_by_side.png`` (if given), and per method ``maps/<method>.png`` (overlay)
and ``maps/<method>.npy`` (float32 attribution map, same size as the face crop).
"""
from __future__ import annotations

import io
import json
import math
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["DISCLAIMER", "build_report", "write_zip", "png_bytes", "jsonable", "method_record", "verdict_record"]

DISCLAIMER = ("A detector's score is evidence, not proof. The detectors were trained on StyleGAN faces (gan140k) "
              "and DFDC face swaps; other generators, heavy compression or unusual photos can fool them. "
              "Saliency maps show what influenced this model's score, not where an image was edited.")


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tuples, paths and non-finite floats made JSON-safe."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist()) if obj.size <= 64 else f"<array {obj.dtype} {list(obj.shape)}>"
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def png_bytes(image: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG encoding of a uint8 RGB/grey image (``compress_level`` 0-9: PIL's; 6 is its default)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def verdict_record(pred: Any, display_name: str | None = None) -> dict:
    """JSON record of one ``Prediction`` (uses its ``to_json`` when present)."""
    rec = pred.to_json() if hasattr(pred, "to_json") else {
        "model": getattr(pred, "model", None), "label": getattr(pred, "label", None),
        "p_fake": getattr(pred, "p_fake", None), "p_real": getattr(pred, "p_real", None)}
    if display_name:
        rec = {"display_name": display_name, **rec}
    return jsonable(rec)


def _map_stats(m: np.ndarray | None) -> dict | None:
    if m is None:
        return None
    a = np.asarray(m, dtype=np.float64)
    if a.size == 0:
        return None
    return {"shape": list(a.shape), "min": float(np.nanmin(a)), "max": float(np.nanmax(a)),
            "mean": float(np.nanmean(a)), "abs_mean": float(np.nanmean(np.abs(a)))}


def method_record(res: Any, cached: bool = False) -> dict:
    """JSON record of one ``PanelResult``."""
    attr = getattr(res, "attribution", None)
    error = getattr(res, "error", None)
    rec: dict[str, Any] = {
        "method": res.method,
        "display_name": getattr(res, "display_name", res.method),
        "status": "error" if error else "ok",
        "error": error,
        "cached": bool(cached),
        "faithfulness": jsonable(getattr(res, "faithfulness", None)),
    }
    if attr is not None:
        rec.update({
            "runtime_s": jsonable(getattr(attr, "runtime_s", None)),
            "params": jsonable(getattr(attr, "params", None) or {}),
            "notes": jsonable(getattr(attr, "notes", None) or []),
            "map": _map_stats(getattr(attr, "map", None)),
            "extra": jsonable(getattr(attr, "extra", None) or {}),
        })
    if error is None and attr is not None:
        rec["files"] = {"overlay": f"maps/{res.method}.png", "map": f"maps/{res.method}.npy"}
    return rec


def build_report(*, image_sha256: str, image_name: str | None, face_crop: bool,
                 verdicts: Sequence[tuple[Any, str]], explained_with: str | None,
                 target: tuple[int, str] | None, results: Iterable[Any] = (),
                 cached_methods: Iterable[str] = (), unavailable: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None, notes: Sequence[str] = (),
                 verdict_extra: Mapping[str, Mapping[str, Any]] | None = None,
                 consensus: Mapping[str, Any] | None = None) -> dict:
    """The JSON report for one analysis.

    ``verdicts`` is a list of ``(Prediction, display_name)``; ``results`` the panel
    results (any order); ``unavailable`` maps detector name to why it could not run;
    ``verdict_extra`` adds fields to a detector's verdict record (``verdict``,
    ``reliability``, ``warnings``); ``consensus`` is the combined verdict ("Compare all").
    """
    cached = set(cached_methods)
    extra = verdict_extra or {}
    out = {
        "report_version": 1,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "image": {"sha256": image_sha256, "name": image_name},
        "face_crop": bool(face_crop),
        "verdicts": [{**verdict_record(p, d), **jsonable(dict(extra.get(getattr(p, "model", None), {})))}
                     for p, d in verdicts],
        "unavailable_detectors": dict(unavailable or {}),
        "explained_with": explained_with,
        "target": {"index": target[0], "label": target[1]} if target else None,
        "params": jsonable(dict(params or {})),
        "methods": {r.method: method_record(r, r.method in cached) for r in results},
        "notes": list(notes),
        "disclaimer": DISCLAIMER,
    }
    if consensus is not None:
        out["consensus"] = jsonable(dict(consensus))
    return out


def write_zip(report: dict, dest: str | Path, *, face_raw: np.ndarray | None = None, face: np.ndarray | None = None,
              results: Iterable[Any] = (), side_by_side: np.ndarray | None = None) -> Path:
    """Write ``report.json``, face crops, overlays (PNG) and maps (``.npy``) to the zip ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("report.json", json.dumps(jsonable(report), indent=2) + "\n")
        if face_raw is not None:
            zf.writestr("face_raw.png", png_bytes(face_raw))
        if face is not None:
            zf.writestr("face.png", png_bytes(face))
        if side_by_side is not None:
            zf.writestr("side_by_side.png", png_bytes(side_by_side))
        for res in results:
            if getattr(res, "error", None):
                continue
            overlay = getattr(res, "overlay", None)
            if overlay is not None:
                zf.writestr(f"maps/{res.method}.png", png_bytes(overlay))
            attr = getattr(res, "attribution", None)
            m = getattr(attr, "map", None) if attr is not None else None
            if m is not None:
                buf = io.BytesIO()
                np.save(buf, np.asarray(m, dtype=np.float32), allow_pickle=False)
                zf.writestr(f"maps/{res.method}.npy", buf.getvalue())
    return dest
