"""A large file's chunk is matched once on its snapshot, applying as it goes (first_pass), and
posted under the locks from those results when no balance it read has moved (match_locked);
otherwise it is matched again against the locked balances. Its receipts post grouped by payer
(Matcher.payer_group). No I/O: the locked open items are built here as the import reads them."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from decimal import Decimal as D

from bench.cash_application.generator import generate
from services.cash_application.adapters.bank_files import parse_file
from services.cash_application.application.chunk_worker import first_pass, match_chunk, match_locked, post_chunk
from services.cash_application.application.imports import post_receipts, receipt_of
from services.cash_application.domain.matching import Matcher, OpenInvoice
from services.cash_application.domain.model import OpenItem
from services.cash_application.domain.receipts import BankLine, BankStatement

THRESHOLD = D("0.85")


def _locked(matcher: Matcher, invoice_ids, moved: dict[str, D] | None = None) -> dict[str, OpenItem]:
    """What lock_open_items_by_id answers: the invoices' balances now (as the snapshot had them,
    unless `moved` says another request changed them)."""
    moved = moved or {}
    return {i: OpenItem(invoice_id=i, invoice_number=inv.invoice_number, customer_id=inv.customer_id,
                        currency=inv.currency, open_balance=moved.get(i, inv.open_balance))
            for i in sorted(invoice_ids) if (inv := matcher.invoices.get(i)) is not None}


def _applications(payments) -> list[tuple[str, list[tuple[str, D]]]]:
    return [(p.id, [(a.invoice_id, a.amount) for a in p.applications.values()]) for p in payments]


def _statement(lines: list[BankLine]) -> BankStatement:
    return BankStatement(file_format="csv", account="ACC", statement_id=None, statement_date=date(2024, 4, 2),
                         currency="USD", lines=tuple(lines))


def _line(n: int, amount: str, payer: str, text: str) -> BankLine:
    return BankLine(position=f"line {n}", amount=D(amount), direction="credit", value_date=date(2024, 4, 2),
                    bank_reference=f"R{n}", payer_name=payer, text=text)


def _rematched(invoices, customers, part, locked: dict[str, OpenItem]):
    """The chunk matched against the locked balances from scratch, applying as it goes (what the
    import did before it kept the first pass's results, and still does when a balance moved)."""
    matcher = Matcher([replace(i) for i in invoices], customers)
    for invoice_id, item in locked.items():
        matcher.invoices[invoice_id].open_balance = item.open_balance
    payments, *_ = post_receipts("imp", part, matcher, dict(locked), THRESHOLD)
    return payments


INVOICES = [OpenInvoice("inv-1", "INV-1", "C1", "USD", D("100.00"), date(2024, 3, 31)),
            OpenInvoice("inv-2", "INV-2", "C1", "USD", D("60.00"), date(2024, 4, 30)),
            OpenInvoice("inv-3", "INV-3", "C2", "USD", D("75.50"), date(2024, 3, 31))]
CUSTOMERS = {"C1": "Acme Tools Inc", "C2": "Borealis Freight Ltd"}


def test_the_first_pass_applies_as_it_goes_so_a_second_payment_of_one_invoice_is_not_locked_onto_it():
    lines = [_line(1, "100.00", "Acme Tools Inc", "INV-1"), _line(2, "100.00", "Acme Tools Inc", "INV-1"),
             _line(3, "75.50", "Borealis Freight", "INV-3")]
    statement = _statement(lines)
    part = [(n, statement, line) for n, line in enumerate(lines, start=1)]
    matcher = Matcher([replace(i) for i in INVOICES], CUSTOMERS)
    first = first_pass(matcher, part, THRESHOLD)
    assert first.read == {"inv-1": D("100.00"), "inv-3": D("75.50")}  # balances before it applied
    assert matcher.invoices["inv-1"].open_balance == 0  # the first payment took it
    assert [a.invoice_id for a in first.results[1].allocations] != ["inv-1"]  # the duplicate does not
    payments, _, _, _, counts = match_locked("imp", part, matcher, first, _locked(matcher, first.touched, {
        "inv-1": D("100.00"), "inv-3": D("75.50")}), THRESHOLD)
    assert _applications(payments)[0] == ("imp.1", [("inv-1", D("100.00"))])
    assert _applications(payments)[2] == ("imp.3", [("inv-3", D("75.50"))])
    assert counts["receipts"] == 3


def test_a_balance_moved_under_the_locks_is_matched_again_against_it():
    lines = [_line(1, "100.00", "Acme Tools Inc", "INV-1"), _line(2, "75.50", "Borealis Freight", "INV-3")]
    statement = _statement(lines)
    part = [(n, statement, line) for n, line in enumerate(lines, start=1)]
    matcher = Matcher([replace(i) for i in INVOICES], CUSTOMERS)
    first = first_pass(matcher, part, THRESHOLD)
    assert [a.invoice_id for a in first.results[0].allocations] == ["inv-1"]
    # Between the snapshot and the lock another request applied 100.00 to INV-1: it is paid.
    locked = {"inv-1": OpenItem("inv-1", "INV-1", "C1", "USD", D("0.00")),
              "inv-3": OpenItem("inv-3", "INV-3", "C2", "USD", D("75.50"))}
    assert not first.unchanged(locked)
    payments, *_ = match_locked("imp", part, matcher, first, locked, THRESHOLD)
    applied = _applications(payments)
    assert all(invoice_id != "inv-1" for _, allocations in applied for invoice_id, _ in allocations)
    assert applied[1] == ("imp.2", [("inv-3", D("75.50"))])
    assert matcher.invoices["inv-1"].open_balance == 0  # reset to the locked balance, not below it


def _seeded(seed: int, invoices: int, receipts: int) -> tuple[dict[str, str], list[OpenInvoice], list]:
    """The generator's customers, open invoices and receipts (number, statement, line)."""
    portfolio = generate(seed=seed, invoices=invoices, receipts=receipts)
    statement = parse_file(portfolio.csv().encode(), "csv").statements[0]
    return ({c.customer_id: c.name for c in portfolio.customers},
            [OpenInvoice(i.invoice_id, i.invoice_number, i.customer_id, "USD", i.amount, i.due_date)
             for i in portfolio.invoices],
            [(n, statement, line) for n, line in enumerate(statement.lines, start=1) if line.is_receipt])


def test_on_the_seeded_generator_the_kept_results_are_what_matching_again_gives():
    customers, invoices, part = _seeded(seed=11, invoices=3_000, receipts=1_200)
    matcher = Matcher([replace(i) for i in invoices], customers)
    first = first_pass(matcher, part, THRESHOLD)
    locked = _locked(Matcher([replace(i) for i in invoices], customers), first.touched)
    assert first.unchanged(locked)
    calls = []
    matcher.match = lambda receipt: calls.append(receipt)  # the kept results need no matching
    kept, *_ = match_locked("imp", part, matcher, first, dict(locked), THRESHOLD)
    assert calls == []
    again = _rematched(invoices, customers, part, locked)
    assert _applications(kept) == _applications(again)
    assert sum(1 for p in kept if p.applications) > 600  # most of the generator's receipts apply


def test_receipts_of_one_payer_share_a_group_and_unidentified_ones_sort_first():
    base = Matcher((), CUSTOMERS)
    acme = receipt_of(_line(1, "10.00", "ACME TOOLS INC.", "INV-1"), "USD")
    acme_again = receipt_of(_line(2, "12.00", "Acme Tools", ""), "USD")
    borealis = receipt_of(_line(3, "10.00", "Borealis Freight Ltd", ""), "USD")
    nobody = receipt_of(_line(4, "10.00", "Zzyzx Qwerty", "transfer"), "USD")
    assert base.payer_group(acme) == base.payer_group(acme_again) == "C1"
    assert base.payer_group(borealis) == "C2"
    assert base.payer_group(nobody) == ""


def test_the_payment_rows_from_the_events_contracts_are_those_parsed_back_from_their_payloads():
    """The projection of an import's new payments reads the contracts the payments' events were
    made from (NewEvent.contract) instead of parsing each payload back: the same rows."""
    from dataclasses import asdict

    from shared.aggregate import _new_events
    from services.cash_application.projections.payments import new_payment_rows

    customers, invoices, part = _seeded(seed=3, invoices=1_500, receipts=600)
    matcher = Matcher([replace(i) for i in invoices], customers)
    locked = _locked(matcher, [i.invoice_id for i in invoices])
    payments, *_ = post_receipts("imp", part, matcher, locked, THRESHOLD)
    streams = [_new_events(p, {"actor": "test"}) for p in payments]
    assert all(e.contract is not None for events in streams for e in events)
    parsed = [[replace(e, contract=None) for e in events] for events in streams]
    kinds = {e.event_type for events in streams for e in events}
    assert {"PaymentReceived", "PaymentApplied"} <= kinds
    assert asdict(new_payment_rows(streams)) == asdict(new_payment_rows(parsed))


def _chunk(lines):
    statement = _statement(lines)
    part = [(n, statement, line) for n, line in enumerate(lines, start=1)]
    matcher = Matcher([replace(i) for i in INVOICES], CUSTOMERS)
    return part, matcher, match_chunk("imp", THRESHOLD, {}, part, matcher)


def test_a_chunk_is_posted_on_its_snapshot_and_those_rows_are_kept_when_the_locks_find_it_unchanged():
    lines = [_line(1, "100.00", "Acme Tools Inc", "INV-1"), _line(2, "75.50", "Borealis Freight", "INV-3")]
    _, _, chunk = _chunk(lines)
    assert chunk.prepared.snapshot == _locked(Matcher(INVOICES, CUSTOMERS), {"inv-1", "inv-3"})
    assert chunk.prepared.built is not None
    posted = post_chunk("imp", THRESHOLD, {}, chunk, _locked(Matcher(INVOICES, CUSTOMERS), {"inv-1", "inv-3"}))
    assert posted is chunk.prepared.built  # nothing built again under the locks
    summaries = [json.loads(s) for s in posted.summaries]
    assert [(s["payment_id"], s["status"], [a["invoice_id"] for a in s["applications"]]) for s in summaries] == [
        ("imp.1", "applied", ["inv-1"]), ("imp.2", "applied", ["inv-3"])]
    # the same rows as posting them under those locks would build
    _, _, again = _chunk(lines)
    rebuilt = post_chunk("imp", THRESHOLD, {}, replace(again, prepared=replace(again.prepared, built=None)),
                         _locked(Matcher(INVOICES, CUSTOMERS), {"inv-1", "inv-3"}))
    assert [json.loads(s) for s in rebuilt.summaries] == summaries and rebuilt.counts == posted.counts
    assert [s.read_model.payments for s in rebuilt.slices] == [s.read_model.payments for s in posted.slices]
    assert [s.lines for s in rebuilt.slices] == [s.lines for s in posted.slices]


def test_a_chunk_whose_invoice_moved_before_the_locks_is_posted_again_against_the_locked_balance():
    lines = [_line(1, "100.00", "Acme Tools Inc", "INV-1"), _line(2, "75.50", "Borealis Freight", "INV-3")]
    _, _, chunk = _chunk(lines)
    locked = _locked(Matcher(INVOICES, CUSTOMERS), {"inv-1", "inv-3"}, {"inv-1": D("30.00")})  # paid meanwhile
    posted = post_chunk("imp", THRESHOLD, {}, chunk, locked)
    assert posted is not chunk.prepared.built
    first = [json.loads(s) for s in posted.summaries][0]
    assert first["payment_id"] == "imp.1" and first["status"] != "applied"  # 100.00 no longer fits inv-1
    assert [json.loads(s) for s in posted.summaries][1]["status"] == "applied"


def test_a_chunk_whose_locked_invoices_are_not_the_snapshots_is_posted_again():
    lines = [_line(1, "100.00", "Acme Tools Inc", "INV-1")]
    _, _, chunk = _chunk(lines)
    assert post_chunk("imp", THRESHOLD, {}, chunk, {}) is not chunk.prepared.built  # the invoice was cancelled meanwhile
