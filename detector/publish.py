"""Publish a checkpoint folder to the Hugging Face Hub.

``python -m detector.publish NAME --repo ORG/NAME [--folder DIR] [--private] [--dry-run]``

The folder (default ``checkpoints/NAME``) is first loaded through the project's own
loader, so nothing that would fail to load is uploaded; it must hold a model card
(``README.md``). Only ``config.json``, ``model.safetensors`` and ``README.md`` are sent.
Needs a token (``HF_TOKEN`` or ``huggingface-cli login``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import WeightsError
from .specs import get_spec
from .weights import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint_dir

__all__ = ["UPLOAD_FILES", "check_folder", "publish", "main"]

UPLOAD_FILES = [CONFIG_FILE, WEIGHTS_FILE, "README.md"]


def check_folder(name: str, folder: Path) -> None:
    """Raise :class:`WeightsError` unless ``folder`` loads as detector ``name`` and has a card."""
    load_checkpoint_dir(folder, get_spec(name), "cpu")
    if not (folder / "README.md").is_file():
        raise WeightsError(f"Detector '{name}': {folder / 'README.md'} (model card) is missing; write it first.")


def publish(name: str, repo: str, folder: str | Path | None = None, private: bool = False,
            dry_run: bool = False) -> str:
    """Validate and upload; returns the commit URL (or a dry-run message)."""
    spec = get_spec(name)
    path = Path(folder) if folder else spec.local_dir
    check_folder(name, path)
    if dry_run:
        return f"dry run: {path} is valid; would upload {', '.join(UPLOAD_FILES)} to {repo}"
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(path), repo_id=repo, repo_type="model", allow_patterns=UPLOAD_FILES,
                             commit_message=f"Upload {name} detector")
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.publish", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--repo", required=True, help="ORG/NAME on the Hub")
    ap.add_argument("--folder", default=None)
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    try:
        print(publish(args.name, args.repo, args.folder, args.private, args.dry_run))
    except (WeightsError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
