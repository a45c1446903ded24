"""experiments/train_levers.py: each lever changes what it names, and the rule's decision."""

from __future__ import annotations

import json

import pytest

import dsi.config
from dsi import seal
from dsi.model import load_tokenizer
from experiments import train_levers
from tests.conftest import REPO

TINY = REPO / "examples" / "tiny"


def test_a_lever_is_adopted_only_by_the_rule_s_margin_and_pending_without_a_run():
    scores = {"cased": 0.709, "vocab16k": 0.711, "pool0": None, "pairs30": 0.650}
    assert train_levers.decide(0.700, scores) == {
        "cased": "kept",
        "vocab16k": "adopted",
        "pool0": "pending",
        "pairs30": "kept",
    }


def test_the_preset_levers_reach_the_copy_pair_counts(monkeypatch):
    monkeypatch.setitem(
        seal.NGRAM_PRESETS, seal.WITH_QUERIES, seal.NGRAM_PRESETS[seal.WITH_QUERIES]
    )
    options = seal.SealOptions()
    assert options.salient_pairs_for(5183, with_queries=True) == 6
    assert options.salient_pool_for(5183, with_queries=True) > 0
    train_levers.LEVERS["pairs30"].patch()
    assert options.salient_pairs_for(5183, with_queries=True) == 30
    train_levers.LEVERS["pool0"].patch()
    assert options.salient_pool_for(5183, with_queries=True) == 0
    # Indexes without training queries keep their own preset.
    assert options.salient_pairs_for(5183, with_queries=False) == 120


@pytest.mark.slow
def test_the_cased_lever_builds_a_tokenizer_that_keeps_case_and_records_itself(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(dsi.config, "LOWERCASE", True)
    out = tmp_path / "cased"
    code = train_levers.main(
        ["build", "cased", "--output", str(out), "--", "--corpus", str(TINY)]
        + ["--set", "model_config.size=tiny", "--set", "model_config.vocab_size=200"]
        + ["--max-steps", "2", "--quiet"]
    )
    assert code == 0
    tokenizer = load_tokenizer(out / "model")
    assert tokenizer.tokenize("Reed Clocks") != tokenizer.tokenize("reed clocks")
    assert json.loads((tmp_path / "cased.lever.json").read_text())["lever"] == "cased"
