"""TrieLogitsProcessor masks, and a tiny random T5 that may only emit sequences in the trie."""

from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from trie import PrefixTrie, TrieLogitsProcessor

START, PAD, EOS, VOCAB = 0, 0, 1, 64


def tiny_t5(seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=VOCAB, d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
        decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS,
    )  # fmt: skip
    return T5ForConditionalGeneration(config).eval()


def docids(rng: random.Random, n: int, max_len: int) -> set[tuple[int, ...]]:
    out: set[tuple[int, ...]] = set()
    while len(out) < n:
        out.add(tuple(rng.randrange(2, VOCAB) for _ in range(rng.randint(1, max_len))) + (EOS,))
    return out


def cut(row: list[int]) -> tuple[int, ...]:
    """Drop the decoder start and everything after the first EOS (transformers pads)."""
    body = row[1:]
    return tuple(body[: body.index(EOS) + 1]) if EOS in body else tuple(body)


def allowed_set(scores_row: torch.Tensor) -> set[int]:
    return set(torch.isfinite(scores_row).nonzero().flatten().tolist())


@pytest.mark.parametrize("inplace", [False, True])
def test_mask_rows(inplace: bool) -> None:
    trie = PrefixTrie.from_sequences([(5, 6, EOS), (5, 7, EOS), (9, EOS)])
    proc = TrieLogitsProcessor(trie, START, EOS, PAD, inplace=inplace)
    prefixes = [[], [5], [5, 6], [9, EOS, PAD], [8], [5, 7]]
    expected = [{5, 9}, {6, 7}, {EOS}, {PAD, EOS}, set(), {EOS}]
    for p, exp in zip(prefixes, expected, strict=True):
        scores = torch.randn(2, VOCAB)
        given = scores.clone()
        out = proc(torch.tensor([[START, *p]] * 2), given)
        assert (out is given) == inplace
        for r in range(2):
            assert allowed_set(out[r]) == exp
            keep = sorted(exp)
            assert torch.equal(out[r, keep], scores[r, keep])  # allowed scores untouched
    assert proc.dead_rows == 2 and proc.last_dead_rows == 0 and proc.calls == len(prefixes)
    proc.reset_counters()
    assert proc.dead_rows == proc.calls == 0


@pytest.mark.parametrize("inplace", [False, True])
def test_mixed_batch_sparse_and_dense_paths(inplace: bool) -> None:
    wide = set(range(2, VOCAB))
    seqs = [(t, EOS) for t in wide] + [(2, t, EOS) for t in wide]
    proc = TrieLogitsProcessor(PrefixTrie.from_sequences(seqs), START, EOS, PAD, inplace=inplace)
    # Most of the vocabulary is allowed here: the dense (one row per distinct prefix) path.
    ids = torch.tensor([[START, 2], [START, 5], [START, 2], [START, PAD]])
    scores = torch.randn(4, VOCAB)
    out = proc(ids, scores.clone())
    assert [allowed_set(r) for r in out] == [wide | {EOS}, {EOS}, wide | {EOS}, set()]
    assert proc.last_dead_rows == 1
    assert torch.equal(out[0, 1:], scores[0, 1:]) and torch.equal(out[2, 1:], scores[2, 1:])
    # Few tokens allowed: the sparse (row, col) pair path.
    ids = torch.tensor([[START, 2, 7], [START, 5, EOS], [START, 2, 9], [START, 3, EOS]])
    out = proc(ids, scores.clone())
    assert [allowed_set(r) for r in out] == [{EOS}, {PAD, EOS}, {EOS}, {PAD, EOS}]
    assert proc.last_dead_rows == 0 and proc.dead_rows == 1
    out = proc(torch.tensor([[START, 9, 9]]), scores[:1].clone())  # nothing allowed at all
    assert allowed_set(out[0]) == set() and proc.dead_rows == 2


def test_vocab_too_small() -> None:
    proc = TrieLogitsProcessor(PrefixTrie.from_sequences([(100, EOS)]), START, EOS, PAD)
    with pytest.raises(ValueError, match="token id 100"):
        proc(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, VOCAB))


