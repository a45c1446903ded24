"""NgramLogitsProcessor: masks, and a tiny random T5 that may only emit corpus n-grams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from docid.ngram import seal_score
from trie.fmindex import NgramIndex
from trie.ngram_processor import NgramLogitsProcessor

PAD, EOS, VOCAB = 0, 1, 64


def corpus(seed: int, num_docs: int = 12) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # A skewed alphabet so some n-grams repeat across documents.
    return [
        (rng.zipf(1.5, size=int(rng.integers(3, 25))) % (VOCAB - 2) + 2).tolist()
        for _ in range(num_docs)
    ]


def contains(doc: list[int], ngram: tuple[int, ...]) -> bool:
    k = len(ngram)
    return any(tuple(doc[i : i + k]) == ngram for i in range(len(doc) - k + 1))


def cut(seq: list[int]) -> tuple[int, ...]:
    """Generated ids without the decoder start token, up to the first EOS."""
    body = seq[1:]
    return tuple(body[: body.index(EOS)] if EOS in body else body)


def test_mask_rows():
    docs = [[2, 3, 4], [3, 4, 5], [3, 9]]
    index = NgramIndex.build(docs, separator=PAD)
    proc = NgramLogitsProcessor(
        index, decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD
    )
    input_ids = [[0], [0, 3], [0, 3, 4], [0, 7], [0, 1]]
    allowed = []
    for row in input_ids:
        scores = torch.zeros(1, 10)
        out = proc(torch.tensor([row]), scores)
        allowed.append(torch.isfinite(out[0]).nonzero().flatten().tolist())
    assert allowed == [[2, 3, 4, 5, 9], [1, 4, 9], [1, 5], [1], [0, 1]]
    # Same rows in one batch (equal lengths): one call gives the same masks.
    batch = torch.tensor([[0, 3, 4], [0, 2, 3], [0, 9, 9]])
    out = proc(batch, torch.zeros(3, 10))
    got = [torch.isfinite(r).nonzero().flatten().tolist() for r in out]
    assert got == [[1, 5], [1, 4], [1]]
    # Ids beyond the model vocabulary are dropped, never indexed.
    assert torch.isfinite(
        proc(torch.tensor([[0]]), torch.zeros(1, 4))[0]
    ).nonzero().flatten().tolist() == [2, 3]


def test_min_tokens_validation():
    index = NgramIndex.build([[2, 3]])
    with pytest.raises(ValueError, match="min_tokens"):
        NgramLogitsProcessor(index, 0, 1, min_tokens=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_t5_generates_only_corpus_ngrams_and_scoring_finds_them(seed: int):
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        decoder_start_token_id=PAD,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    model = T5ForConditionalGeneration(config).eval()
    docs = corpus(seed)
    index = NgramIndex.build(docs, separator=PAD)
    proc = NgramLogitsProcessor(
        index, decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD
    )
    queries = torch.randint(2, VOCAB, (3, 6))
    with torch.no_grad():
        out = model.generate(
            input_ids=queries,
            attention_mask=torch.ones_like(queries),
            num_beams=5,
            num_return_sequences=5,
            max_new_tokens=8,
            length_penalty=0.0,
            output_scores=True,
            return_dict_in_generate=True,
            logits_processor=LogitsProcessorList([proc]),
        )
    sequences = out.sequences.tolist()
    scores = out.sequences_scores.tolist()
    assert len(sequences) == 15
    for q in range(3):
        found = []
        for seq, score in zip(sequences[5 * q : 5 * q + 5], scores[5 * q : 5 * q + 5], strict=True):
            ngram = cut(seq)
            assert ngram, "EOS must not be allowed before the first token"
            assert PAD not in ngram
            assert index.count(ngram) > 0, f"{ngram} is not a corpus n-gram"
            found.append((ngram, score))
        # A random model's log-probs may all fall below the corpus prior (no document scores);
        # confident copies of the same n-grams must score.
        confident = [(ngram, -0.05) for ngram, _ in found]
        for candidates in (found, confident):
            ranked = seal_score(candidates, index, max_occurrences=10**6, smoothing=0.0)
            for doc, value in ranked:
                assert value > 0
                assert any(contains(docs[doc], ngram) for ngram, _ in found)
        assert ranked
