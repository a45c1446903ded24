"""The README.md model card of an index directory (dsi.card): written by every save, listed and
checked by the manifest, updated by additions, with evaluation figures where recorded."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from docid.io import sha256_file
from dsi.card import CARD_FILE, card_text, record_evaluation
from dsi.config import AddConfig
from dsi.data import Corpus
from dsi.index import GenerativeIndex
from dsi.index_format import IndexLoadError
from dsi.kinds import index_class, load_index
from tests.conftest import random_corpus, tiny_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    corpus = random_corpus(random.Random(6), 8)
    index = GenerativeIndex.build(corpus, tiny_config("atomic", steps=3), progress_bar=False)
    directory = tmp_path_factory.mktemp("card") / "idx"
    index.save(directory)
    return index, directory


def test_the_card_is_written_listed_and_checked(saved, tmp_path):
    index, directory = saved
    manifest = json.loads((directory / "manifest.json").read_text())
    card = directory / CARD_FILE
    assert manifest["checksums"][CARD_FILE] == sha256_file(card)
    text = card.read_text()
    assert text.startswith("---\nlibrary_name: dsi\n")
    assert "| documents | 8 |" in text
    assert "| identifiers (docids) | atomic |" in text
    assert "| train.batch_size | 8 |" in text
    steps = index.lineage[0]["training"]["steps"]
    assert f"| build | random | 8 | {steps} |" in text
    assert "## Evaluation" not in text
    load_index(directory)  # the card passes the manifest's check

    copy = tmp_path / "copy"
    copy.mkdir()
    for path in directory.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(directory)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (copy / CARD_FILE).write_text(text + "\nEdited by hand.\n")
    with pytest.raises(IndexLoadError, match="README.md does not match its checksum"):
        load_index(copy)


def test_an_addition_and_recorded_evaluation_update_the_card(saved, tmp_path):
    _, directory = saved
    index = load_index(directory)
    new = random_corpus(random.Random(7), 3)
    new = Corpus(
        doc_ids=[f"new{i}" for i in range(3)], titles=new.titles, texts=new.texts, source="more"
    )
    index.add(new, config=AddConfig(max_steps=2), progress_bar=False)
    record_evaluation(index, {"nDCG@10": 0.5, "Hits@10": 0.75}, queries=4, source="toy dev")
    index.save(tmp_path / "grown")
    text = (tmp_path / "grown" / CARD_FILE).read_text()
    assert "| documents | 11 |" in text and "| additions since | 1 |" in text
    assert "| add | more | 3 | 2 |" in text
    assert "| add, on toy dev | 4 | nDCG@10 | 0.5000 |" in text
    assert "| add, on toy dev | 4 | Hits@10 | 0.7500 |" in text
    # The figures belong to the lineage, so a later save keeps them.
    again = load_index(tmp_path / "grown")
    assert again.lineage[-1]["evaluation"]["metrics"] == {"nDCG@10": 0.5, "Hits@10": 0.75}


def test_an_ngram_index_has_a_card_too(tmp_path):
    corpus = random_corpus(random.Random(8), 6)
    index = index_class("ngram").build(corpus, tiny_config("ngram", steps=2), progress_bar=False)
    index.save(tmp_path / "idx")
    text = (tmp_path / "idx" / CARD_FILE).read_text()
    assert "| identifiers (docids) | ngram |" in text and "| documents | 6 |" in text
    load_index(tmp_path / "idx")


def test_a_hub_model_is_the_base_model_and_markdown_is_escaped(saved):
    index, _ = saved
    named = dataclasses.replace(index, config=dataclasses.replace(index.config, model="org/t5"))
    assert "\nbase_model: org/t5\n" in card_text(named)
    local = dataclasses.replace(index, config=dataclasses.replace(index.config, model="/a/t5"))
    assert "base_model" not in card_text(local) and "| model | /a/t5 |" in card_text(local)
    odd = dataclasses.replace(
        index, corpus=dataclasses.replace(index.corpus, source="a|b\nc"), lineage=[]
    )
    text = card_text(odd)
    assert "| corpus of the build | a\\|b c |" in text and "No training is recorded." in text


def test_recording_evaluation_without_lineage_is_refused(saved):
    index, _ = saved
    with pytest.raises(ValueError, match="no lineage entry"):
        record_evaluation(dataclasses.replace(index, lineage=[]), {"nDCG@10": 0.1}, queries=1)
