"""Convert the public VGG-Face weights to a ``vggface16`` checkpoint folder.

``python -m detector.vggface_convert vgg_face_dag.pth --out checkpoints/vggface16_init``

Input: the PyTorch port of VGG-Face (``vgg_face_dag.pth``, keys ``conv1_1.weight`` ...
``conv5_3.bias`` plus ``fc6``/``fc7``/``fc8``, which are dropped), or the same keys in a
``.safetensors`` file. A ``.pth`` file is read with ``torch.load(weights_only=True)``,
PyTorch's restricted unpickler that accepts tensors and plain containers only and
refuses arbitrary objects; the output is safetensors only.

VGG-Face takes ``255 * rgb - mean`` (mean = 129.19, 104.76, 93.59, RGB) with unit std.
Our spec feeds ``(rgb - mean / 255) / std``, which equals the VGG-Face input divided by
``255 * std``; the converter folds that factor into ``conv1_1``, so the converted network
computes exactly VGG-Face's features. BatchNorm layers are written as identities. The
2-class head is freshly initialised: fine-tune it with
``python -m detector.train --model vggface16 --init OUT ...``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .specs import get_spec

__all__ = ["convert_state_dict", "convert_file", "main"]


def _read(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a plain tensor checkpoint (refused by the safe loader: {e})") from None
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not contain a state dict")
    return sd


def convert_state_dict(src: dict, model) -> dict:
    """Map VGG-Face ``convX_Y.*`` tensors onto a ``VGGFace16`` state dict (head kept)."""
    import torch

    from .models import VGG16_CFG

    spec = get_spec("vggface16")
    out = {k: v.clone() for k, v in model.state_dict().items()}
    scale = torch.tensor([255.0 * s for s in spec.std]).view(1, 3, 1, 1)
    for block, n, _ in VGG16_CFG:
        for j in range(1, n + 1):
            name = f"conv{block}_{j}"
            for part in ("weight", "bias"):
                key = f"{name}.{part}"
                if key not in src:
                    raise KeyError(f"VGG-Face file lacks {key!r}; expected keys conv1_1.weight ... conv5_3.bias")
                t = src[key].float()
                dst = out[f"features.{key}"]
                if t.shape != dst.shape:
                    raise ValueError(f"{key}: shape {tuple(t.shape)} does not match VGG-16's {tuple(dst.shape)}")
                if key == "conv1_1.weight":
                    t = t * scale
                out[f"features.{key}"] = t
            bn = f"features.bn{block}_{j}"
            eps = dict(model.named_modules())[bn].eps
            out[f"{bn}.weight"] = torch.ones_like(out[f"{bn}.weight"])
            out[f"{bn}.bias"] = torch.zeros_like(out[f"{bn}.bias"])
            out[f"{bn}.running_mean"] = torch.zeros_like(out[f"{bn}.running_mean"])
            out[f"{bn}.running_var"] = torch.full_like(out[f"{bn}.running_var"], 1.0 - eps)  # exact identity
    return out


def convert_file(src_path: str | Path, out_dir: str | Path, seed: int = 0) -> Path:
    """Convert ``src_path`` and write a loadable ``vggface16`` folder to ``out_dir``."""
    import timm
    import torch

    from . import models  # noqa: F401
    from .weights import save_checkpoint

    torch.manual_seed(seed)
    spec = get_spec("vggface16")
    model = timm.create_model(spec.architecture, num_classes=spec.num_classes)
    model.load_state_dict(convert_state_dict(_read(Path(src_path)), model))
    return save_checkpoint(model, spec, out_dir, 1.0, {"init": f"VGG-Face conv weights from {Path(src_path).name}; "
                                                               "head untrained"}, fp16=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.vggface_convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="vgg_face_dag.pth or a .safetensors with the same keys")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    try:
        out = convert_file(args.src, args.out)
    except (KeyError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}; fine-tune with: python -m detector.train --model vggface16 --init {out} --data DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
