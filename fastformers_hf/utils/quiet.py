"""Silencing, for one call and one message, a library log line that is expected and that a user cannot act on.

Each use names the logger and the message it drops and says why that message is noise there; everything else the
logger says still comes through, and nothing is silenced outside the ``with`` block.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator


class _Drop(logging.Filter):
    def __init__(self, drop: Callable[[str], bool]):
        super().__init__()
        self.drop = drop

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.drop(record.getMessage())


@contextlib.contextmanager
def dropped_log_records(logger_name: str, drop: Callable[[str], bool]) -> Iterator[None]:
    """Drop the records of the logger ``logger_name`` (that logger only, not its children) whose message makes
    ``drop`` true, while the block runs."""
    logger, record_filter = logging.getLogger(logger_name), _Drop(drop)
    logger.addFilter(record_filter)
    try:
        yield
    finally:
        logger.removeFilter(record_filter)


def starts_with(*prefixes: str) -> Callable[[str], bool]:
    return lambda message: message.startswith(prefixes)
