"""Dataset index reading (``index.csv`` of ``../shared/datasets/faces``, or a real/ fake/ folder)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .specs import LABELS

__all__ = ["Sample", "read_index", "cap_per_source", "IMAGE_EXTS", "list_images"]

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  #: index into LABELS (0 real, 1 fake)
    source: str
    group: str
    split: str


def list_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def read_index(data_dir: str | Path, split: str | None = None, sources: list[str] | None = None) -> list[Sample]:
    """Samples of ``data_dir``.

    With an ``index.csv`` (columns path,label,source,group,split) the split and sources
    filter it. Without one, ``data_dir`` must hold ``real/`` and ``fake/`` folders; every
    image there is returned with source = the folder's name and the split asked for.
    """
    data_dir = Path(data_dir)
    index = data_dir / "index.csv"
    out: list[Sample] = []
    if index.is_file():
        with index.open(newline="") as f:
            for row in csv.DictReader(f):
                if split and row["split"] != split:
                    continue
                if sources and row["source"] not in sources:
                    continue
                out.append(Sample(data_dir / row["path"], LABELS.index(row["label"]), row["source"],
                                  row["group"], row["split"]))
        return out
    if not ((data_dir / "real").is_dir() and (data_dir / "fake").is_dir()):
        raise FileNotFoundError(f"{data_dir} has neither index.csv nor real/ and fake/ folders")
    for label in LABELS:
        for p in list_images(data_dir / label):
            out.append(Sample(p, LABELS.index(label), data_dir.name, str(p), split or "all"))
    return out


def cap_per_source(samples: list, n: int, sources: list[str]) -> list:
    """At most ``n`` items per source, evenly spaced through each source's items (so both
    labels stay in), sources in the order given. Items need a ``source`` attribute."""
    capped: list = []
    for src in sources:
        items = [v for v in samples if v.source == src]
        step = max(1, len(items) // n)
        capped += items[::step][:n]
    return capped