def test_dtype_preserved() -> None:
    proc = TrieLogitsProcessor(PrefixTrie.from_sequences([(5, EOS)]), START, EOS, PAD)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        out = proc(torch.zeros(3, 1, dtype=torch.long), torch.randn(3, VOCAB).to(dtype))
        assert out.dtype == dtype and allowed_set(out[0].float()) == {5}


def generate(model, proc, n_queries: int, length: int, beams: int = 5) -> torch.Tensor:
    inputs = torch.randint(2, VOCAB, (n_queries, 6), generator=torch.Generator().manual_seed(1))
    out = model.generate(
        input_ids=inputs, num_beams=beams, num_return_sequences=beams, do_sample=False,
        logits_processor=LogitsProcessorList([proc]), max_new_tokens=length + 1,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    return out


@pytest.mark.parametrize(("seed", "inplace"), [(0, False), (1, True), (2, False)])
def test_generate_only_trie_sequences(seed: int, inplace: bool) -> None:
    rng = random.Random(seed)
    length = 4
    seqs = docids(rng, 25, length)
    trie = PrefixTrie.from_sequences(seqs)
    proc = TrieLogitsProcessor(trie, START, EOS, PAD, inplace=inplace)
    out = generate(tiny_t5(seed), proc, n_queries=3, length=length)
    for row, score in zip(out.sequences.tolist(), out.sequences_scores.tolist(), strict=True):
        assert cut(row) in trie, row
        assert math.isfinite(score)
    assert proc.calls > 0


def test_generate_greedy_pads_finished_rows() -> None:
    seqs = {(5, EOS), (6, 7, 8, 9, EOS), (6, 7, 8, 10, EOS)}
    proc = TrieLogitsProcessor(PrefixTrie.from_sequences(seqs), START, EOS, PAD)
    inputs = torch.randint(2, VOCAB, (6, 5), generator=torch.Generator().manual_seed(0))
    out = tiny_t5(1).generate(
        input_ids=inputs, do_sample=False, num_beams=1,
        logits_processor=LogitsProcessorList([proc]), max_new_tokens=6,
    )  # fmt: skip
    for row in out.tolist():
        assert cut(row) in seqs


def test_generate_fewer_docids_than_beams() -> None:
    # transformers fills the missing beams with copies of finished ones scored about -1e9 / len:
    # still trie sequences, and the best len(seqs) per query are the distinct docids.
    seqs = {(5, EOS), (6, 7, EOS), (6, 8, 9, EOS)}
    proc = TrieLogitsProcessor(PrefixTrie.from_sequences(seqs), START, EOS, PAD)
    out = generate(tiny_t5(0), proc, n_queries=2, length=3)
    rows = [cut(r) for r in out.sequences.tolist()]
    scores = out.sequences_scores.tolist()
    assert all(r in seqs for r in rows)
    for q in range(2):
        ranked = sorted(
            zip(scores[q * 5 : q * 5 + 5], rows[q * 5 : q * 5 + 5], strict=True), reverse=True
        )
        assert {r for _, r in ranked[:3]} == seqs and all(sc > -1e3 for sc, _ in ranked[:3])


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000))
def test_property_generate(seed: int) -> None:
    rng = random.Random(seed)
    length = rng.randint(1, 4)
    seqs = docids(rng, rng.randint(10, 30), length)
    proc = TrieLogitsProcessor(PrefixTrie.from_sequences(seqs), START, EOS, PAD)
    out = generate(MODEL, proc, n_queries=2, length=length)
    for row, score in zip(out.sequences.tolist(), out.sequences_scores.tolist(), strict=True):
        assert cut(row) in seqs and math.isfinite(score)


MODEL = tiny_t5(7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    trie = PrefixTrie.from_sequences(docids(random.Random(0), 50, 4))
    proc = TrieLogitsProcessor(trie, START, EOS, PAD)
    ids = torch.tensor([[START], [START]])
    scores = torch.randn(2, VOCAB)
    cpu = proc(ids, scores)
    gpu = proc(ids.cuda(), scores.cuda())
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
