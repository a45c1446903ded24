"""Memorization (DSI's indexing accuracy), title / keyword docid indexes, docid-only rankings."""

from __future__ import annotations

import json
import random

import pytest
import torch

from docid.lexical import KeywordsDocidMap, TitleDocidMap, without_words
from dsi.config import AddConfig, IndexConfig
from dsi.data import load_corpus
from dsi.docid_tokens import SpelledTokens
from dsi.evaluation import memorization, record_memorization
from dsi.index import GenerativeIndex
from dsi.index_format import IndexLoadError, read_manifest, write_manifest
from dsi.model import train_tokenizer
from dsi.retriever import Retriever
from dsi.seal import NgramGenerativeIndex
from tests.conftest import WORDS, random_corpus, tiny_config
from tests.dsi.test_cli import TINY, dsi, write_corpus


def _build(scheme: str, n_docs: int = 8, steps: int = 150, seed: int = 0) -> GenerativeIndex:
    config = tiny_config(scheme, steps=steps)
    config.train.learning_rate = 1e-2
    corpus = random_corpus(random.Random(seed), n_docs)
    return GenerativeIndex.build(corpus, config, progress_bar=False)


@pytest.fixture(scope="module")
def memorized() -> dict[str, GenerativeIndex]:
    """Eight documents learned for 150 steps: enough to memorize them."""
    return {scheme: _build(scheme) for scheme in ("keywords", "title", "atomic")}


def _top1_share(retriever: Retriever, texts: list[str], doc_ids: list[str]) -> float:
    # k=10 as memorization searches: the beam width (at least k) can change the best docid.
    hits = retriever.search(texts, k=10)
    return sum(h[0].doc_id == d for h, d in zip(hits, doc_ids, strict=True)) / len(doc_ids)


@pytest.mark.parametrize("scheme", ["keywords", "title", "atomic"])
def test_memorization_of_a_memorized_index(memorized, scheme) -> None:
    index = memorized[scheme]
    retriever = Retriever(index, device="cpu")
    found = memorization(retriever)
    doc_ids, texts = index.corpus.doc_ids, index.corpus.full_texts()
    assert found["memorization_documents"] == 8
    assert found["memorization@1"] >= 0.875
    assert found["memorization@1"] <= found["memorization@10"] <= 1.0
    # The first indexing view is the text cut where a query is cut: searching the texts as
    # queries must find the same share at rank 1.
    assert found["memorization@1"] == _top1_share(retriever, texts, doc_ids)
    lexical = scheme in ("keywords", "title")
    assert ("memorization_without_docid_words@1" in found) is lexical
    if lexical:
        stripped = [
            without_words(t, index.docids.docid_words(d))
            for t, d in zip(texts, doc_ids, strict=True)
        ]
        assert any(s != t for s, t in zip(stripped, texts, strict=True))
        expected = _top1_share(retriever, stripped, doc_ids)
        assert found["memorization_without_docid_words@1"] == expected
        assert 0.0 <= found["memorization_without_docid_words@10"] <= 1.0


def test_an_untrained_index_memorizes_little() -> None:
    index = _build("atomic", n_docs=30, steps=1)
    found = memorization(Retriever(index, device="cpu"))
    assert found["memorization@1"] < 0.5 and found["memorization_documents"] == 30


def test_a_sample_is_drawn_with_a_fixed_seed(memorized) -> None:
    retriever = Retriever(memorized["atomic"], device="cpu")
    first = memorization(retriever, sample=3)
    assert first["memorization_documents"] == 3
    assert memorization(retriever, sample=3) == first
    assert memorization(retriever, sample=100)["memorization_documents"] == 8
    with pytest.raises(ValueError, match="at least 1 document"):
        memorization(retriever, sample=0)


@pytest.mark.parametrize("scheme", ["keywords", "title"])
def test_decoding_returns_only_existing_docids_ranked_by_their_log_probability(
    memorized, scheme
) -> None:
    index = memorized[scheme]
    retriever = Retriever(index, device="cpu", num_beams=8)
    rng = random.Random(1)
    queries = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in range(12)]
    known = set(index.corpus.doc_ids)
    eos = index.model.config.eos_token_id
    for query, hits in zip(queries, retriever.search(queries, k=8), strict=True):
        ids = [h.doc_id for h in hits]
        assert ids and set(ids) <= known and len(set(ids)) == len(ids)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        # The score is the docid's log-probability under the model and nothing else.
        enc = index.tokenizer([query], max_length=64, truncation=True, return_tensors="pt")
        for hit in hits[:3]:
            target = index.docid_tokens.tokens(index.docids.sequence(hit.doc_id)) + [eos]
            with torch.no_grad():
                loss = index.model(**enc, labels=torch.tensor([target])).loss
            assert hit.score == pytest.approx(-float(loss) * len(target), abs=1e-3)


