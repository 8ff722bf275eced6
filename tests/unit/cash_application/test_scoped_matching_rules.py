"""Imports match against only the open items their receipts can concern (issue 10). The engine says
what those are (Matcher.concerns, Matcher.neighbours_needed); the import reads them through
indexes (imports.scoped_matcher; the SQL side is tested in
tests/integration/cash_application/test_scoped_matching.py). Here, the same selection made in
memory, chunk by chunk: every receipt gets exactly the applications matching against every open
item gives, on the seeded generator and on receipts that need the cross-customer typo rules."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal as D

from bench.cash_application.generator import generate
from services.cash_application.adapters.bank_files import parse_file
from services.cash_application.application.imports import receipt_of
from services.cash_application.domain.matching import (
    Matcher, OpenInvoice, Receipt, normalise_reference, reference_variants)
from services.cash_application.domain.receipts import RemittanceItem


def _select(base: Matcher, book: dict[str, OpenInvoice], receipts: list[Receipt]) -> Matcher:
    """What scoped_matcher reads from PostgreSQL, read from the book in memory."""
    customers: set[str] = set()
    keys: set[str] = set()
    for receipt in receipts:
        more_customers, more_keys = base.concerns(receipt)
        customers |= more_customers
        keys |= more_keys
    open_ = [replace(i) for i in book.values() if i.open_balance > 0]
    matcher = base.with_invoices(i for i in open_ if i.customer_id in customers
                                 or normalise_reference(i.invoice_number or i.invoice_id) in keys)
    amounts: dict[str, list[D]] = {}
    for key, amount in {pair for receipt in receipts for pair in matcher.neighbours_needed(receipt)}:
        for variant in reference_variants(key):
            amounts.setdefault(variant, []).append(amount)
    matcher.add_invoices(i for i in open_
                         if reference_variants(normalise_reference(i.invoice_number or i.invoice_id)) & set(amounts)
                         and matcher.could_be_neighbour(i, amounts))
    return matcher


def _outcome(result) -> tuple:
    return (result.customer_id, result.customer_rule, result.reason,
            [(a.invoice_id, a.applied, a.write_off, a.rule, a.confidence) for a in result.allocations])


def _compare(invoices: list[OpenInvoice], customers: dict[str, str], receipts: list[Receipt], chunk: int,
             parents: dict[str, str] | None = None) -> tuple[int, int]:
    """Match the receipts against every open item and, chunk by chunk, against the selection;
    the outcomes must be the same. Returns (receipts applied, most invoices one chunk held)."""
    full = Matcher([replace(i) for i in invoices], customers, parents=parents)
    base = Matcher((), customers, parents=parents)
    book = {i.invoice_id: replace(i) for i in invoices}
    applied = held = 0
    for start in range(0, len(receipts), chunk):
        part = receipts[start:start + chunk]
        scoped = _select(base, book, part)
        held = max(held, len(scoped.invoices))
        for receipt in part:
            expected, got = full.match(receipt), scoped.match(receipt)
            assert _outcome(got) == _outcome(expected), receipt
            if expected.allocations and expected.confidence >= full.policy.auto_apply_threshold:
                full.commit(expected)
                scoped.commit(got)
                for a in got.allocations:
                    book[a.invoice_id].open_balance -= a.applied + a.write_off
                applied += 1
    return applied, held


def test_the_generator_matches_the_same_against_the_open_items_its_chunks_concern():
    portfolio = generate(seed=5, invoices=6000, receipts=1500)
    lines = parse_file(portfolio.csv().encode(), "csv").statements[0].lines
    invoices = [OpenInvoice(i.invoice_id, i.invoice_number, i.customer_id, "USD", i.amount, i.due_date)
                for i in portfolio.invoices]
    applied, held = _compare(invoices, {c.customer_id: c.name for c in portfolio.customers},
                             [receipt_of(line, "USD") for line in lines], chunk=100)
    assert applied > 1000
    assert held < len(invoices) / 2  # a chunk of 100 receipts held a fraction of the 6,000 open items


def _inv(number: str, customer: str, balance: str, due: str = "2024-03-01") -> OpenInvoice:
    return OpenInvoice(number.lower(), number, customer, "USD", D(balance), date.fromisoformat(due))


CUSTOMERS = {f"C{n}": f"Customer Number {n} Holdings" for n in range(40)} | {
    "HQ": "Head Office Retail", "STORE": "Store Seven"}


def _book() -> list[OpenInvoice]:
    # Dense sequential numbers (every number has real invoices one edit away), 40 customers.
    invoices = [_inv(f"INV-{1000 + n:05d}", f"C{n % 40}", f"{100 + n}.{n % 100:02d}") for n in range(800)]
    return invoices + [_inv("INV-77001", "STORE", "640.00"), _inv("INV-77002", "HQ", "90.00")]


def test_the_typo_rules_find_their_invoices_across_customers_in_the_selection():
    receipts = [
        # Unknown payer, one edit from INV-01234 (C34, 334.34), the amount its: the cross-customer typo rule.
        Receipt(D("334.34"), "USD", payer_name="Nobody We Know", text="INV-01243"),
        # The payer known, its reference names another customer's invoice, the amount one of its own
        # one edit away (INV-01250, C10, 350.50): the typo alternative.
        Receipt(D("350.50"), "USD", payer_name="Customer Number 10 Holdings", text="INV-01251"),
        # Remittance lines with amounts, one typed wrong: each line's amount picks its invoice.
        Receipt(D("471.71"), "USD", payer_name="Somebody Else", remittance=(
            RemittanceItem("INV-01001", D("101.01")), RemittanceItem("INV-012700", D("370.70")))),
        # Invoices one edit away, none of the amount: refused whatever the selection.
        Receipt(D("999.99"), "USD", text="INV-13000"),
        # A parent pays a child's invoice by amount only; a name close to two customers.
        Receipt(D("640.00"), "USD", payer_name="Head Office Retail"),
        Receipt(D("105.05"), "USD", payer_name="Customer Number 5 Holding"),
        # A reference with a prefix and zeros, and one that names no invoice here.
        Receipt(D("120.20"), "USD", text="RF18INV01020"),
        Receipt(D("10.00"), "USD", text="ORDER 55555"),
    ]
    applied, held = _compare(_book(), CUSTOMERS, receipts, chunk=3, parents={"STORE": "HQ"})
    assert applied >= 4
    assert held < 200  # of 802 open items


def test_a_chunk_of_one_identified_payer_reads_that_customer_and_its_references_only():
    base = Matcher((), CUSTOMERS)
    customers, keys = base.concerns(Receipt(D("104.04"), "USD", payer_name="Customer Number 4 Holdings",
                                            text="INV-01004"))
    assert customers == {"C4"} and keys == {"1004"}
    scoped = base.with_invoices(i for i in _book() if i.customer_id in customers)
    # The reference names the payer's invoice of the amount: nothing to look for one edit away.
    assert scoped.neighbours_needed(Receipt(D("104.04"), "USD", payer_name="Customer Number 4 Holdings",
                                            text="INV-01004")) == set()
    # The amount is not that invoice's: the typo alternative may look one edit away.
    assert scoped.neighbours_needed(Receipt(D("105.05"), "USD", payer_name="Customer Number 4 Holdings",
                                            text="INV-01004")) == {("1004", D("105.05"))}
