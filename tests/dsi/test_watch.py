"""Runs a person can watch: the training bar's total and ETA, stage timings, the loss history."""

from __future__ import annotations

import json
import logging
import random

import pytest
from tqdm.auto import tqdm

import dsi.train
from dsi.index import GenerativeIndex
from dsi.seal import NgramGenerativeIndex
from tests.conftest import random_corpus, tiny_config

STAGES = {"identifiers", "tokenizer", "examples", "query_generator", "training", "writing"}


@pytest.fixture
def bars(monkeypatch):
    """The training bars made during a test (real tqdm bars, kept to be looked at)."""
    made: list[tqdm] = []

    class Kept(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(dsi.train, "tqdm", Kept)
    return made


def _build(bars, capsys, **budget):
    config = tiny_config("atomic", steps=None).updated(
        {f"train.{key}": value for key, value in budget.items()} | {"train.max_epochs": 100_000}
    )
    corpus = random_corpus(random.Random(1), 6)
    index = GenerativeIndex.build(corpus, config, progress_bar=True)
    (bar,) = bars
    return index, bar, capsys.readouterr().err


def test_a_minutes_budget_gives_the_bar_a_total_and_an_eta(bars, capsys):
    index, bar, err = _build(bars, capsys, max_minutes=0.03)
    assert index.lineage[0]["training"]["stopped_by"] == "time"
    # Per cent of the time budget: full when the time is up, with the time left shown.
    assert bar.total == 100 and bar.n == pytest.approx(100)
    assert "100%|" in err and "<00:00" in err
    assert "steps_s=" in err and "loss=" in err and "epoch=" in err


def test_with_both_budgets_the_one_that_ends_first_fills_the_bar(bars, capsys):
    index, bar, err = _build(bars, capsys, max_minutes=30, max_steps=12)
    assert index.lineage[0]["training"]["stopped_by"] == "steps"
    # 12 steps of a 30-minute budget would be a sliver; the steps' share decides.
    assert bar.total == 100 and bar.n == pytest.approx(100)
    assert "100%|" in err


def test_a_step_budget_alone_counts_steps(bars, capsys):
    _, bar, err = _build(bars, capsys, max_minutes=None, max_steps=7)
    assert bar.total == 7 and bar.n == 7
    assert "7/7" in err


def test_quiet_training_shows_no_bar(bars, capsys):
    config = tiny_config("atomic", steps=None).updated({"train.max_minutes": 0.01})
    GenerativeIndex.build(random_corpus(random.Random(1), 4), config, progress_bar=False)
    assert bars[0].disable
    assert "training" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["atomic", "ngram"])
def test_a_build_logs_its_stages_and_saves_its_loss_history(tmp_path, caplog, monkeypatch, kind):
    every = 4  # a point every 50 steps would make this test slow
    monkeypatch.setattr(dsi.train, "LOG_EVERY_STEPS", every)
    steps = 2 * every + 3
    builder = NgramGenerativeIndex if kind == "ngram" else GenerativeIndex
    corpus = random_corpus(random.Random(2), 6)
    with caplog.at_level(logging.INFO, logger="dsi"):
        index = builder.build(corpus, tiny_config(kind, steps=steps), progress_bar=False)
        index.save(tmp_path / "idx")
    logged = {r.getMessage().split()[1] for r in caplog.records if r.name == "dsi.timing"}
    assert logged == STAGES

    lines = (tmp_path / "idx" / "training_log.jsonl").read_text().splitlines()
    points = [json.loads(line) for line in lines]
    assert [p["step"] for p in points] == [every, 2 * every, steps]
    assert [p["seconds"] for p in points] == sorted(p["seconds"] for p in points)
    assert all(set(p) == {"step", "seconds", "epoch", "loss"} for p in points)
    assert all(p["loss"] > 0 for p in points)
    assert index.lineage[0]["training"]["steps"] == steps

    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert "training_log.jsonl" in manifest["checksums"]
    timings = manifest["lineage"][0]["stage_seconds"]
    assert set(timings) == STAGES and all(v >= 0 for v in timings.values())
    assert "history" not in manifest["lineage"][0]["training"]

    loaded = builder.load(tmp_path / "idx", verify=True)
    assert loaded.training_log == points
    # Saved again, the history and the first save's writing time stay.
    loaded.save(tmp_path / "again")
    assert (tmp_path / "again" / "training_log.jsonl").read_text().splitlines() == lines
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert again["lineage"][0]["stage_seconds"] == timings


def test_a_resumed_run_keeps_the_history_of_its_checkpoint(tmp_path, monkeypatch):
    from transformers import T5Config, T5ForConditionalGeneration

    from dsi.config import TrainConfig
    from dsi.examples import ExampleSet

    monkeypatch.setattr(dsi.train, "LOG_EVERY_STEPS", 2)
    rng = random.Random(0)
    sources = [[rng.randrange(3, 50) for _ in range(6)] for _ in range(8)]
    examples = ExampleSet(sources, [[5 + i % 4, 1] for i in range(8)], ["index"] * 8)
    tiny = T5Config(
        vocab_size=60, d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1,
        num_decoder_layers=1, decoder_start_token_id=0,
    )  # fmt: skip
    model = T5ForConditionalGeneration(tiny)

    def run(steps: int) -> list[dict]:
        config = TrainConfig(max_steps=steps, max_minutes=None, batch_size=4, warmup_steps=1)
        stats = dsi.train.train(model, examples, config, tmp_path / "ckpt", progress_bar=False)
        return stats.history

    first = run(5)
    assert [p["step"] for p in first] == [2, 4, 5]
    resumed = run(9)
    assert resumed[:3] == first  # then every second step again, and the end
    assert [p["step"] for p in resumed] == [2, 4, 5, 6, 8, 9]