@pytest.mark.parametrize("scheme", ["semantic", "atomic", "naive", "title", "keywords"])
def test_no_lexical_scoring_can_be_switched_on_for_a_docid_kind(scheme) -> None:
    for option in ({"scoring": "bm25"}, {"preset": "default"}):
        with pytest.raises(ValueError, match="unknown .* settings"):
            IndexConfig(docids=scheme, docid_options=option)


@pytest.mark.parametrize("scheme", ["keywords", "title"])
def test_add_gives_new_documents_lexical_docids_and_keeps_old_ones(scheme) -> None:
    index = _build(scheme, n_docs=8, steps=5)
    before = {d: index.docids.sequence(d) for d in index.corpus.doc_ids}
    full = random_corpus(random.Random(5), 11)
    new = full.subset(full.doc_ids[8:])
    new.doc_ids = [f"new{i}" for i in range(3)]
    index.add(new, config=AddConfig(replay="documents", max_steps=3), progress_bar=False)
    assert {d: index.docids.sequence(d) for d in before} == before
    assert len(set(index.docids.sequences)) == len(index.docids) == len(index.trie) == 11
    for doc_id, title, text in zip(new.doc_ids, new.titles, new.texts, strict=True):
        source = (title if scheme == "title" else f"{title} {text}").casefold()
        assert index.docids.docid_words(doc_id)
        assert set(index.docids.docid_words(doc_id)) <= set(source.replace(".", " ").split())
    hits = Retriever(index, device="cpu").search(new.full_texts(), k=11)
    assert all({h.doc_id for h in row} <= set(index.docids.doc_ids) for row in hits)


def _contains(tokens: list[int], part: list[int]) -> bool:
    return any(tokens[i : i + len(part)] == part for i in range(len(tokens) - len(part) + 1))


@pytest.mark.parametrize("scheme", ["keywords", "title"])
def test_lexical_docids_are_the_tokenizers_pieces_of_words_the_document_holds(
    memorized, scheme
) -> None:
    index = memorized[scheme]
    tokens = index.docid_tokens
    assert isinstance(tokens, SpelledTokens)
    # Every word spells: the docids need no token of their own, so the vocabulary did not grow.
    assert tokens.new_tokens == 0
    assert index.model.config.vocab_size == index.docid_offset == len(index.tokenizer)
    texts = index.tokenizer(index.corpus.full_texts(), add_special_tokens=False)["input_ids"]
    for doc_id, text in zip(index.corpus.doc_ids, texts, strict=True):
        written = tokens.tokens(index.docids.sequence(doc_id))
        words = index.docids.docid_words(doc_id)
        assert all(t < index.docid_offset for t in written)
        assert index.tokenizer.decode(written) == " ".join(words)
        assert tokens.doc_id(written) == doc_id
        if scheme == "title":  # the document begins with its title: the docid is its first tokens
            assert text[: len(written)] == written
        else:  # each keyword stands in the document as the very tokens its docid has
            for word in words:
                spelled = index.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
                assert _contains(text, spelled)


def test_suffixes_placeholders_and_unspelled_words_are_new_tokens_and_titles_end_in_eos(
    tmp_path,
) -> None:
    tokenizer = train_tokenizer([" ".join(WORDS)] * 3, 60, tmp_path / "spm", lowercase=True)
    # "river stone" begins "river stone lantern"; "river" twice; "ωmega" has a letter the
    # tokenizer never saw; an empty title gets the placeholder.
    titles = ["river stone", "river stone lantern", "River stone", "ωmega river", "", "river"]
    doc_ids = [f"t{i}" for i in range(len(titles))]
    docids = TitleDocidMap.fit(doc_ids, titles)
    offset = len(tokenizer)
    tokens = SpelledTokens(docids, offset, tokenizer)
    names = {d: docids.symbol_names(d) for d in doc_ids}
    assert names["t2"] == ["river", "stone", "#2"] and names["t4"] == ["<untitled>"]
    # New tokens: "#2", "ωmega" and "<untitled>", numbered in symbol order.
    assert tokens.new_tokens == 3
    written = {d: tokens.tokens(docids.sequence(d)) for d in doc_ids}
    assert written["t1"][: len(written["t0"])] == written["t0"]
    assert written["t2"][:-1] == written["t0"] and written["t2"][-1] >= offset
    assert written["t2"][-1] == offset  # "#2", the first symbol that is no word
    assert written["t3"][0] == offset + 1 and written["t3"][1:] == written["t5"]  # "ωmega"
    assert written["t4"] == [offset + 2]  # "<untitled>"
    assert len(set(map(tuple, written.values()))) == len(doc_ids)
    for doc_id, seq in written.items():
        assert tokens.doc_id(seq) == doc_id
    # A prefix of a docid that is no docid reads as nothing; EOS ends each in the trie.
    assert tokens.doc_id(written["t1"][:-1]) in (None, "t0") and tokens.doc_id([offset + 9]) is None
    tokens.check()
    # Adding keeps old docids' tokens: new non-word symbols come after the old ones.
    docids.add(["t6"], ["river stone"])
    grown = SpelledTokens(docids, offset, tokenizer)
    assert {d: grown.tokens(docids.sequence(d)) for d in doc_ids} == written
    assert grown.new_tokens == 4 and grown.doc_id(grown.tokens(docids.sequence("t6"))) == "t6"


