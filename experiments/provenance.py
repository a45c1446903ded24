"""Where an experiment's result comes from: the code's git commit, and the rule that decides.

``git_state`` names the commit a result was produced by (and whether the work tree differed from
it), ``config_fingerprint`` the settings it was produced with; ``rule_record`` checks that a
decision rule (``experiments/rules/<name>.md``) is committed before the runs it decides and names
the commit that holds it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from dsi.config import IndexConfig


def config_fingerprint(config: IndexConfig) -> dict[str, Any]:
    """What a result's settings are kept by: ``config``'s settings as ``index.json`` holds them
    (JSON-normalised, as a saved result reads back). The settings of format version 2 only:
    results fingerprinted before it (by ``IndexConfig.identity``, gone) never match, and their
    runs are trained again. The stages' constants are code, which ``git_state`` names."""
    return json.loads(json.dumps(config.to_dict()))


class RuleRefused(ValueError):
    """A rule file that cannot decide a run: missing, outside git, or not committed as it is."""


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
    """``{"commit": HEAD, "dirty": whether tracked files other than experiments/results/ differ
    from it}`` of the repository at ``root``; both None outside a git repository."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    # Code only: the results this and earlier runs write (experiments/results/) and untracked
    # files do not make the code that ran differ from the commit.
    status = _git(
        root,
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)experiments/results",
    )
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def rule_record(path: Path) -> dict[str, str]:
    """``{"file": path from the repository root, "commit": the last commit of the file}``, or
    :class:`RuleRefused` (one sentence) when the file is missing, outside a git repository,
    never committed, or changed since its last commit: a rule is fixed before its runs."""
    path = Path(path).resolve()
    if not path.is_file():
        raise RuleRefused(f"Rule file {path} does not exist.")
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    if top is None:
        raise RuleRefused(f"Rule file {path} is not in a git repository, so it has no commit.")
    commit = _git(path.parent, "log", "-1", "--format=%H", "--", path.name)
    if not commit:
        raise RuleRefused(
            f"Rule file {path} is not committed: commit it before the runs it decides."
        )
    if _git(path.parent, "status", "--porcelain", "--", path.name):
        raise RuleRefused(
            f"Rule file {path} has uncommitted changes: a rule is committed as it is before "
            "the runs it decides."
        )
    return {"file": path.relative_to(Path(top).resolve()).as_posix(), "commit": commit}


def add_rule_argument(parser: argparse.ArgumentParser) -> None:
    """``--rule FILE``: the committed rule an experiment that decides something runs under."""
    parser.add_argument(
        "--rule",
        type=Path,
        default=None,
        help="the decision rule this run decides by (experiments/rules/<name>.md), committed "
        "before the run; its commit goes into the result (without it the result says rule null)",
    )


def checked_rule(parser: argparse.ArgumentParser, path: Path | None) -> dict[str, str] | None:
    """The result's ``rule`` for ``--rule path`` (None without one); a usage error (exit code 2)
    when the rule file is not committed as it is."""
    if path is None:
        return None
    try:
        return rule_record(path)
    except RuleRefused as exc:
        parser.error(str(exc))
