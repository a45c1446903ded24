"""Indexes loaded by hub repo id (dsi.hub.locate_index), offline: the test lays a built index out
as the hub's cache holds a downloaded snapshot, so nothing is uploaded or downloaded."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from dsi.hub import locate_index
from dsi.index import GenerativeIndex
from dsi.index_format import IndexLoadError
from dsi.kinds import load_index
from dsi.model import is_hub_name
from dsi.retriever import Retriever
from tests.conftest import child_env, random_corpus, tiny_config

REPO_ID = "someone/tiny-dsi-index"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[str]]:
    corpus = random_corpus(random.Random(4), 8)
    index = GenerativeIndex.build(corpus, tiny_config("atomic", steps=2), progress_bar=False)
    directory = tmp_path_factory.mktemp("built") / "idx"
    index.save(directory)
    return directory, corpus.texts


def lay_out_cache(index_dir: Path, hf_home: Path, repo_id: str = REPO_ID) -> Path:
    """``index_dir`` as the hub cache under ``hf_home`` holds a snapshot of ``repo_id``."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(index_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache under a temporary HF_HOME, with the hub switched off."""
    hf_home = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hf_home


def test_retriever_and_load_index_open_a_repo_id_from_the_hub_cache(built, offline_hub):
    index_dir, texts = built
    snapshot = lay_out_cache(index_dir, offline_hub)
    assert locate_index(REPO_ID) == snapshot
    retriever = Retriever.load(REPO_ID)
    local = Retriever.load(index_dir)
    assert retriever.search(texts[:2], k=3) == local.search(texts[:2], k=3)
    assert len(load_index(REPO_ID).corpus.doc_ids) == 8


def test_a_local_directory_wins_over_a_repo_of_the_same_name(built, offline_hub, monkeypatch):
    index_dir, _ = built
    lay_out_cache(index_dir, offline_hub)
    monkeypatch.chdir(index_dir.parent.parent)
    relative = Path(index_dir.parent.name) / index_dir.name
    assert is_hub_name(str(relative))
    assert locate_index(str(relative)) == relative


def test_the_manifest_checks_a_snapshot_as_it_checks_a_directory(built, offline_hub):
    index_dir, _ = built
    snapshot = lay_out_cache(index_dir, offline_hub)
    with (snapshot / "documents.jsonl").open("a") as handle:
        handle.write('{"_id": "extra", "title": "", "text": "slipped in"}\n')
    with pytest.raises(IndexLoadError, match="documents.jsonl does not match its checksum"):
        Retriever.load(REPO_ID)


def test_a_repo_missing_offline_is_one_sentence(offline_hub):
    with pytest.raises(IndexLoadError) as raised:
        Retriever.load("someone/absent-index")
    message = str(raised.value)
    assert message == (
        "There is no index directory at someone/absent-index, and no hub repo "
        "someone/absent-index to fetch one from: the hub is off (HF_HUB_OFFLINE) and the local "
        "hub cache has no copy of it."
    )
    with pytest.raises(IndexLoadError, match="no hub repo someone/absent-index"):
        load_index("someone/absent-index")


@pytest.mark.parametrize(
    "path", ["./missing", "/no/such/index", "~/nothing/here", "a/b/c", "bad name!"]
)
def test_paths_that_are_no_repo_ids_are_never_looked_up(path, offline_hub):
    assert not is_hub_name(path)
    with pytest.raises(IndexLoadError, match="There is no index directory at"):
        Retriever.load(path)


def test_cli_search_by_repo_id_offline(built, tmp_path):
    index_dir, texts = built
    hf_home = tmp_path / "hf"
    lay_out_cache(index_dir, hf_home)
    env = child_env(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    command = [sys.executable, "-m", "dsi.cli", "search", "--index"]
    found = subprocess.run(
        [*command, REPO_ID, "-k", "2", texts[0]], capture_output=True, text=True, env=env
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout.splitlines()[0])["hits"]
    assert len(hits) == 2
    missing = subprocess.run(
        [*command, "someone/absent-index", "x"], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2
    error = missing.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(
        "dsi: error: There is no index directory at someone/absent-index"
    )


def test_cli_add_to_a_repo_id_needs_an_output(tmp_path, capsys, monkeypatch):
    from dsi.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "new.jsonl").write_text('{"_id": "n1", "text": "a new document"}\n')
    args = ["add", "--index", REPO_ID, "--corpus", "new.jsonl", "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"dsi: error: dsi add --index {REPO_ID} reads a hub repo: name the index to write with "
        "--output."
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "new.jsonl"]