def test_keyword_docids_decode_to_existing_documents_only(tmp_path) -> None:
    corpus = random_corpus(random.Random(3), 12)
    docids = KeywordsDocidMap.fit(corpus.doc_ids, corpus.full_texts(), max_words=2)
    tokenizer = train_tokenizer(corpus.full_texts(), 80, tmp_path / "spm", lowercase=True)
    tokens = SpelledTokens(docids, len(tokenizer), tokenizer)
    for doc_id in corpus.doc_ids:
        assert tokens.doc_id(tokens.tokens(docids.sequence(doc_id))) == doc_id
    # Words that are no docid's, or a docid's words in another order, are no document.
    first = docids.docid_words(corpus.doc_ids[0])
    spelled = tokenizer(" ".join(reversed(first)), add_special_tokens=False)["input_ids"]
    assert tokens.doc_id(spelled) is None
    assert tokens.doc_id(tokenizer("zzz qqq", add_special_tokens=False)["input_ids"]) is None


def test_an_index_built_before_words_were_pieces_is_refused(memorized, tmp_path) -> None:
    saved = memorized["keywords"].save(tmp_path / "kw")
    assert read_manifest(saved)["docid_words"] == "pieces"
    GenerativeIndex.load(saved)
    manifest = read_manifest(saved)
    del manifest["docid_words"]
    manifest.pop("manifest_sha256", None)
    write_manifest(saved / "manifest.json", manifest)
    with pytest.raises(IndexLoadError, match="before keywords docids were written in the"):
        GenerativeIndex.load(saved)


@pytest.mark.parametrize("scheme", ["atomic", "keywords"])
def test_a_build_records_memorization_on_a_fixed_sample(memorized, scheme) -> None:
    index = memorized[scheme]
    found = record_memorization(index, sample=5, device="cpu")
    assert (
        found["memorization_documents"] == 5 and "5 of 8 documents" in found["memorization_sample"]
    )
    assert index.lineage[-1]["memorization"] == found
    retriever = Retriever(index, device="cpu")
    assert {k: found[k] for k in ("memorization@1", "memorization@10")} == {
        k: v
        for k, v in memorization(retriever, sample=5).items()
        if k in ("memorization@1", "memorization@10")
    }
    assert ("memorization_without_docid_words@1" in found) is (scheme == "keywords")


def test_memorization_of_chosen_documents() -> None:
    index = _build("atomic", n_docs=6, steps=1)
    retriever = Retriever(index, device="cpu")
    some = index.corpus.doc_ids[:4]
    assert memorization(retriever, doc_ids=some)["memorization_documents"] == 4
    assert memorization(retriever, doc_ids=some, sample=2)["memorization_documents"] == 2
    with pytest.raises(ValueError, match="not in the index"):
        memorization(retriever, doc_ids=["nope"])


def test_a_corpus_without_titles_gets_one_sentence_for_title_docids() -> None:
    corpus = random_corpus(random.Random(0), 4)
    corpus.titles = [""] * 4
    with pytest.raises(ValueError, match=r"^title docids need document titles"):
        GenerativeIndex.build(corpus, tiny_config("title", steps=1), progress_bar=False)


def test_memorization_of_an_ngram_index_is_refused() -> None:
    config = tiny_config("ngram", steps=1)
    config.docid_options = {}
    index = NgramGenerativeIndex.build(
        random_corpus(random.Random(0), 4), config, progress_bar=False
    )
    with pytest.raises(ValueError, match="n-gram identifiers"):
        memorization(Retriever.for_index(index, device="cpu"))


