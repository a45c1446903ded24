"""Starting from a pretrained checkpoint (``IndexConfig.model``, ``dsi index --model``): a tiny T5
the test saves itself with ``save_pretrained``, so nothing comes from the hub."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    T5Config,
    T5ForConditionalGeneration,
)

from dsi.cli import main
from dsi.kinds import index_class
from dsi.model import PRETRAINED_LEARNING_RATE, CopyT5, load_model, takes_copy_head, train_tokenizer
from dsi.retriever import Retriever
from tests.conftest import WORDS, random_corpus, tiny_config


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> Path:
    """A T5 and its sentencepiece tokenizer, saved as a pretrained checkpoint is."""
    root = tmp_path_factory.mktemp("tiny-t5")
    rng = random.Random(5)
    sentences = [" ".join(rng.choices(WORDS, k=12)) + "." for _ in range(200)]
    tokenizer = train_tokenizer(sentences, 200, root / "spm", lowercase=True)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_heads=2,
        num_layers=1,
        num_decoder_layers=1,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        feed_forward_proj="relu",
    )
    torch.manual_seed(0)
    directory = root / "t5"
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _pretrained_config(model: Path, docids: str = "atomic"):
    return dataclasses.replace(tiny_config(docids, steps=3), model=str(model))


def _tiny_bart(directory: Path, vocab_size: int = 50) -> Path:
    bart = BartConfig(
        vocab_size=vocab_size,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
    )
    BartForConditionalGeneration(bart).save_pretrained(directory)
    return directory


def test_copy_head_goes_on_top_of_the_pretrained_t5(tiny_t5):
    pretrained = T5ForConditionalGeneration.from_pretrained(str(tiny_t5))
    model, offset = load_model(tiny_t5, num_docid_symbols=7, copy_attention=True)
    assert isinstance(model, CopyT5) and model.config.copy_attention
    assert offset == pretrained.config.vocab_size
    assert model.config.vocab_size == offset + 7
    # The pretrained weights, text rows of the vocabulary included, are kept as they were.
    assert torch.equal(model.shared.weight[:offset], pretrained.shared.weight)
    block = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert torch.equal(model.state_dict()[block], pretrained.state_dict()[block])
    # The new head starts as CopyT5 starts it: a closed gate (half copy, half vocabulary).
    assert torch.all(model.copy_gate.weight == 0) and torch.all(model.copy_gate.bias == 0)

    plain, _ = load_model(tiny_t5, num_docid_symbols=7, copy_attention=False)
    assert type(plain) is T5ForConditionalGeneration


@pytest.mark.parametrize("docids", ["atomic", "ngram", "keywords"])
def test_an_index_built_from_a_pretrained_t5_saves_loads_and_searches(tiny_t5, tmp_path, docids):
    corpus = random_corpus(random.Random(1), 8)
    config = _pretrained_config(tiny_t5, docids)
    copy_attention = True  # a T5 gets the copy head
    index = index_class(docids).build(corpus, config, progress_bar=False)
    assert isinstance(index.model, CopyT5) is copy_attention
    index.save(tmp_path / "idx")
    retriever = Retriever.load(tmp_path / "idx")
    assert isinstance(retriever.index.model, CopyT5) is copy_attention
    assert retriever.index.config.model == str(tiny_t5)
    hits = retriever.search([corpus.texts[0]], k=3)[0]
    assert len(hits) == 3 and all(hit.doc_id in corpus.doc_ids for hit in hits)
    if docids == "keywords":  # written in the pretrained tokenizer's pieces: no new tokens
        assert retriever.index.docid_tokens.new_tokens == 0
        assert index.model.config.vocab_size == T5Config.from_pretrained(tiny_t5).vocab_size


def test_another_architecture_loads_without_the_copy_head_and_is_refused_with_it(tmp_path):
    _tiny_bart(tmp_path / "bart")
    assert takes_copy_head(tmp_path / "bart") is False
    model, offset = load_model(tmp_path / "bart", num_docid_symbols=4, copy_attention=False)
    assert type(model) is BartForConditionalGeneration and offset == 50
    assert model.config.vocab_size == 54
    with pytest.raises(ValueError, match=r"built for T5 models.*bart model.*copy_attention"):
        load_model(tmp_path / "bart", num_docid_symbols=4, copy_attention=True)


def test_an_index_from_another_architecture_trains_it_without_the_copy_head(tiny_t5, tmp_path):
    """The copy head follows the checkpoint: a T5 gets it, a BART trains plain (with the T5's
    tokenizer copied beside it, since a BART's own needs files this test does not write)."""
    import shutil

    vocab_size = T5Config.from_pretrained(tiny_t5).vocab_size
    bart = _tiny_bart(tmp_path / "bart", vocab_size)
    model_files = {"config.json", "generation_config.json", "model.safetensors"}
    for path in tiny_t5.iterdir():
        if path.is_file() and path.name not in model_files:
            shutil.copy(path, bart / path.name)
    assert takes_copy_head(tiny_t5) is True
    corpus = random_corpus(random.Random(1), 8)
    index = index_class("atomic").build(corpus, _pretrained_config(bart), progress_bar=False)
    assert type(index.model) is BartForConditionalGeneration


def test_what_is_not_a_seq2seq_model_is_refused_in_one_sentence(tmp_path):
    gpt2 = GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    GPT2LMHeadModel(gpt2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="is a gpt2 model, not a sequence-to-sequence one"):
        load_model(tmp_path / "gpt2", num_docid_symbols=4)
    with pytest.raises(ValueError, match="There is no model to load at") as missing:
        load_model(tmp_path / "absent", num_docid_symbols=4)
    assert "\n" not in str(missing.value)


def _write_corpus(path: Path) -> Path:
    corpus = random_corpus(random.Random(2), 8)
    with path.open("w") as handle:
        for doc_id, title, text in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True):
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    return path


