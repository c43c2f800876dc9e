"""Consuming the progress generators of long work.

Long work (segmentation, training, sampling) is a generator that yields progress events and
*returns* its result, which Python hands over in ``StopIteration.value``. These two helpers are the
one place that reads it:

    result = run_generator(segment_progressive(...))      # no progress wanted

    events = Returning(segment_progressive(...))          # progress wanted
    for event in events:
        bar.update(...)
    result = events.value

Inside another generator, ``result = yield from gen`` does the same.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any


def run_generator(gen: Generator[Any, None, Any]) -> Any:
    """Consume a progress generator and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


class Returning:
    """Iterate a generator's events; once the loop has ended, :attr:`value` holds its return value.

    ``value`` stays None when the loop is left early (``break``, an exception).
    """

    def __init__(self, gen: Generator[Any, None, Any]) -> None:
        self.gen = gen
        self.value: Any = None

    def __iter__(self) -> Iterator[Any]:
        self.value = yield from self.gen
