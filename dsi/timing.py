"""Stage timings of a build: how long each part took, logged and kept in the lineage."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time the block as stage ``name``: add its seconds to ``timings[name]`` and log them.

    Seconds add up, so a stage done in two parts (a trie built after the examples) counts once.
    """
    started = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - started
        timings[name] = round(timings.get(name, 0.0) + seconds, 2)
        log.info("Stage %s took %.1f s.", name, seconds)
