"""A copy of the workflow in a temporary folder, for the end-to-end tests that run Snakemake there
(they must not write into the checkout's results/)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ("Snakefile", "config.yaml", "workflow", "profiles", "envs")
# The overlay the tests use, and the molecules it reads.
TINY = ("tests/data/tiny.yaml", "tests/data/molecules.smi")


def copy_workflow(dest: Path, *extra: str) -> Path:
    """The workflow's files, and `extra` paths of the checkout (e.g. `presets`, `*TINY`), under
    `dest` at the same relative paths; returns `dest`."""
    for item in (*WORKFLOW, *extra):
        source, target = ROOT / item, dest / item
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return dest
