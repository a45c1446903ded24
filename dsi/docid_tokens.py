"""How a docid index writes its docids as model tokens (the decoder's targets and the trie's
sequences), and reads decoded tokens back.

- :class:`SymbolTokens` (semantic, atomic, naive docids): docid symbol ``i`` is the new token
  ``offset + i``, after the text vocabulary.
- :class:`SpelledTokens` (title and keyword docids, :class:`docid.lexical.LexicalDocidMap`):
  each word of a docid is written in the text tokenizer's own pieces, as the word reads in a
  document (`` word``: the pieces that begin a word there), so that a model that copies its
  input (``dsi.model.CopyT5``) can copy a docid from the document. Symbols that are no words
  (the uniqueness suffixes ``#2``, ``#3``, ... and the placeholders ``<untitled>``,
  ``<no-words>``) and the rare words the tokenizer cannot spell back (a character outside its
  vocabulary) are new tokens after the text vocabulary, numbered in symbol order, so that old
  numbers never change when documents are added.

Spelled docids are read back by splitting the decoded tokens at the new tokens and decoding each
run of pieces to its words; a docid that does not read back as itself (which a sentencepiece
tokenizer never gives, since every word's pieces begin with its word-boundary mark) is refused
when the trie is made (:meth:`DocidTokens.check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from docid.base import Docid, DocidMap
from docid.lexical import LexicalDocidMap, is_word

# The manifest's ``docid_words`` of an index whose docid words are the tokenizer's pieces (title
# and keyword indexes built before had them as new tokens, and are refused with one sentence).
SPELLED = "pieces"


class DocidTokens:
    """Docid symbol ``i`` is the model token ``offset + i`` (every symbol a new token)."""

    def __init__(self, docids: DocidMap, offset: int) -> None:
        self.docids = docids
        self.offset = offset

    @property
    def new_tokens(self) -> int:
        """How many tokens after the text vocabulary the docids need."""
        return len(self.docids.symbols)

    def tokens(self, seq: Sequence[int]) -> list[int]:
        """The model tokens of the docid ``seq`` (symbol indices), without EOS."""
        return [self.offset + s for s in seq]

    def symbols(self, tokens: Sequence[int]) -> Docid | None:
        """The docid (symbol indices) written as ``tokens``, or None if no docid reads so."""
        if any(t < self.offset for t in tokens):
            return None
        return tuple(t - self.offset for t in tokens)

    def doc_id(self, tokens: Sequence[int]) -> str | None:
        """The document whose docid is written as ``tokens`` (without EOS), or None."""
        seq = self.symbols(tokens)
        return None if seq is None else self.docids.lookup(seq)

    @property
    def max_length(self) -> int:
        """Tokens of the longest docid (decoding needs this many steps, plus EOS)."""
        return self.docids.max_sequence_length

    def check(self) -> None:
        """Refuse docids that would not read back as themselves (:class:`ValueError`)."""


class SpelledTokens(DocidTokens):
    """Words in the text tokenizer's pieces; other symbols new tokens from ``offset``, in order."""

    def __init__(self, docids: LexicalDocidMap, offset: int, tokenizer: Any) -> None:
        super().__init__(docids, offset)
        self.tokenizer = tokenizer
        words = [s for s in docids.symbols if is_word(s)]
        pieces = _spell(tokenizer, words)
        self._pieces: dict[int, list[int]] = {}
        self._new: dict[int, int] = {}  # symbol index -> its own token
        self._by_token: dict[int, int] = {}
        self._by_word: dict[str, int] = {}
        spelled = dict(zip(words, pieces, strict=True))
        for i, symbol in enumerate(docids.symbols):
            ids = spelled.get(symbol)
            if ids is None:
                token = offset + len(self._new)
                self._new[i] = token
                self._by_token[token] = i
            else:
                self._pieces[i] = ids
                self._by_word[symbol] = i
        self._max_length: int | None = None

    @property
    def new_tokens(self) -> int:
        return len(self._new)

    def tokens(self, seq: Sequence[int]) -> list[int]:
        out: list[int] = []
        for s in seq:
            pieces = self._pieces.get(s)
            if pieces is None:
                out.append(self._new[s])
            else:
                out.extend(pieces)
        return out

    def symbols(self, tokens: Sequence[int]) -> Docid | None:
        out: list[int] = []
        run: list[int] = []
        for t in [*tokens, None]:
            if t is not None and t < self.offset:
                run.append(t)
                continue
            if run:
                text = self.tokenizer.decode(
                    run, skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
                for word in text.split():
                    if word not in self._by_word:
                        return None
                    out.append(self._by_word[word])
                run = []
            if t is not None:
                if t not in self._by_token:
                    return None
                out.append(self._by_token[t])
        return tuple(out)

    @property
    def max_length(self) -> int:
        if self._max_length is None:
            self._max_length = max((len(self.tokens(s)) for s in self.docids.sequences), default=0)
        return self._max_length

    def check(self) -> None:
        for doc_id, seq in zip(self.docids.doc_ids, self.docids.sequences, strict=True):
            if self.symbols(self.tokens(seq)) != seq:
                raise ValueError(
                    f"The tokenizer writes the docid of {doc_id!r} "
                    f"({' '.join(self.docids.symbol_names(doc_id))}) in pieces that do not read "
                    "back as its words, so decoding could not tell it from others; use semantic, "
                    "atomic or naive docids with this tokenizer."
                )


def _spell(tokenizer: Any, words: list[str]) -> list[list[int] | None]:
    """Each word's pieces as the word reads inside a text (after a space), or None where they do
    not decode back to the word (a character the tokenizer does not know) or hold a special
    token."""
    if not words:
        return []
    encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    text_vocabulary = len(tokenizer)
    out: list[list[int] | None] = []
    for word, ids in zip(words, encoded, strict=True):
        text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        plain = all(0 <= i < text_vocabulary and i not in special for i in ids)
        out.append(list(ids) if ids and plain and text.strip() == word else None)
    return out


def docid_tokens(docids: Any, offset: int, tokenizer: Any) -> DocidTokens:
    """How ``docids`` are written as tokens from ``offset`` with ``tokenizer``: spelled in its
    pieces for title and keyword docids, new tokens for the other schemes."""
    if isinstance(docids, LexicalDocidMap):
        return SpelledTokens(docids, offset, tokenizer)
    return DocidTokens(docids, offset)


def new_token_count(identifiers: Any, tokenizer: Any) -> int:
    """How many tokens after the text vocabulary ``identifiers`` need (anything with
    ``symbols``: a docid map, or the n-gram kind's identifiers, all of whose symbols are new)."""
    if isinstance(identifiers, LexicalDocidMap):
        return SpelledTokens(identifiers, len(tokenizer), tokenizer).new_tokens
    return len(identifiers.symbols)
