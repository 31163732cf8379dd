"""Classification and calibration metrics shared by training and evaluation, and the published test
metrics of a checkpoint (:func:`read_test_metrics`, shown by the app's About tab)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["binary_metrics", "ece", "fit_temperature", "softmax_np", "fmt_metric", "read_test_metrics"]


def fmt_metric(v: Any) -> str:
    """A metric as a Markdown table cell: floats with 4 decimals, None empty, ``|`` escaped."""
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v).replace("|", "/")


def softmax_np(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (numerically stable)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece(y: np.ndarray, p_fake: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the predicted class's confidence (equal-width bins)."""
    pred = (p_fake >= 0.5).astype(int)
    conf = np.where(pred == 1, p_fake, 1 - p_fake)
    correct = (pred == y).astype(float)
    bins = np.linspace(0.5, 1.0, n_bins + 1)
    total = 0.0
    for lo, hi in zip(bins[:-1], bins[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0.5 else (conf >= lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def binary_metrics(y: np.ndarray, p_fake: np.ndarray) -> dict:
    """accuracy, precision, recall, f1 (fake = positive), roc_auc, log_loss, ece, confusion."""
    from sklearn import metrics as M

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p_fake, dtype=np.float64), 1e-7, 1 - 1e-7)
    pred = (p >= 0.5).astype(int)
    both = len(np.unique(y)) == 2
    cm = M.confusion_matrix(y, pred, labels=[0, 1])
    return {
        "n": int(len(y)),
        "roc_auc": float(M.roc_auc_score(y, p)) if both else float("nan"),
        "accuracy": float(M.accuracy_score(y, pred)),
        "precision": float(M.precision_score(y, pred, zero_division=0)),
        "recall": float(M.recall_score(y, pred, zero_division=0)),
        "f1": float(M.f1_score(y, pred, zero_division=0)),
        "log_loss": float(M.log_loss(y, p, labels=[0, 1])),
        "ece": ece(y, p),
        # rows: true real, true fake; columns: predicted real, predicted fake
        "confusion": cm.tolist(),
    }


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the NLL of ``softmax(logits / T)`` (1-D search on log T)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y).astype(int)

    def nll(log_t: float) -> float:
        p = softmax_np(logits, float(np.exp(log_t)))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))


_METRIC_ORDER = ("roc_auc", "auc", "accuracy", "acc", "balanced_accuracy", "f1", "precision", "recall",
                 "eer", "ece", "log_loss", "brier", "n")


def _metrics_json_table(data: Mapping[str, Any]) -> str | None:
    rows: list[tuple[str, Mapping[str, Any]]] = []
    per = data.get("per_source")
    if isinstance(per, Mapping):
        rows += [(str(k), v) for k, v in per.items() if isinstance(v, Mapping)]
    if isinstance(data.get("pooled"), Mapping):
        rows.append(("pooled", data["pooled"]))
    if not rows:
        return None
    keys: list[str] = []
    for _, r in rows:
        keys += [k for k, v in r.items() if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool)]
    first_seen = {k: i for i, k in enumerate(keys)}
    keys = sorted(keys, key=lambda k: (_METRIC_ORDER.index(k) if k in _METRIC_ORDER else len(_METRIC_ORDER),
                                       first_seen[k]))[:8]
    lines = ["| test set | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += ["| " + name + " | " + " | ".join(fmt_metric(r.get(k)) for k in keys) + " |" for name, r in rows]
    return "\n".join(lines)


def _readme_tables(text: str) -> str | None:
    """The test-metrics table of a model card: the first table under a heading that mentions "test",
    else the first table whose header mentions AUC/accuracy and is not a per-epoch log."""
    tables: list[tuple[str, list[str]]] = []  # (heading, table lines)
    heading, cur = "", []
    for ln in text.splitlines() + [""]:
        st = ln.strip()
        if st.startswith("|"):
            cur.append(st)
            continue
        if len(cur) >= 3:
            tables.append((heading, cur))
        cur = []
        if st.startswith("#"):
            heading = st.lstrip("#").strip().lower()
    for head, t in tables:
        if "test" in head and "|" in t[0]:
            return "\n".join(t[:30])
    for _, t in tables:
        h = t[0].lower()
        if "epoch" not in h and any(w in h for w in ("auc", "accuracy", "acc ", "| acc", "eer", "f1")):
            return "\n".join(t[:30])
    return None


def read_test_metrics(folder: str | Path) -> tuple[str | None, str | None]:
    """``(markdown table, source file)`` of a checkpoint's test metrics, or ``(None, None)``.

    Prefers ``metrics.json`` (``{"per_source": {src: {...}}, "pooled": {...}}``), else the
    first metrics-like table of the model card ``README.md``. Never raises.
    """
    folder = Path(folder)
    mj = folder / "metrics.json"
    try:
        if mj.is_file():
            data = json.loads(mj.read_text())
            table = _metrics_json_table(data) if isinstance(data, Mapping) else None
            if table:
                return table, mj.name
    except (OSError, ValueError):
        pass
    card = folder / "README.md"
    try:
        if card.is_file():
            table = _readme_tables(card.read_text(errors="replace"))
            if table:
                return table, card.name
    except OSError:
        pass
    return None, None
