"""dsi.decoding.beam_search against transformers' generate, and CopyT5.decode_step against forward."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from dsi.config import MODEL_SIZES
from dsi.decoding import RideAlong, beam_search, constrained_generate, next_token_logits
from dsi.model import build_model

VOCAB = 120


class EndsOften(LogitsProcessor):
    """Allows a few tokens and favours EOS, so that beams end at different steps."""

    def __init__(self, eos: int) -> None:
        self.eos = eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        allowed = torch.arange(3, 15)
        out[:, allowed] = scores[:, allowed]
        # More likely to end after an odd token: beams finish at different lengths.
        odd = (input_ids[:, -1] % 2 == 1).float()
        out[:, self.eos] = scores[:, self.eos] + 1.5 + 2.0 * odd
        return out


def tiny(copy: bool) -> torch.nn.Module:
    torch.manual_seed(3)
    return build_model(dataclasses.replace(MODEL_SIZES["tiny"], copy_attention=copy), VOCAB, 0)


def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    input_ids = torch.randint(3, VOCAB, (3, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 4:] = 0  # a shorter input, padded
    input_ids[2, 4:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.mark.parametrize("copy", [True, False])
@pytest.mark.parametrize("beams", [2, 5])
@pytest.mark.parametrize("prompt", [False, True])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_search_is_transformers_beam_search(copy, beams, prompt, length_penalty):
    model = tiny(copy).eval()
    enc = inputs()
    if prompt:  # a decoder prompt, as the fused kind's docid search has
        start = model.config.decoder_start_token_id
        enc["decoder_input_ids"] = torch.tensor([[start, 7]] * 3)
    processor = EndsOften(model.config.eos_token_id)
    with torch.inference_mode():
        expected = model.generate(
            **enc,
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=6,
            logits_processor=LogitsProcessorList([processor]),
            do_sample=False,
            length_penalty=length_penalty,
            early_stopping=True,
            output_scores=True,
            output_logits=True,
            return_dict_in_generate=True,
        )
    first: list[torch.Tensor] = []
    sequences, scores = beam_search(model, enc, beams, 6, processor, length_penalty, first)
    assert torch.equal(sequences, expected.sequences)
    assert torch.equal(scores, expected.sequences_scores)
    assert torch.equal(first[0], expected.logits[0][::beams])
    # The sequences ended at different lengths: the finishing logic was exercised.
    eos = model.config.eos_token_id
    ends = {row.index(eos) if eos in row else None for row in sequences.tolist()}
    assert len(ends) > 1
    # constrained_generate returns the same without the start token.
    listed, listed_scores = constrained_generate(model, enc, beams, 6, processor, length_penalty)
    assert listed == expected.sequences[:, 1:].tolist()
    assert listed_scores == expected.sequences_scores.tolist()


def test_decode_step_gives_the_forward_logits():
    model = tiny(copy=True).eval()
    enc = inputs()
    prefix = torch.tensor([[0, 5, 9, 4]] * 3)
    with torch.inference_mode():
        encoded = model.get_encoder()(**enc)
        forward = model(
            encoder_outputs=encoded, attention_mask=enc["attention_mask"], decoder_input_ids=prefix
        ).logits
        whole, _ = next_token_logits(model, encoded, enc["attention_mask"], prefix)
        # Token by token through the cache: the same distribution at every position.
        cache = None
        for t in range(prefix.shape[1]):
            ids = prefix[:, : t + 1] if cache is None else prefix[:, t : t + 1]
            step, cache = model.decode_step(encoded, enc["attention_mask"], ids, cache)
            assert torch.allclose(step, forward[:, t], atol=1e-5)
    assert torch.equal(whole, forward[:, -1])


@pytest.mark.parametrize("copy", [True, False])
@pytest.mark.parametrize("max_new_tokens", [1, 6])
def test_rows_ride_along_with_the_second_pass_without_changing_the_beams(copy, max_new_tokens):
    model = tiny(copy).eval()
    enc = inputs()
    processor = EndsOften(model.config.eos_token_id)
    plain, plain_scores = beam_search(model, enc, 4, max_new_tokens, processor)
    firsts = []

    def choose(first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        firsts.append(first)
        # Inputs 2, 0, 2 continued by their first step's best tokens and by token 9.
        return torch.tensor([2, 0, 2]), torch.stack(
            [first[2].argmax(), first[0].argmax()] + [torch.tensor(9)]
        )

    ride = RideAlong(choose)
    sequences, scores = beam_search(model, enc, 4, max_new_tokens, processor, ride_along=ride)
    assert torch.equal(sequences, plain) and torch.equal(scores, plain_scores)
    # Each row's logits are those of a pass of its own over [start, token].
    start = model.config.decoder_start_token_id
    tokens = [int(firsts[0][2].argmax()), int(firsts[0][0].argmax()), 9]
    with torch.inference_mode():
        own = (
            model(
                input_ids=enc["input_ids"][[2, 0, 2]],
                attention_mask=enc["attention_mask"][[2, 0, 2]],
                decoder_input_ids=torch.tensor([[start, t] for t in tokens]),
            )
            .logits[:, -1]
            .float()
        )
    assert ride.logits.shape == own.shape
    assert torch.allclose(ride.logits, own, atol=1e-5)


def test_greedy_decoding_shows_the_first_step_to_rows_that_ride_along():
    model = tiny(copy=True).eval()
    seen = []
    ride = RideAlong(lambda first: seen.append(first) or (torch.zeros(0), torch.zeros(0)))
    constrained_generate(model, inputs(), 1, 3, EndsOften(1), ride_along=ride)
    assert seen[0].shape == (3, VOCAB) and ride.logits is None
