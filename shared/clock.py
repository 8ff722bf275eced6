"""Injectable clock: time-driven rules take 'today' from here, so tests and back-fills can run
them as of any date."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def today(self) -> date: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def today(self) -> date:
        return self.now().date()


class FixedClock:
    def __init__(self, at: datetime | date) -> None:
        if isinstance(at, datetime):
            self._now = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        else:
            self._now = datetime(at.year, at.month, at.day, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def today(self) -> date:
        return self._now.date()

    def set(self, at: datetime | date) -> None:
        self.__init__(at)
