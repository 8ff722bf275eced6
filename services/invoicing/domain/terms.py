"""Payment terms as AR teams write them: NET30, NET45, DUE_ON_RECEIPT, NET30_EOM (thirty days
after the end of the invoice's month). Pure; unit-tested."""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

_CODE = re.compile(r"^NET(\d{1,3})(_EOM)?$")


class UnknownTerms(ValueError):
    pass


@dataclass(frozen=True)
class PaymentTerms:
    days: int
    end_of_month: bool = False

    @classmethod
    def parse(cls, code: str) -> "PaymentTerms":
        normal = code.strip().upper().replace(" ", "")
        if normal in ("DUE_ON_RECEIPT", "DUEONRECEIPT", "COD"):
            return cls(0)
        match = _CODE.match(normal)
        if not match or int(match.group(1)) > 365:
            raise UnknownTerms(f"payment terms {code!r} are not one of NET<days>, NET<days>_EOM, DUE_ON_RECEIPT")
        return cls(int(match.group(1)), bool(match.group(2)))

    @property
    def code(self) -> str:
        if self.days == 0 and not self.end_of_month:
            return "DUE_ON_RECEIPT"
        return f"NET{self.days}" + ("_EOM" if self.end_of_month else "")

    def due_date(self, issue_date: date) -> date:
        start = issue_date
        if self.end_of_month:
            start = issue_date.replace(day=calendar.monthrange(issue_date.year, issue_date.month)[1])
        return start + timedelta(days=self.days)
