"""Repeated errors are logged once per interval with a count, and retries back off
exponentially with jitter (issue 13, item 7: a Kafka outage wrote 152,000 ERROR lines and clients
retried about 215 times a second). shared/logthrottle.py and backoff_delay did not exist before."""
from __future__ import annotations

import logging
import random

from shared.consumer import backoff_delay
from shared.logthrottle import Throttle, ThrottleFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_error_is_logged_once_per_interval_with_the_count(caplog):
    clock = _Clock()
    throttle = Throttle(logging.getLogger("test.throttle"), interval=30, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for second in range(0, 90):
            for _ in range(215):  # what aiokafka's clients did per second
                throttle.error("kafka-down", "broker unreachable: %s", "refused")
            clock.now = second + 1.0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0] == "broker unreachable: refused"
    assert lines[1] == f"broker unreachable: refused ({30 * 215 - 1} more like this in the last 30s)"
    # Another key is not held back by the first, and reset() lets the next occurrence through.
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        assert throttle.warning("other", "something else")
        throttle.reset("kafka-down")
        assert throttle.error("kafka-down", "broker unreachable again")


def test_library_records_are_filtered_per_message_template_and_other_loggers_pass():
    clock = _Clock()
    filt = ThrottleFilter(("aiokafka",), interval=30, clock=clock)

    def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, ("node 1",), None)

    passed = [filt.filter(record("aiokafka.conn", "Unable to connect to %s")) for _ in range(1000)]
    assert passed.count(True) == 1
    assert filt.filter(record("aiokafka.conn", "another message %s"))
    assert all(filt.filter(record("shared.relay", "ours %s")) for _ in range(5))
    assert all(filt.filter(record("aiokafka.conn", "debug %s", logging.INFO)) for _ in range(5))
    clock.now = 31
    again = record("aiokafka.conn", "Unable to connect to %s")
    assert filt.filter(again) and "999 more like this" in again.getMessage()


def test_backoff_grows_exponentially_is_bounded_and_jittered():
    random.seed(7)
    delays = [[backoff_delay(attempt, 0.5, 30.0) for attempt in range(12)] for _ in range(200)]
    for attempt in range(12):
        column = [d[attempt] for d in delays]
        ceiling = min(30.0, 0.5 * 2 ** attempt)
        assert all(0.25 <= d <= ceiling for d in column)
        assert len({round(d, 6) for d in column}) > 150  # jittered: clients do not retry in lockstep
    assert max(d[11] for d in delays) <= 30.0 and sum(d[11] for d in delays) / 200 > 10
