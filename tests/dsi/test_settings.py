"""The settings a person can read (issue 31): few, each documented, and nothing else accepted."""

from __future__ import annotations

import re

import pytest

from dsi.cli import main
from dsi.config import IndexConfig, parse_assignments, setting_keys
from tests.conftest import REPO

SETTINGS_DOC = REPO / "docs" / "settings.md"
# Issue 31: "at most about 25"; 25 then, and the two example levers of DSI that issue 28 asks to
# measure (train.max_windows_per_doc, train.query_repeats) since.
MOST_SETTINGS = 27


def _documented() -> set[str]:
    """The keys docs/settings.md documents: the first cell of each table row, in backquotes."""
    rows = re.findall(r"^\| `([a-z_.]+)` \|", SETTINGS_DOC.read_text(encoding="utf-8"), re.M)
    return set(rows)


def test_dsi_index_accepts_at_most_27_settings_and_each_is_documented():
    keys = setting_keys()
    assert len(keys) == len(set(keys)) <= MOST_SETTINGS
    missing = [key for key in keys if key not in _documented()]
    assert not missing, f"docs/settings.md does not document {missing}"
    # Each one really is accepted: set to its own default, the config is the default one.
    for key in keys:
        if not key.startswith("docid_options."):  # the defaults' kind has none of semantic's
            value = _value(IndexConfig().to_dict(), key)
            assert IndexConfig().updated({key: value}) == IndexConfig(), key
    # ...and an index saves only these (an n-gram build fills in its kind's two).
    saved = IndexConfig(docid_options={"preset": None, "scoring": "bm25"}).to_dict()
    assert set(_leaves(saved)) <= set(keys)


def _value(data: dict, key: str):
    for part in key.split("."):
        data = data[part]
    return data


def _leaves(data: dict, prefix: str = ""):
    """The dotted keys of the values of nested ``data``."""
    for name, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


@pytest.mark.parametrize(
    "key",
    [
        "train.window_length",  # a constant of training (TRAIN_CONSTANTS)
        "model_config.d_model",  # a dimension of a model size (MODEL_SIZES)
        "docid_options.word_weight_without_queries",  # a preset now (NGRAM_PRESETS)
        "generator.train.max_minutes",  # the query generator is not a setting
    ],
)
def test_set_of_a_removed_setting_is_one_clear_error_listing_the_settings(key, tmp_path, capsys):
    out = tmp_path / "index"
    code = main(["index", "--corpus", str(REPO / "examples" / "tiny"), "--output", str(out),
                 "--set", f"{key}=1", "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"dsi: error: '{key}' is not a setting; the settings are ")
    for known in setting_keys():
        assert known in err
    assert not out.exists()


def test_set_values_are_json_or_the_string_given_and_a_missing_equals_sign_is_refused():
    found = parse_assignments(["train.seed=14", "train.max_minutes=null", "docids=semantic",
                               "docid_options.embedder=tfidf", "train.num_threads=1"])  # fmt: skip
    assert found == {"train.seed": 14, "train.max_minutes": None, "docids": "semantic",
                     "docid_options.embedder": "tfidf", "train.num_threads": 1}  # fmt: skip
    for bad in ("train.seed", "=3"):
        with pytest.raises(ValueError, match="--set takes KEY=VALUE"):
            parse_assignments([bad])


def test_set_without_an_equals_sign_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "index"
    code = main(["index", "--corpus", str(REPO / "examples" / "tiny"), "--output", str(out),
                 "--set", "train.seed", "--quiet"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "dsi: error: --set takes KEY=VALUE, got 'train.seed'."
    )
    assert not out.exists()
