"""Index directories from the Hugging Face hub: a repo id where a local directory is expected.

An index pushed to the hub (the directory as ``dsi index`` wrote it, model card included) is
fetched with ``huggingface_hub.snapshot_download`` into the hub's cache (``HF_HOME``,
``HF_HUB_CACHE``), or read from that cache alone when ``HF_HUB_OFFLINE=1``; the manifest then
checks its files as it checks a local directory's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from docid.io import published
from dsi.index_format import IndexLoadError
from dsi.model import first_line, is_hub_name

log = logging.getLogger(__name__)


def locate_index(path_or_repo_id: str | Path, revision: str | None = None) -> Path:
    """The local directory of an index: ``path_or_repo_id`` itself when it is a local path (or
    the previous index where a crash interrupted replacing it), else the snapshot of the hub
    repo of that id (``revision``: a branch, tag or commit; default the main branch).

    A path that is neither a local directory nor a repo id is returned as it is, for the loader
    to say there is no index there. A repo id that cannot be fetched raises
    :class:`dsi.index.IndexLoadError`, one sentence.
    """
    path = Path(path_or_repo_id)
    if path.exists() or published(path) != path or not is_hub_name(str(path_or_repo_id)):
        return path
    repo_id = str(path_or_repo_id)
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision))
    except Exception as exc:  # the hub's errors are many (offline, not found, network, auth)
        where = (
            "the hub is off (HF_HUB_OFFLINE) and the local hub cache has no copy of it"
            if constants.HF_HUB_OFFLINE
            else first_line(exc)
        )
        raise IndexLoadError(
            f"There is no index directory at {repo_id}, and no hub repo {repo_id} to fetch "
            f"one from: {where}."
        ) from exc
