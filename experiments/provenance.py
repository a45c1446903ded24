"""Where an experiment's result comes from: ``git_state`` names the commit a result was produced
by (and whether the work tree differed from it)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def _git(where: Path, *args: str) -> str | None:
    """The stripped output of ``git args`` run in ``where``; None when git fails there."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=False
        )
    except OSError:  # no git at all
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(root: Path) -> dict[str, Any]:
    """``{"commit": HEAD, "dirty": whether tracked or unignored files differ from it}`` of the
    repository at ``root``; both None outside a git repository."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(root, "status", "--porcelain")
    return {"commit": commit, "dirty": None if status is None else bool(status)}