# ------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("memorization")
    corpus = write_corpus(root / "corpus.jsonl", n_docs=8)
    docs = load_corpus(corpus)
    (root / "queries.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"q{i}", "text": " ".join(t.split()[:4])}) + "\n"
            for i, t in enumerate(docs.texts)
        )
    )
    qrels = "".join(f"q{i}\t{d}\t1\n" for i, d in enumerate(docs.doc_ids))
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


def _eval(root, index, *extra: str, check: bool = True):
    args = ["eval", "--index", str(index), "--queries", str(root / "queries.jsonl")]
    args += ["--qrels", str(root / "qrels.tsv"), "--run-file", str(root / "run.trec")]
    return dsi(*args, *extra, "--quiet", check=check)


@pytest.mark.slow
def test_cli_memorization_and_add_with_keyword_docids(cli_files) -> None:
    root = cli_files
    index = root / "kw"
    args = ["index", "--corpus", str(root / "corpus.jsonl"), "--output", str(index)]
    args += [*TINY, "--docids", "keywords", "--set", "train.learning_rate=0.01"]
    built = json.loads(dsi(*args, "--max-steps", "150", "--quiet").stdout)
    # The build measured its memorization (all 8 documents: fewer than the sample of 1000) ...
    recorded = built["memorization"]
    assert (
        recorded["memorization_documents"] == 8
        and "8 of 8 documents" in recorded["memorization_sample"]
    )
    # ... kept it in its statistics, which dsi info shows ...
    info = json.loads(dsi("info", str(index)).stdout)
    assert info["memorization"] == {"event": "build", **recorded}
    assert info["lineage"][0]["memorization"] == recorded
    report = json.loads(_eval(root, index, "--memorization").stdout)
    block = report["dsi"]
    # ... the same figures dsi eval --memorization measures.
    assert block["memorization@1"] == recorded["memorization@1"]
    assert block["memorization_documents"] == 8 and block["memorization@1"] >= 0.875
    assert 0.0 <= block["memorization_without_docid_words@1"] <= 1.0
    sampled = json.loads(_eval(root, index, "--memorization-sample", "3", "--memorization").stdout)
    assert sampled["dsi"]["memorization_documents"] == 3

    before = [json.loads(line) for line in (index / "docids.jsonl").read_text().splitlines()]
    new = write_corpus(root / "new.jsonl", n_docs=3, seed=7)
    lines = new.read_text().replace('"_id": "d', '"_id": "n').splitlines()
    new.write_text("\n".join(lines) + "\n")
    dsi("add", "--index", str(index), "--corpus", str(new), "--max-steps", "2", "--quiet")
    after = [json.loads(line) for line in (index / "docids.jsonl").read_text().splitlines()]
    assert after[:8] == before and [r["doc_id"] for r in after[8:]] == ["n0", "n1", "n2"]
    assert len({tuple(r["docid"]) for r in after}) == 11


@pytest.mark.slow
def test_cli_refuses_memorization_of_an_ngram_index(cli_files) -> None:
    root = cli_files
    index = root / "ngram"
    args = ["index", "--corpus", str(root / "corpus.jsonl"), "--output", str(index)]
    proc = dsi(*args, *TINY, "--docids", "ngram", "--memorization-sample", "5", check=False)
    assert proc.returncode == 2 and "n-gram identifiers" in proc.stderr, proc.stderr
    built = json.loads(dsi(*args, *TINY, "--docids", "ngram", "--max-steps", "1", "--quiet").stdout)
    assert "memorization" not in built
    assert "memorization" not in json.loads(dsi("info", str(index)).stdout)
    for extra in (["--memorization"], ["--memorization", "--memorization-sample", "5"]):
        proc = _eval(root, index, *extra, check=False)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "holds n-gram identifiers" in lines[0], proc.stderr
        assert lines[0].startswith("dsi: error: --memorization") and lines[0].endswith(".")
    proc = _eval(root, index, "--memorization-sample", "5", check=False)
    assert proc.returncode == 2 and "goes with --memorization" in proc.stderr


@pytest.mark.slow
def test_cli_title_docids_of_a_corpus_without_titles_exit_2(tmp_path) -> None:
    corpus = tmp_path / "untitled.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"river stone {i}"}) + "\n" for i in range(4))
    )
    args = ["index", "--corpus", str(corpus), "--output", str(tmp_path / "idx")]
    proc = dsi(*args, *TINY, "--docids", "title", "--max-steps", "1", "--quiet", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "title docids need document titles" in lines[0]
