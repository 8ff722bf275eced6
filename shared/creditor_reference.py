"""ISO 11649 structured creditor references (RF references): the format standard, like ISO 4217
in shared/money.py. "RF", two check digits (ISO 7064 MOD 97-10, as for an IBAN), then up to 21
letters and digits; printed in groups of four ("RF18 5390 0754 7034"). Which reference a
creditor issues for what is the caller's business (invoicing issues one per invoice number)."""
from __future__ import annotations

import re

MAX_REFERENCE = 21
_BODY = re.compile(r"^[0-9A-Z]{1,21}$")
_COMPACT = re.compile(r"^RF\d{2}[0-9A-Z]{1,21}$")


class CreditorReferenceError(ValueError):
    pass


def _numeric(text: str) -> int:
    """Letters as numbers (A=10 ... Z=35), digits as themselves, read as one integer."""
    return int("".join(str(int(ch, 36)) for ch in text))


def compact(text: str) -> str:
    """The electronic form: upper case, spaces removed."""
    return re.sub(r"\s+", "", text).upper()


def make(reference: str) -> str:
    """The RF reference (electronic form) for a creditor's reference of 1-21 letters and digits."""
    body = compact(reference)
    if not _BODY.match(body):
        raise CreditorReferenceError(
            f"{reference!r}: a creditor reference is 1 to {MAX_REFERENCE} letters and digits")
    check = 98 - _numeric(body + "RF00") % 97
    return f"RF{check:02d}{body}"


def is_valid(text: str) -> bool:
    """RF, two check digits and 1-21 letters and digits whose MOD 97-10 remainder is 1."""
    ref = compact(text)
    return bool(_COMPACT.match(ref)) and _numeric(ref[4:] + ref[:4]) % 97 == 1


def reference_of(text: str) -> str | None:
    """The creditor's reference inside a valid RF reference (the part after the check digits)."""
    ref = compact(text)
    return ref[4:] if is_valid(ref) else None


def printed(text: str) -> str:
    """The printed form: groups of four characters from the left, the last one shorter."""
    ref = compact(text)
    return " ".join(ref[i:i + 4] for i in range(0, len(ref), 4))
