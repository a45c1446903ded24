"""The command line explains itself: help for every option, ``--docids`` choices from the one
dispatch, defaults shown."""

from __future__ import annotations

import argparse

import pytest

from dsi.cli import _parser, main
from dsi.kinds import docid_kinds


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_subcommand_has_help() -> None:
    found = subcommands()
    assert {"index", "search", "eval", "add", "serve"} <= set(found)
    missing = [
        f"dsi {name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in found.items()
        for action in parser._actions
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert not missing, f"options without help text: {missing}"


def test_defaults_are_shown() -> None:
    found = subcommands()
    text = " ".join(found["search"].format_help().split())
    assert "documents returned per query (default: 10)" in text
    assert "queries decoded together (default: 32)" in text
    text = " ".join(found["eval"].format_help().split())
    assert "documents retrieved per query (default: 100)" in text
    text = " ".join(found["add"].format_help().split())
    assert "(default: documents)" in text and "(default: 0.05)" in text
    # An option without a value to show says nothing rather than "(default: None)".
    for parser in found.values():
        assert "default: None" not in parser.format_help()
        assert "default: False" not in parser.format_help()


def test_docids_choices_come_from_the_dispatch(capsys) -> None:
    text = " ".join(subcommands()["index"].format_help().split())
    kinds = docid_kinds()
    assert kinds[0] == "ngram" and {"semantic", "atomic", "naive"} <= set(kinds)
    assert f"one of: {', '.join(kinds)}" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "--corpus", "c.jsonl", "--output", "out", "--docids", "words"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'words'" in capsys.readouterr().err
