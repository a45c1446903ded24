"""The GENRE-style nested-dict peer gives the same allowed sets as PrefixTrie."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import torch
from transformers import T5Config, T5ForConditionalGeneration

from trie import PrefixTrie, TrieLogitsProcessor

PEER_PATH = Path(__file__).resolve().parents[2] / "bench" / "decode_bench_peer.py"
_spec = importlib.util.spec_from_file_location("decode_bench_peer", PEER_PATH)
peer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peer)

START, PAD, EOS, VOCAB = 0, 0, 1, 64


def test_same_allowed_sets_as_prefix_trie() -> None:
    rng = random.Random(0)
    seqs = {
        tuple(rng.randrange(2, VOCAB) for _ in range(rng.randint(1, 5))) + (EOS,)
        for _ in range(300)
    }
    trie = PrefixTrie.from_sequences(seqs)
    nested = peer.build_genre_trie(seqs)
    fn = peer.genre_prefix_allowed_tokens_fn(nested, START)
    prefixes = {s[:i] for s in seqs for i in range(len(s) + 1)} | {(63, 63, 63), (5, EOS, 0)}
    for p in prefixes:
        got = fn(0, torch.tensor([START, *p]))
        assert sorted(got) == trie.next_tokens(p).tolist()
    assert peer.genre_prefix_allowed_tokens_fn(nested, START, fallback=[PAD])(
        0, torch.tensor([START, 63, 63, 63])
    ) == [PAD]


def test_generate_with_peer_matches_processor() -> None:
    rng = random.Random(1)
    seqs = {tuple(rng.randrange(2, VOCAB) for _ in range(3)) + (EOS,) for _ in range(40)}
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=VOCAB, d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
        decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS,
    )  # fmt: skip
    model = T5ForConditionalGeneration(config).eval()
    inputs = torch.randint(2, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
    common = {"input_ids": inputs, "num_beams": 5, "num_return_sequences": 5, "max_new_tokens": 4}
    fn = peer.genre_prefix_allowed_tokens_fn(peer.build_genre_trie(seqs), START, fallback=[PAD])
    a = model.generate(prefix_allowed_tokens_fn=fn, **common)
    proc = TrieLogitsProcessor(PrefixTrie.from_sequences(seqs), START, EOS, PAD)
    b = model.generate(logits_processor=[proc], **common)
    assert torch.equal(a, b)
