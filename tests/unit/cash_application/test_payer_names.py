"""A large import scores its payer names against the customer master in batches
(Matcher.identify_payer_names) before matching; identify() must then give what scoring each name
on its own gives: the same payer, rule, confidence, reasons and runners-up."""
from __future__ import annotations

import pytest

from bench.cash_application.generator import generate
from services.cash_application.domain.matching import Matcher, Receipt


def _outcomes(matcher: Matcher, names: list[str]) -> list:
    return [matcher.identify(Receipt(amount=1, currency="USD", payer_name=name)) for name in names]


@pytest.mark.parametrize("workers", [1, 2])
def test_batched_scoring_identifies_every_payer_as_one_by_one_does(workers):
    portfolio = generate(seed=5, invoices=20_000, receipts=6_000)
    customers = {c.customer_id: c.name for c in portfolio.customers}
    names = [r.payer_name for r in portfolio.receipts]
    # names no customer has, one character off two customers' names, empty and punctuation only
    names += ["Zzyzx Qwerty Holdings", customers[portfolio.customers[0].customer_id] + "x", "", "---"]
    one_by_one = _outcomes(Matcher((), customers), names)
    batched = Matcher((), customers)
    scored = batched.identify_payer_names(names, batch=97, workers=workers)  # several batches, the last one short
    assert scored > 500  # most of the generator's payer names are variants no exact name settles
    assert _outcomes(batched, names) == one_by_one
    assert sum(1 for identified, _ in one_by_one if identified and identified.rule == "payer_name_fuzzy") > 300
    assert batched.identify_payer_names(names) == 0  # all known now


def test_names_tied_on_score_keep_the_customer_master_order():
    customers = {"C1": "Acme Tools", "C2": "Acme Toolz", "C3": "Acme Toold", "C4": "Borealis"}
    names = ["Acme Toolx", "Acme Tool"]
    one_by_one = _outcomes(Matcher((), customers), names)
    batched = Matcher((), customers)
    batched.identify_payer_names(names)
    assert _outcomes(batched, names) == one_by_one
    identified, runners = one_by_one[0]
    assert identified is None and [r[0] for r in runners] == ["C1", "C2", "C3"]  # three tied, none clear
