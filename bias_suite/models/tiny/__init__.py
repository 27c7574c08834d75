"""Built-in tiny checkpoints: built once from transformers configs, saved, then loaded like hub ones."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import transformers
from filelock import FileLock

from bias_suite.errors import CorruptCheckpointError
from bias_suite.models.tiny.families import TINY_FAMILIES, TinyFamily, build_family

# Bump when a builder changes, so stale cached checkpoints are rebuilt instead of reused.
BUILD_VERSION = 1
DEFAULT_SEED = 0
# Written last into a finished build: every file's size in bytes and sha256. A directory whose files do not
# match it (or that has none: a half-written or older build) is rebuilt.
BUILD_MARKER = "bias_suite_build.json"

__all__ = ["BUILD_MARKER", "BUILD_VERSION", "TINY_FAMILIES", "TinyFamily", "cache_root", "ensure_checkpoint"]


def cache_root() -> Path:
    """``$BIAS_SUITE_CACHE``, else ``~/.cache/bias_suite``."""
    return Path(os.environ.get("BIAS_SUITE_CACHE") or Path.home() / ".cache" / "bias_suite")


def ensure_checkpoint(alias: str, cache_dir: Path | None = None, seed: int = DEFAULT_SEED) -> Path:
    """Directory holding the saved checkpoint for ``alias`` (model, tokenizer, processor), built on first use.

    A cached directory is reused only if its files match the build marker written when it was saved (sizes
    and sha256 of about 1 MB in all, so checking takes about a millisecond); otherwise (a truncated weight
    file, a missing file, no marker) it is rebuilt in place. Safe under pytest-xdist: builders hold a file
    lock and publish the directory with an atomic rename.
    """
    if alias not in TINY_FAMILIES:
        raise KeyError(f"unknown tiny alias {alias!r}; built-in aliases: {', '.join(TINY_FAMILIES)}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / "checkpoints" / f"{alias}-seed{seed}-v{BUILD_VERSION}-transformers{transformers.__version__}"
    if build_problem(target) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        problem = build_problem(target)
        if problem is None:
            return target
        if target.exists():
            _rebuild(alias, seed, target, problem)
        else:
            _build(alias, seed, target)
    return target


def build_problem(directory: Path) -> str | None:
    """Why ``directory`` is not a finished build (missing, no marker, a file missing or changed), or None."""
    if not directory.is_dir():
        return "it does not exist"
    try:
        recorded = json.loads((directory / BUILD_MARKER).read_text())["files"]
    except FileNotFoundError:
        return f"it has no {BUILD_MARKER} (the build did not finish, or predates the marker)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its {BUILD_MARKER} is unreadable ({error})"
    for name, expected in recorded.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the build wrote {expected['bytes']}"
        if _sha256(path) != expected["sha256"]:
            return f"{name} differs from what the build wrote (sha256 mismatch)"
    return None


def _build(alias: str, seed: int, target: Path) -> None:
    """Build ``alias`` into a staging directory, mark it finished, and rename it to ``target``."""
    model, processor = build_family(alias, seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        _write_marker(staging, alias, seed)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _rebuild(alias: str, seed: int, target: Path, problem: str) -> None:
    """Replace the damaged build at ``target``; if that fails, say which directory to delete."""
    try:
        stale = Path(tempfile.mkdtemp(prefix=f".{alias}-stale-", dir=target.parent))
        os.replace(target, stale / target.name)
        shutil.rmtree(stale, ignore_errors=True)
        _build(alias, seed, target)
    except OSError as error:
        raise CorruptCheckpointError(
            f"the cached tiny checkpoint {target} is damaged ({problem}) and could not be rebuilt "
            f"({type(error).__name__}: {error}); delete the directory {target} and run again"
        ) from error


def _write_marker(directory: Path, alias: str, seed: int) -> None:
    files = {
        path.name: {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(directory.iterdir()) if path.is_file()
    }
    marker = {"alias": alias, "seed": seed, "build_version": BUILD_VERSION,
              "transformers": transformers.__version__, "files": files}
    (directory / BUILD_MARKER).write_text(json.dumps(marker, indent=1))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
