"""Atomic file writes: every artifact goes to a temporary name in its folder, then is renamed.

A job killed mid-write therefore leaves either the old file or no file, never half of one. Files
get the permissions a plain `open()` would give them (0666 less the umask), and JSON is strict:
numbers that are not finite are written as `null`, which every JSON reader accepts.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagllm.errors import UserError


@functools.cache
def _file_mode() -> int:
    """0666 less the umask: what `open(path, "w")` gives a new file (mkstemp gives 0600). Read once,
    because reading the umask means setting it, and another thread could create a file meanwhile."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def make_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` (and its parents), failing with a `UserError` that names it, not an OSError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        raise UserError(f"{folder}: cannot create this folder: {file or error.filename} is a file, "
                        "not a folder") from error
    except PermissionError as error:
        raise UserError(f"{folder}: cannot create this folder: permission denied") from error
    return folder


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    target = Path(path)
    make_folder(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # After the block: some writers (safetensors) replace the file, with mode 0600 again.
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Strict JSON: NaN and infinities become `null` (bare `NaN` is not JSON; jq and JavaScript
    refuse it), so a reader sees an undefined number as None."""
    write_text(path, json.dumps(strict_json(data), indent=2, sort_keys=False, allow_nan=False)
               + "\n")


def strict_json(value: Any) -> Any:
    """`value` with numpy/torch scalars as Python numbers, paths as strings and every float that
    is not finite as None."""
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    if isinstance(value, str | bool | int | None):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy / torch scalars
        return strict_json(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def write_parquet(path: str | os.PathLike, frame: Any) -> None:
    """Write a pandas DataFrame as Parquet (pyarrow engine, no index)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", index=False)


def save_figure(path: str | os.PathLike, figure: Any, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (the format comes from the target's suffix)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format=target.suffix.lstrip("."), **kwargs)
