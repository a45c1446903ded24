"""The seq2seq model and its text tokenizer: a T5 built from config or loaded from a checkpoint
(any ``AutoModelForSeq2SeqLM`` checkpoint, local or from the hub).

Docid symbols live after the text vocabulary: symbol ``i`` is model token ``docid_offset + i``.
This module knows that offset but nothing of docid schemes or tries.
"""

from __future__ import annotations

import functools
import inspect
import io
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from dsi.config import ModelConfig, ModelShape

log = logging.getLogger(__name__)

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
# The peak learning rate of a pretrained start (``IndexConfig.model``) unless one is given: the
# usual rate for fine-tuning T5 with AdamW. TrainConfig's default (2e-3) suits a 2M-parameter T5
# trained from scratch and would wipe out much of what a pretrained model knows.
PRETRAINED_LEARNING_RATE = 3e-4


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
    # Half the words bound the vocabulary; counting stops where they cannot bind it (a million
    # passages need not all be split for that).
    words = 0
    for text in texts:
        words += len(text.split())
        if words >= 2 * vocab_size:
            break
    upper = max(distinct_chars + 8, words // 2)
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
        # A sample of 200k texts (drawn by sentencepiece as they stream by) is enough for the
        # vocabulary and bounds its memory: ~+1 GB at 200k passages of 60 words, ~100 CPU-s.
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
    """The tokenizer saved with a model (a local directory or a hub name)."""
    try:
        return AutoTokenizer.from_pretrained(str(name_or_dir))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"There is no tokenizer to load at {name_or_dir} ({first_line(exc)})."
        ) from exc


def model_label(name: str | None) -> str:
    """What results record as the model: the checkpoint's name, or that it was built new."""
    return name or "new T5 (model_config)"


@dataclass
class EncodedSource(BaseModelOutput):
    """Encoder states with the token ids they encode, which :class:`CopyT5` copies from."""

    source_ids: torch.LongTensor | None = None


class _SourceKeepingEncoder:
    """The encoder of a :class:`CopyT5`, returning :class:`EncodedSource` (what ``generate`` and
    callers get from ``get_encoder()``, so that beams carry the source ids with the states)."""

    def __init__(self, encoder: nn.Module) -> None:
        self.encoder = encoder

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> EncodedSource:
        if input_ids is None:
            raise ValueError("A copying model encodes token ids, not embeddings.")
        kwargs["return_dict"] = True
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return EncodedSource(last_hidden_state=states.last_hidden_state, source_ids=input_ids)

    __call__ = forward


