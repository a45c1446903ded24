"""The seq2seq model and its text tokenizer: a T5 built from config or loaded from a checkpoint.

Docid symbols live after the text vocabulary: symbol ``i`` is model token ``docid_offset + i``.
This module knows that offset but nothing of docid schemes or tries.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)

from dsi.config import ModelConfig

log = logging.getLogger(__name__)

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, workdir: Path, seed: int = 13, lowercase: bool = False
) -> PreTrainedTokenizerBase:
    """Train a unigram sentencepiece model on ``texts`` with T5's special ids (pad 0, eos 1, unk 2).

    With ``lowercase`` the tokenizer folds case (its normaliser, saved with it, does this for
    every text it is given later too).
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    texts = [t for t in texts if t.strip()]
    # Sentencepiece fails if it cannot reach the requested vocabulary on a small corpus.
    distinct_chars = len(set("".join(texts[:5000])))
    upper = max(distinct_chars + 8, sum(len(t.split()) for t in texts) // 2)
    vocab_size = max(64, min(vocab_size, upper))
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        character_coverage=0.9995,
        normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
        input_sentence_size=200_000,
        shuffle_input_sentence=True,
        hard_vocab_limit=False,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "spiece.model").write_bytes(model.getvalue())
    # T5Tokenizer(vocab_file=...) silently ignores the file in transformers 5: load by directory.
    return T5Tokenizer.from_pretrained(str(workdir), extra_ids=0, legacy=False)


def load_tokenizer(name_or_dir: str | Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(name_or_dir))


def build_model(config: ModelConfig, text_vocab_size: int, num_docid_symbols: int):
    """A randomly initialised T5 whose vocabulary is the text vocabulary plus the docid symbols."""
    if config.num_layers != config.num_decoder_layers:
        # transformers 5 generation fails in the decoder cache when the depths differ.
        raise ValueError(
            f"model_config.num_layers ({config.num_layers}) and num_decoder_layers "
            f"({config.num_decoder_layers}) must be equal."
        )
    t5 = T5Config(
        vocab_size=text_vocab_size + num_docid_symbols,
        d_model=config.d_model,
        d_ff=config.d_ff,
        d_kv=config.d_kv,
        num_heads=config.num_heads,
        num_layers=config.num_layers,
        num_decoder_layers=config.num_decoder_layers,
        dropout_rate=config.dropout_rate,
        decoder_start_token_id=PAD_ID,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
    )
    model = T5ForConditionalGeneration(t5)
    _set_generation_ids(model)
    return model


def load_model(name_or_dir: str | Path, num_docid_symbols: int | None = None):
    """Load a T5 checkpoint; with ``num_docid_symbols``, grow its vocabulary by that many tokens.

    Returns ``(model, docid_offset)``: the first token id that belongs to docid symbols.
    """
    model = T5ForConditionalGeneration.from_pretrained(str(name_or_dir))
    offset = model.config.vocab_size
    if num_docid_symbols:
        model.resize_token_embeddings(offset + num_docid_symbols, mean_resizing=False)
    _set_generation_ids(model)
    return model, offset


def grow_vocabulary(model, new_size: int) -> None:
    """Add rows for new docid symbols; existing rows (and so existing docids) are unchanged."""
    if new_size > model.config.vocab_size:
        model.resize_token_embeddings(new_size, mean_resizing=False)


def _set_generation_ids(model) -> None:
    gen = model.generation_config
    gen.decoder_start_token_id = model.config.decoder_start_token_id
    gen.pad_token_id = model.config.pad_token_id
    gen.eos_token_id = model.config.eos_token_id


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
