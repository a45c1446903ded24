"""The copying T5 (``dsi.model.CopyT5``): its mixture, its loss, its encoder outputs, its files."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from dsi.config import MODEL_SIZES, ModelConfig, ModelShape
from dsi.model import CopyT5, EncodedSource, build_model, open_model

VOCAB = 400


def tiny_model(copy: bool, seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    shape = dataclasses.replace(MODEL_SIZES["tiny"], copy_attention=copy)
    return build_model(shape, VOCAB, 0)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (4, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0  # a shorter input, padded
    input_ids[1, 6:] = 0
    labels = torch.randint(3, VOCAB, (4, 5), generator=generator)
    labels[:, 0] = input_ids[:, 2]
    labels[2, 3:] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def test_build_model_picks_the_copying_kind_by_config():
    assert isinstance(tiny_model(copy=True), CopyT5)
    # A ModelConfig builds the shape its size names: the index's model copies.
    assert isinstance(build_model(ModelConfig(size="tiny"), VOCAB, 0), CopyT5)
    assert build_model(ModelConfig(size="tiny"), VOCAB, 0).config.d_model == 32
    with pytest.raises(ValueError, match="num_layers \\(2\\) and num_decoder_layers"):
        build_model(ModelShape(32, 64, 8, 2, num_layers=2, num_decoder_layers=1), VOCAB, 0)
    plain = tiny_model(copy=False)
    assert type(plain) is T5ForConditionalGeneration
    assert not getattr(plain.config, "copy_attention", False)


def test_mixture_is_a_distribution_and_the_loss_its_labels_negative_log_likelihood():
    model = tiny_model(copy=True).eval()
    inputs = batch()
    decoder_input_ids = model._shift_right(inputs["labels"])
    plain_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    logprobs = model(**plain_inputs, decoder_input_ids=decoder_input_ids).logits
    assert logprobs.shape == (4, 5, VOCAB)
    assert torch.allclose(logprobs.exp().sum(-1), torch.ones(4, 5), atol=1e-5)
    expected = F.nll_loss(logprobs.reshape(-1, VOCAB), inputs["labels"].reshape(-1))
    out = model(**inputs)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.logits is None  # the loss alone: the full mixture costs as much again
    out.loss.backward()
    assert model.copy_query.weight.grad.abs().sum() > 0
    assert model.copy_gate.weight.grad.abs().sum() > 0


def test_the_gate_mixes_the_vocabulary_with_copies_of_the_input():
    model = tiny_model(copy=True).eval()
    inputs = batch()
    encoded = model.get_encoder()(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
    )
    assert isinstance(encoded, EncodedSource)
    assert torch.equal(encoded.source_ids, inputs["input_ids"])
    start = torch.zeros((4, 1), dtype=torch.long)

    def first_step(gate_bias: float) -> torch.Tensor:
        with torch.no_grad():
            model.copy_gate.bias.fill_(gate_bias)
            return model(
                encoder_outputs=encoded,
                attention_mask=inputs["attention_mask"],
                decoder_input_ids=start,
            ).logits[:, 0]

    # All copy: the mass lies on the input's own (unmasked) tokens.
    copied = first_step(-50.0).exp()
    for row in range(4):
        visible = inputs["input_ids"][row][inputs["attention_mask"][row].bool()]
        assert copied[row, visible.unique()].sum() == pytest.approx(1.0, abs=1e-5)
    assert copied[1, inputs["input_ids"][1, 6:]].sum() < 1e-6 or 0 in inputs["input_ids"][1, :6]
    # All vocabulary: the plain T5 with the same weights.
    plain = T5ForConditionalGeneration(model.config).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        expected = plain(
            **{k: inputs[k] for k in ("input_ids", "attention_mask")}, decoder_input_ids=start
        )
    vocab = expected.logits[:, 0].log_softmax(-1)
    assert torch.allclose(first_step(50.0), vocab, atol=1e-4)


def test_encoder_outputs_without_source_ids_are_refused():
    model = tiny_model(copy=True).eval()
    inputs = batch()
    states = model.get_encoder()(**{k: inputs[k] for k in ("input_ids", "attention_mask")})
    with pytest.raises(ValueError, match="source ids"):
        model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states.last_hidden_state),
            attention_mask=inputs["attention_mask"],
            decoder_input_ids=torch.zeros((4, 1), dtype=torch.long),
        )


def test_beam_search_carries_the_source_ids_with_the_beams():
    model = tiny_model(copy=True).eval()
    inputs = batch()
    plain_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    out = model.generate(
        **plain_inputs,
        num_beams=3,
        num_return_sequences=3,
        max_new_tokens=4,
        do_sample=False,
        length_penalty=0.0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    assert out.sequences.shape[0] == 12
    # Each beam's score is its summed log-probability under the mixture of its own input.
    sequences = out.sequences
    rows = {k: v.repeat_interleave(3, dim=0) for k, v in plain_inputs.items()}
    with torch.no_grad():
        logprobs = model(**rows, decoder_input_ids=sequences[:, :-1]).logits
    steps = logprobs.gather(2, sequences[:, 1:, None]).squeeze(-1)
    is_eos = (sequences[:, 1:] == model.config.eos_token_id).long()
    after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
    expected = steps.masked_fill(after_eos, 0.0).sum(dim=1)
    assert torch.allclose(out.sequences_scores, expected, atol=1e-4)
    # Greedy on the mixture by hand: the best beam of a 1-step search is its argmax.
    first = model.generate(**plain_inputs, num_beams=3, max_new_tokens=1, do_sample=False)
    with torch.no_grad():
        logprobs = model(**plain_inputs, decoder_input_ids=torch.zeros((4, 1), dtype=torch.long))
    assert first[:, 1].tolist() == logprobs.logits[:, 0].argmax(-1).tolist()


def test_save_and_open_keep_the_kind_and_the_weights(tmp_path):
    inputs = batch()
    plain_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    start = torch.zeros((4, 1), dtype=torch.long)
    for copy in (True, False):
        model = tiny_model(copy=copy).eval()
        model.save_pretrained(tmp_path / str(copy))
        opened = open_model(tmp_path / str(copy)).eval()
        assert type(opened) is type(model)
        with torch.no_grad():
            a = model(**plain_inputs, decoder_input_ids=start).logits
            b = opened(**plain_inputs, decoder_input_ids=start).logits
        assert torch.equal(a, b)


def copy_task(rng: random.Random, rare: range, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of filler tokens (3..12) holding one rare token; the target is that token."""
    inputs, targets = [], []
    for _ in range(n):
        tokens = [rng.randrange(3, 13) for _ in range(8)]
        token = rng.choice(rare)
        tokens[rng.randrange(8)] = token
        inputs.append(tokens + [1])
        targets.append([token, 1])
    return torch.tensor(inputs), torch.tensor(targets)


def test_a_copying_model_copies_tokens_it_never_learned_to_write():
    """Trained to copy rare tokens 100..249, the copying model copies 250..399 too, which no
    target held; the plain T5, which must write every token through its vocabulary, cannot."""
    rng = random.Random(0)
    accuracy = {}
    for copy in (True, False):
        model = tiny_model(copy=copy, seed=1)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(150):
            input_ids, labels = copy_task(rng, range(100, 250), 32)
            loss = model(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels
            ).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad()
        model.eval()
        input_ids, labels = copy_task(random.Random(1), range(250, 400), 200)
        first = model.generate(input_ids=input_ids, num_beams=1, max_new_tokens=1, do_sample=False)
        accuracy[copy] = (first[:, 1] == labels[:, 0]).float().mean().item()
    assert accuracy[True] > 0.9
    assert accuracy[False] < 0.05
