"""Parsers for the bank and remittance files cash application imports.

Each turns raw bytes into a ParsedFile (services/cash_application/domain/receipts.py) or raises
FileRejected naming the line or element and the reason. Parsing is pure: nothing is posted until
the whole file parsed and checked. docs/cash-application.md says which library each format uses
and why."""
from __future__ import annotations

from services.cash_application.domain.receipts import FileRejected, ParsedFile, check_every_entry_read

FORMATS = ("bai2", "camt.053", "camt.054", "mt940", "csv", "edi820")


def parse_file(content: bytes, file_format: str, *, csv_profile: dict | None = None,
               default_currency: str = "USD") -> ParsedFile:
    """Parse a file of the given format (`camt` accepts camt.053 and camt.054 alike) and check
    that every entry record of the file was read into a statement."""
    _refuse_nul_bytes(content)
    return check_every_entry_read(_parse(content, file_format, csv_profile=csv_profile,
                                         default_currency=default_currency))


def _parse(content: bytes, file_format: str, *, csv_profile: dict | None,
           default_currency: str) -> ParsedFile:
    from services.cash_application.adapters.bank_files import bai2_file, camt, csv_file, edi820, mt940_file

    if file_format == "bai2":
        return bai2_file.parse(_text(content), default_currency)
    if file_format in ("camt", "camt.053", "camt.054"):
        return camt.parse(content)
    if file_format == "mt940":
        return mt940_file.parse(_text(content))
    if file_format == "edi820":
        return edi820.parse(_text(content), default_currency)
    if file_format == "csv":
        return csv_file.parse(_text(content), csv_profile or csv_file.DEFAULT_PROFILE, default_currency)
    raise FileRejected("format", f"unknown format {file_format!r}; one of {', '.join(FORMATS)}")


def _refuse_nul_bytes(content: bytes) -> None:
    """No bank format carries a NUL byte, and PostgreSQL cannot store one in text: a file holding
    one is damaged (or not text at all) and is refused with its line, whatever its format."""
    at = content.find(b"\x00")
    if at >= 0:
        line = content.count(b"\n", 0, at) + 1
        raise FileRejected(f"line {line}", "a NUL byte (0x00): the file is damaged or not a text file")


def _text(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Bank exports are often Latin-1; every byte decodes, so nothing is silently dropped.
        return content.decode("latin-1")
