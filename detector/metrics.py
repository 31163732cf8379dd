"""Classification and calibration metrics shared by training and evaluation."""
from __future__ import annotations

import numpy as np

from typing import Any

__all__ = ["binary_metrics", "ece", "fit_temperature", "softmax_np", "fmt_metric"]


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
