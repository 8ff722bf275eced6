"""Repeated errors logged once per interval with a count, so an outage writes a handful of lines
instead of one per retry (issue 13: a Kafka outage once wrote 152,000 ERROR lines).

- Throttle: the relay, consumers and periodic tasks log a failure through it, keyed by what
  failed; the first occurrence is logged at once, the repeats within the interval are counted
  and reported with the next line ("... (412 more like this in the last 30s)").
- ThrottleFilter: a logging.Filter for third-party loggers (aiokafka logs every failed
  reconnect), keyed by logger name and message template.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

DEFAULT_INTERVAL = 30.0


class Throttle:
    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: Any) -> bool:
        """Log unless `key` was logged less than `interval` ago; returns whether it was logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        repeated = self._suppressed.pop(key, 0)
        self._last[key] = now
        if repeated:
            msg = f"{msg} ({repeated} more like this in the last {self.interval:.0f}s)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: str, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: Any) -> bool:
        return self.log(logging.ERROR, key, msg, *args)

    def reset(self, key: str) -> None:
        """The condition is over: the next occurrence is logged at once."""
        self._last.pop(key, None)
        self._suppressed.pop(key, None)


class ThrottleFilter(logging.Filter):
    """Lets a record of the given loggers (and their children) through once per interval per
    (logger, message template, level); the next one let through says how many were dropped."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str, int], float] = {}
        self._suppressed: dict[tuple[str, str, int], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg), record.levelno)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        repeated = self._suppressed.pop(key, 0)
        self._last[key] = now
        if repeated:
            record.msg = f"{record.msg} ({repeated} more like this in the last {self.interval:.0f}s)"
        return True


def throttle_library_logs(prefixes: tuple[str, ...] = ("aiokafka",), interval: float = DEFAULT_INTERVAL) -> None:
    """Install a ThrottleFilter on the root logger's handlers (a filter on a parent logger does
    not see its children's records; handlers see them all). Call after logging is configured;
    idempotent."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ThrottleFilter) for f in handler.filters):
            handler.addFilter(ThrottleFilter(prefixes, interval))
