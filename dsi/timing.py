"""Stage timings of a build: how long each part took, logged and kept in the lineage.

A benchmark can also watch the stages as they start and end (:func:`watching`), e.g. to
sample the memory each one takes (``bench/scale_bench.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Called with ("start" or "end", stage name) around every stage; see ``watching``.
_watchers: list[Callable[[str, str], None]] = []


@contextmanager
def stage(name: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Time the block as stage ``name``: add its seconds to ``timings[name]`` and log them.

    Seconds add up, so a stage done in two parts (a trie built after the examples) counts once.
    Without ``timings`` the stage is only logged and watched: a part of a larger stage, whose
    seconds the lineage already counts.
    """
    for watcher in _watchers:
        watcher("start", name)
    started = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - started
        if timings is not None:
            timings[name] = round(timings.get(name, 0.0) + seconds, 2)
        # A part at debug level: the info lines are the lineage's stages, one each.
        log.log(
            logging.INFO if timings is not None else logging.DEBUG,
            "Stage %s took %.1f s.",
            name,
            seconds,
        )
        for watcher in _watchers:
            watcher("end", name)


@contextmanager
def watching(watcher: Callable[[str, str], None]) -> Iterator[None]:
    """Call ``watcher(event, name)`` with event "start" and "end" around every stage begun
    inside the block (stages nest: a part's events fall between its stage's)."""
    _watchers.append(watcher)
    try:
        yield
    finally:
        _watchers.remove(watcher)
