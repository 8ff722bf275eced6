"""The parse worker sends the parsed file back in pieces (imports._in_pieces), which the service
unpickles one at a time, answering in between (imports._from_pieces): what comes back is the
parsed file itself, statements, lines and counts, in order."""
from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

from bench.cash_application.generator import generate
from services.cash_application.adapters.bank_files import parse_file
from services.cash_application.application.imports import _PIECE, _from_pieces, _in_pieces

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bank-files"


def _round_trip(content: bytes, file_format: str):
    work = functools.partial(parse_file, content, file_format)
    skeleton, pieces = _in_pieces(work)
    return work(), asyncio.run(_from_pieces(skeleton, pieces)), pieces


def test_a_large_file_comes_back_whole_from_its_pieces():
    csv_bytes = generate(seed=2, invoices=3_000, receipts=5_000).csv().encode()
    parsed, assembled, pieces = _round_trip(csv_bytes, "csv")
    assert len(pieces[0]) == -(-len(parsed.statements[0].lines) // _PIECE) >= 3
    assert assembled == parsed


def test_files_of_several_statements_come_back_whole():
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    checked = 0
    for entry in manifest["files"]:
        if not entry["valid"] or entry["expected"]["statements"] < 2:
            continue
        parsed, assembled, _ = _round_trip((CORPUS / entry["file"]).read_bytes(), entry["format"])
        assert assembled == parsed, entry["file"]
        checked += 1
    assert checked >= 3


def test_an_import_result_encoded_in_pieces_is_the_same_json():
    """encode_result splices the payments, encoded a piece at a time, after the rest: the text
    must parse to the result itself (pieces of 2,000, amounts as strings, an empty list)."""
    from decimal import Decimal

    from services.cash_application.application.imports import encode_result

    payments = [{"payment_id": f"imp.{n}", "amount": Decimal(f"{n}.10"), "applications": []} for n in range(4_321)]
    for result in ({"import_id": "imp", "payments": payments, "replayed": False}, {"import_id": "imp", "payments": []}):
        encoded = asyncio.run(encode_result(result))
        assert json.loads(encoded) == json.loads(json.dumps(result, default=str))
