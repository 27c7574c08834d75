"""Built-in tiny checkpoints: built once from transformers configs, saved, then loaded like hub ones."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import transformers
from filelock import FileLock

from bias_suite.tiny.families import TINY_FAMILIES, TinyFamily, build_family

# Bump when a builder changes, so stale cached checkpoints are rebuilt instead of reused.
BUILD_VERSION = 1
DEFAULT_SEED = 0

__all__ = ["BUILD_VERSION", "TINY_FAMILIES", "TinyFamily", "cache_root", "ensure_checkpoint"]


def cache_root() -> Path:
    """``$BIAS_SUITE_CACHE``, else ``~/.cache/bias_suite``."""
    return Path(os.environ.get("BIAS_SUITE_CACHE") or Path.home() / ".cache" / "bias_suite")


def ensure_checkpoint(alias: str, cache_dir: Path | None = None, seed: int = DEFAULT_SEED) -> Path:
    """Directory holding the saved checkpoint for ``alias`` (model, tokenizer, processor), built on first use.

    Safe under pytest-xdist: builders hold a file lock and publish the directory with an atomic rename.
    """
    if alias not in TINY_FAMILIES:
        raise KeyError(f"unknown tiny alias {alias!r}; built-in aliases: {', '.join(TINY_FAMILIES)}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / "checkpoints" / f"{alias}-seed{seed}-v{BUILD_VERSION}-transformers{transformers.__version__}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return target
        model, processor = build_family(alias, seed)
        staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
        try:
            model.save_pretrained(staging, safe_serialization=True)
            processor.save_pretrained(staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