class CopyT5(T5ForConditionalGeneration):
    """T5 whose next token is drawn from a mixture of its vocabulary softmax and a copy
    distribution over the tokens of its input (a pointer-generator, See et al. 2017).

    The copy distribution is an attention of the decoder state over the encoder states, its
    weights summed per input token; a learned gate mixes the two. Its ``logits`` are the
    mixture's log-probabilities (normalised, so a ``log_softmax`` leaves them unchanged); given
    ``labels`` it computes only the loss.
    Encoder outputs given to :meth:`forward` must be :class:`EncodedSource`, as
    ``get_encoder()`` returns them.
    """

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        d_model = config.d_model
        self.copy_query = nn.Linear(d_model, d_model, bias=False)
        self.copy_gate = nn.Linear(d_model, 1)
        self.init_copy_head()

    def init_copy_head(self) -> None:
        """Set the copy head to its initial state (after loading a T5 that had none, whose
        loading initialises missing weights in its own way)."""
        with torch.no_grad():
            # Scores of unit variance over T5's normalised states: the decoder's reach lm_head
            # scaled by d_model ** -0.5, the encoder's at unit scale.
            self.copy_query.weight.normal_(0.0, 1.0)
            # A gate of 0: half vocabulary, half copy, until training says otherwise.
            self.copy_gate.weight.zero_()
            self.copy_gate.bias.zero_()

    @staticmethod
    def _copy_loss(
        vocab_logprobs: torch.Tensor,
        attention: torch.Tensor,
        gate: torch.Tensor,
        source_ids: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """Mean negative log-probability of the labels (-100: ignored) under the mixture."""
        labels = labels.to(vocab_logprobs.device)
        known = labels != -100
        targets = labels.clamp_min(0)
        vocab = vocab_logprobs.gather(2, targets[..., None]).squeeze(-1)
        copied = (attention * (source_ids[:, None, :] == targets[..., None])).sum(dim=-1)
        logprobs = _mixture(gate.squeeze(-1), vocab, copied)
        return -(logprobs * known).sum() / known.sum().clamp_min(1)

    def get_encoder(self, *args, **kwargs) -> _SourceKeepingEncoder:
        return _SourceKeepingEncoder(super().get_encoder(*args, **kwargs))

    def forward(
        self, input_ids=None, attention_mask=None, encoder_outputs=None, labels=None, **kwargs
    ):
        if encoder_outputs is None:
            encoder_outputs = self.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        source_ids = getattr(encoder_outputs, "source_ids", None)
        if source_ids is None:
            raise ValueError(
                "A copying model needs the source ids with its encoder outputs: encode with "
                "model.get_encoder(), which returns them."
            )
        no_decoder_input = kwargs.get("decoder_input_ids") is None
        if labels is not None and no_decoder_input and kwargs.get("decoder_inputs_embeds") is None:
            kwargs["decoder_input_ids"] = self._shift_right(labels)
        decoder_states: list[torch.Tensor] = []
        # The decoder's final states are what lm_head reads; the parent's forward keeps them.
        hook = self.lm_head.register_forward_hook(
            lambda _m, args, _o: decoder_states.append(args[0])
        )
        try:
            out = super().forward(
                attention_mask=attention_mask, encoder_outputs=encoder_outputs, **kwargs
            )
        finally:
            hook.remove()
        states = decoder_states[-1]
        attention, gate = self._copy_attention(states, encoder_outputs, attention_mask)
        vocab_logprobs = out.logits.float().log_softmax(dim=-1)
        if labels is not None:
            out["loss"] = self._copy_loss(vocab_logprobs, attention, gate, source_ids, labels)
            # The mixture over the whole vocabulary would cost as much again as the step.
            out["logits"] = None
            return out
        out["logits"] = _mixed(vocab_logprobs, attention, gate, source_ids)
        return out

    def _copy_attention(
        self, states: torch.Tensor, encoder_outputs: EncodedSource, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The copy attention of decoder ``states`` over the encoder's, and the gate's logit."""
        keys = encoder_outputs.last_hidden_state
        scores = self.copy_query(states) @ keys.transpose(1, 2) / keys.shape[-1] ** 0.5
        if attention_mask is not None:
            scores = scores.masked_fill(attention_mask[:, None, :] == 0, -1e9)
        return scores.float().softmax(dim=-1), self.copy_gate(states).float()

    def decode_step(
        self,
        encoder_outputs: EncodedSource,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        cache: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """:meth:`forward`'s logits at the last position of ``decoder_input_ids``, and the
        decoder's cache (give it back with the next tokens alone): the same floats, without
        transformers' per-call wrappers, which cost a decoding loop about 1 ms a step."""
        name = cache_parameter(type(self.decoder))  # also the output's name for it
        if cache is None:
            # Made here, the decoder would deep-copy the model's configuration for it.
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        out = self.decoder(
            input_ids=decoder_input_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            use_cache=True,
            return_dict=True,
            **{name: cache},
        )
        states = out.last_hidden_state
        # What T5ForConditionalGeneration.forward does before its lm_head (transformers 4 ties
        # the scaling to tied embeddings, 5 names it).
        if getattr(self.config, "scale_decoder_outputs", self.config.tie_word_embeddings):
            states = states * (self.model_dim**-0.5)
        vocab_logprobs = self.lm_head(states).float().log_softmax(dim=-1)
        attention, gate = self._copy_attention(states, encoder_outputs, attention_mask)
        logits = _mixed(vocab_logprobs, attention, gate, encoder_outputs.source_ids)
        return logits[:, -1], out.get(name)


@functools.cache
def cache_parameter(module_class: type) -> str:
    """What a model or decoder stack calls its cache argument: ``cache`` in transformers 5,
    ``past_key_values`` in 4."""
    names = inspect.signature(module_class.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def _mixed(
    vocab_logprobs: torch.Tensor,
    attention: torch.Tensor,
    gate: torch.Tensor,
    source_ids: torch.Tensor,
) -> torch.Tensor:
    """The mixture's log-probabilities over the whole vocabulary: the copy attention summed per
    source token, mixed with the vocabulary's by the gate."""
    index = source_ids[:, None, :].expand(-1, attention.shape[1], -1)
    copy = torch.zeros_like(vocab_logprobs).scatter_add_(2, index, attention)
    return _mixture(gate, vocab_logprobs, copy)


def _mixture(gate: torch.Tensor, vocab_logprobs: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(gate) * p_vocab + sigmoid(-gate) * p_copy), from the vocabulary's
    log-probabilities and the copy probabilities."""
    # clamp: log(0) would give the gradient 0 * inf for tokens absent from the input.
    return torch.logaddexp(
        F.logsigmoid(gate) + vocab_logprobs, F.logsigmoid(-gate) + copy.clamp_min(1e-20).log()
    )


def build_model(config: ModelConfig | ModelShape, text_vocab_size: int, num_docid_symbols: int):
    """A randomly initialised T5 of ``config``'s shape whose vocabulary is the text vocabulary
    plus the docid symbols (a :class:`CopyT5` with ``copy_attention``)."""
    if isinstance(config, ModelConfig):
        config = config.shape
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
        copy_attention=config.copy_attention,
    )
    model = (CopyT5 if config.copy_attention else T5ForConditionalGeneration)(t5)
    _set_generation_ids(model)
    return model


def load_model(
    name_or_dir: str | Path, num_docid_symbols: int | None = None, copy_attention: bool = False
):
    """Load a pretrained seq2seq checkpoint (a local directory or a hub name) to start from;
    with ``num_docid_symbols``, grow its vocabulary by that many tokens.

    With ``copy_attention`` a T5 gets the copy head of :class:`CopyT5` on top of its pretrained
    weights (the head starts untrained); other architectures have no place for it and are
    refused. Returns ``(model, docid_offset)``: the first token id that belongs to docid symbols.
    """
    config = _pretrained_config(name_or_dir)
    if copy_attention and not getattr(config, "copy_attention", False):
        if config.model_type != "t5":
            raise ValueError(
                f"The copy head (copy_attention) is built for T5 models, and "
                f"{name_or_dir} is a {config.model_type} model: load it with "
                "copy_attention=False."
            )
        config.copy_attention = True
        model = CopyT5.from_pretrained(str(name_or_dir), config=config)
        model.init_copy_head()
    else:
        model = open_model(name_or_dir, config=config)
    offset = model.config.vocab_size
    if num_docid_symbols:
        model.resize_token_embeddings(offset + num_docid_symbols, mean_resizing=False)
    _set_generation_ids(model)
    return model, offset


def open_model(name_or_dir: str | Path, **kwargs) -> torch.nn.Module:
    """A saved seq2seq model (a :class:`CopyT5` where its config says ``copy_attention``), as
    saved."""
    config = kwargs.pop("config", None) or _pretrained_config(name_or_dir)
    if getattr(config, "copy_attention", False):
        return CopyT5.from_pretrained(str(name_or_dir), config=config, **kwargs)
    try:
        return AutoModelForSeq2SeqLM.from_pretrained(str(name_or_dir), config=config, **kwargs)
    except ValueError as exc:  # transformers: no seq2seq class for this configuration
        raise ValueError(
            f"{name_or_dir} is a {config.model_type} model, not a sequence-to-sequence one "
            "(such as T5) that can generate identifiers."
        ) from exc


def _pretrained_config(name_or_dir: str | Path):
    try:
        return AutoConfig.from_pretrained(str(name_or_dir))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"There is no model to load at {name_or_dir}: it is neither a model directory nor a "
            f"model on the hub or in its local cache ({first_line(exc)})."
        ) from exc


def takes_copy_head(name_or_dir: str | Path) -> bool:
    """Whether a pretrained checkpoint starts with dsi's copy head: a T5 does (as the models
    dsi builds from scratch do); other architectures have no place for it and train plain."""
    return _pretrained_config(name_or_dir).model_type == "t5"


def is_hub_name(text: str) -> bool:
    """Whether ``text`` is shaped like a hub repo id (``name`` or ``owner/name``) rather than a
    path; a local directory of that name, if one exists, is still for the caller to prefer."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def first_line(exc: BaseException) -> str:
    """The first line of an error's message: the libraries underneath write whole paragraphs."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


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