TINY_TRAIN = ["--set", "train.batch_size=8", "--set", "train.warmup_steps=2", "--max-steps", "2"]


def test_cli_model_records_the_name_and_takes_the_pretrained_learning_rate(
    tiny_t5, tmp_path, capsys
):
    corpus = _write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "idx"
    args = ["index", "--corpus", str(corpus), "--output", str(out), "--docids", "atomic"]
    assert main([*args, "--model", str(tiny_t5), *TINY_TRAIN, "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == str(tiny_t5)
    config = json.loads((out / "index.json").read_text())
    assert config["model"] == str(tiny_t5)
    assert config["train"]["learning_rate"] == PRETRAINED_LEARNING_RATE

    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "river stone"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    evaluate = ["eval", "--index", str(out), "--queries", str(tmp_path / "q.jsonl")]
    evaluate += ["--qrels", str(tmp_path / "qrels.tsv"), "--run-file", str(tmp_path / "r.trec")]
    assert main([*evaluate, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(tiny_t5)

    # A learning rate the user gives is kept.
    other = tmp_path / "idx2"
    given = [*args[:3], "--output", str(other), "--docids", "atomic", "--model", str(tiny_t5)]
    given += [*TINY_TRAIN, "--set", "train.learning_rate=0.001", "--quiet"]
    assert main(given) == 0
    capsys.readouterr()
    assert json.loads((other / "index.json").read_text())["train"]["learning_rate"] == 0.001


def test_cli_model_that_does_not_exist_is_one_error_with_exit_2(tmp_path, capsys):
    corpus = _write_corpus(tmp_path / "corpus.jsonl")
    missing = tmp_path / "no-such-model"
    args = ["index", "--corpus", str(corpus), "--output", str(tmp_path / "idx")]
    assert main([*args, "--model", str(missing), *TINY_TRAIN, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsi: error: There is no model to load at") and "\n" not in err
    assert not (tmp_path / "idx").exists()
