"""Reporting's metric rules, pure: bucket boundaries, as-of balances, DSO, recovery rate,
promise counts, and the aging tie-out over random facts in any order."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reporting.domain import metrics
from services.reporting.domain.facts import (
    ApplicationFact,
    CreditFact,
    InvoiceFact,
    PromiseFact,
    PromiseOutcomeFact,
    RecoveryItem,
)

D = Decimal


def inv(invoice_id, amount, issue, due, customer="C1"):
    return InvoiceFact(invoice_id, customer, "USD", D(amount), date.fromisoformat(issue), date.fromisoformat(due))


def credit(invoice_id, amount, on, memo=None):
    return CreditFact(memo or f"cm-{invoice_id}-{on}", invoice_id, D(amount), date.fromisoformat(on))


def paid(invoice_id, amount, on, payment="p1"):
    return ApplicationFact(payment, invoice_id, D(amount), date.fromisoformat(on))


# --- buckets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("days, bucket", [
    (-400, "current"), (-1, "current"), (0, "current"),  # due today is current
    (1, "1-30"), (30, "1-30"),
    (31, "31-60"), (60, "31-60"),
    (61, "61-90"), (90, "61-90"),
    (91, "90+"), (3650, "90+"),
])
def test_bucket_boundaries(days, bucket):
    assert metrics.aging_bucket(days) == bucket


def test_days_past_due_counts_calendar_days_including_leap_day():
    assert metrics.days_past_due(date(2024, 1, 31), date(2024, 1, 31)) == 0
    assert metrics.days_past_due(date(2024, 1, 31), date(2024, 3, 1)) == 30  # 29 days of February
    assert metrics.days_past_due(date(2024, 1, 31), date(2024, 3, 2)) == 31
    assert metrics.days_past_due(date(2024, 2, 10), date(2024, 2, 1)) == -9


def test_boundary_days_land_in_their_bucket_in_a_report():
    as_of = date(2024, 6, 30)
    items = metrics.open_items([
        inv("due-today", "1.00", "2024-06-01", "2024-06-30"),
        inv("30-days", "2.00", "2024-05-01", "2024-05-31"),
        inv("31-days", "4.00", "2024-05-01", "2024-05-30"),
        inv("90-days", "8.00", "2024-03-01", "2024-04-01"),
        inv("91-days", "16.00", "2024-03-01", "2024-03-31"),
    ], [], [], as_of)
    report = metrics.aging(items, as_of)
    assert {a.item.invoice_id: (a.days_past_due, a.bucket) for a in report.items} == {
        "due-today": (0, "current"), "30-days": (30, "1-30"), "31-days": (31, "31-60"),
        "90-days": (90, "61-90"), "91-days": (91, "90+"),
    }
    assert report.buckets == {"current": D("1.00"), "1-30": D("2.00"), "31-60": D("4.00"),
                              "61-90": D("8.00"), "90+": D("16.00")}


# --- as-of balances ---------------------------------------------------------------------------

def test_open_balance_counts_only_what_is_dated_on_or_before_the_day():
    invoice = inv("i1", "1000.00", "2024-01-10", "2024-02-09")
    credits = [credit("i1", "100.00", "2024-01-20"), credit("other", "999.00", "2024-01-01")]
    applications = [paid("i1", "300.00", "2024-02-01"), paid("i1", "200.00", "2024-02-20", "p2")]
    assert metrics.open_balance(invoice, credits, applications, date(2024, 1, 9)) == 0  # not issued yet
    assert metrics.open_balance(invoice, credits, applications, date(2024, 1, 10)) == D("1000.00")
    assert metrics.open_balance(invoice, credits, applications, date(2024, 1, 20)) == D("900.00")
    assert metrics.open_balance(invoice, credits, applications, date(2024, 2, 1)) == D("600.00")
    assert metrics.open_balance(invoice, credits, applications, date(2024, 2, 19)) == D("600.00")
    assert metrics.open_balance(invoice, credits, applications, date(2024, 2, 20)) == D("400.00")


def test_open_items_agree_with_open_balance_on_every_day():
    invoices = [inv("i1", "1000.00", "2024-01-10", "2024-02-09"), inv("i2", "5.00", "2024-01-20", "2024-01-20")]
    credits = [credit("i1", "100.00", "2024-01-20"), credit("i2", "1.00", "2024-01-21")]
    applications = [paid("i1", "300.00", "2024-02-01"), paid("i2", "4.00", "2024-01-20"), paid("i9", "7.00", "2024-01-15")]
    for n in range(60):
        day = date(2024, 1, 5) + timedelta(days=n)
        items = {i.invoice_id: i.open_balance for i in metrics.open_items(invoices, credits, applications, day)}
        expected = {i.invoice_id: metrics.open_balance(i, credits, applications, day)
                    for i in invoices if i.issue_date <= day}
        assert items == expected, day


def test_aging_leaves_out_settled_and_unissued_invoices_and_ages_credit_balances():
    as_of = date(2024, 3, 31)
    invoices = [
        inv("settled", "50.00", "2024-01-01", "2024-01-31"),
        inv("future", "70.00", "2024-04-01", "2024-05-01"),
        inv("overpaid", "10.00", "2024-03-01", "2024-03-15", customer="C2"),
        inv("open", "120.00", "2024-03-01", "2024-04-15", customer="C2"),
    ]
    applications = [paid("settled", "50.00", "2024-02-01"), paid("overpaid", "12.50", "2024-03-20")]
    report = metrics.aging(metrics.open_items(invoices, [], applications, as_of), as_of)
    assert [a.item.invoice_id for a in report.items] == ["overpaid", "open"]  # by due date
    assert report.buckets["1-30"] == D("-2.50")
    assert report.buckets["current"] == D("120.00")
    assert report.total == report.total_open_balance == D("117.50")
    assert [(c.customer_id, c.total, c.invoice_count) for c in report.customers] == [("C2", D("117.50"), 2)]


# --- DSO --------------------------------------------------------------------------------------

def test_period_days_include_both_ends():
    assert metrics.period_days(date(2024, 3, 1), date(2024, 3, 1)) == 1
    assert metrics.period_days(date(2024, 1, 1), date(2024, 3, 31)) == 91
    with pytest.raises(ValueError):
        metrics.period_days(date(2024, 3, 2), date(2024, 3, 1))


@pytest.mark.parametrize("ending_ar, sales, days, expected", [
    ("45000.00", "90000.00", 30, "15.00"),
    ("1.00", "3.00", 1, "0.33"),
    ("2.00", "3.00", 1, "0.67"),
    ("1.00", "8.00", 1, "0.13"),  # 0.125: half up, not half even
    ("-1.00", "8.00", 1, "-0.13"),  # a credit balance book: half up rounds away from zero
    ("123456.78", "98765.43", 91, "113.75"),  # 113.7499... stays below the half
])
def test_dso_standard_method_rounded_half_up(ending_ar, sales, days, expected):
    result = metrics.dso(D(ending_ar), D(sales), days)
    assert result.value == D(expected) and str(result.value) == expected
    assert (result.ending_ar, result.credit_sales, result.days) == (D(ending_ar), D(sales), days)


def test_dso_is_null_with_a_reason_without_credit_sales():
    result = metrics.dso(D("500.00"), D("0"), 30)
    assert result.value is None and "no credit sales" in result.reason


def test_credit_sales_take_invoices_issued_within_the_period():
    invoices = [inv("a", "10.00", "2024-01-31", "2024-02-29"), inv("b", "20.00", "2024-02-01", "2024-03-01"),
                inv("c", "40.00", "2024-02-29", "2024-03-30"), inv("d", "80.00", "2024-03-01", "2024-03-31")]
    assert metrics.credit_sales(invoices, date(2024, 2, 1), date(2024, 2, 29)) == D("60.00")


# --- recovery rate ----------------------------------------------------------------------------

def test_past_due_from_is_the_later_of_period_start_and_day_after_due():
    assert metrics.past_due_from(date(2024, 1, 31), date(2024, 2, 1)) == date(2024, 2, 1)
    assert metrics.past_due_from(date(2024, 2, 14), date(2024, 2, 1)) == date(2024, 2, 15)
    assert metrics.past_due_from(date(2023, 12, 1), date(2024, 2, 1)) == date(2024, 2, 1)


def test_recovery_rate_by_hand():
    start, end = date(2024, 2, 1), date(2024, 2, 29)
    invoices = [
        inv("A", "1000.00", "2024-01-01", "2024-01-31"),  # past due from Feb 1
        inv("B", "500.00", "2024-01-15", "2024-02-14"),   # past due from Feb 15
        inv("C", "700.00", "2024-02-09", "2024-03-10"),   # not past due in February
        inv("D", "300.00", "2023-12-01", "2024-01-10"),   # settled before the period
        inv("E", "1000.00", "2023-12-16", "2024-01-15"),  # part paid before the period
    ]
    credits = [credit("B", "100.00", "2024-02-10"), credit("B", "50.00", "2024-02-20", memo="cm2")]
    applications = [
        paid("A", "400.00", "2024-02-01"),   # first past-due day: collected, not netted
        paid("A", "300.00", "2024-03-05"),   # after the period
        paid("B", "200.00", "2024-02-15"),
        paid("C", "700.00", "2024-02-20"),
        paid("D", "300.00", "2024-01-20"),
        paid("E", "250.00", "2024-01-25"),
    ]
    items = {i.invoice_id: i for i in metrics.recovery_items(invoices, credits, applications, start, end)}
    assert set(items) == {"A", "B", "D", "E"}
    assert (items["A"].past_due_balance, items["A"].collected) == (D("1000.00"), D("400.00"))
    assert (items["B"].past_due_from, items["B"].past_due_balance, items["B"].collected) == (
        date(2024, 2, 15), D("400.00"), D("200.00"))  # the Feb 20 credit is not collected cash
    assert items["D"].past_due_balance == 0
    assert (items["E"].past_due_balance, items["E"].collected) == (D("750.00"), D("0"))
    result = metrics.recovery_rate(items.values())
    # (400 + 200) / (1000 + 400 + 750) = 600 / 2150 = 0.279069...
    assert (result.past_due_balance, result.collected, result.invoice_count) == (D("2150.00"), D("600.00"), 3)
    assert str(result.rate) == "0.2791"


def test_recovery_rate_rounds_half_up_and_is_null_when_nothing_was_past_due():
    result = metrics.recovery_rate([RecoveryItem("x", "c", date(2024, 1, 1), D("32.00"), D("1.00"))])
    assert str(result.rate) == "0.0313"  # 0.03125
    empty = metrics.recovery_rate([RecoveryItem("x", "c", date(2024, 1, 1), D("0.00"), D("5.00"))])
    assert empty.rate is None and "nothing was past due" in empty.reason and empty.invoice_count == 0


# --- promises ---------------------------------------------------------------------------------

def test_promise_counts_and_amounts():
    def made(pid, amount, on):
        return PromiseFact(pid, "C1", "USD", D(amount), date.fromisoformat(on) + timedelta(days=7),
                           date.fromisoformat(on))

    def outcome(pid, kind, amount, paid_amount, on):
        return PromiseOutcomeFact(pid, kind, D(amount), D(paid_amount), D(amount) - D(paid_amount),
                                  date.fromisoformat(on))

    promises = [made("p1", "100.00", "2024-01-25"), made("p2", "200.00", "2024-02-03"),
                made("p3", "300.00", "2024-02-10"), made("p4", "400.00", "2024-02-20")]
    outcomes = [outcome("p1", "kept", "100.00", "100.00", "2024-02-01"),
                outcome("p2", "broken", "200.00", "50.00", "2024-02-12"),
                outcome("p3", "kept", "300.00", "300.00", "2024-03-02")]
    report = metrics.promise_report(promises, outcomes, date(2024, 2, 1), date(2024, 2, 29))
    assert (report.made.count, report.made.amount) == (3, D("900.00"))
    assert (report.kept.count, report.kept.amount, report.kept.paid_amount) == (1, D("100.00"), D("100.00"))
    assert (report.broken.count, report.broken.paid_amount, report.broken.shortfall) == (1, D("50.00"), D("150.00"))
    assert (report.open.count, report.open.amount) == (2, D("700.00"))  # p3 kept only in March, p4
    assert str(report.kept_rate) == "0.5000"
    none = metrics.promise_report([], [], date(2024, 2, 1), date(2024, 2, 29))
    assert none.kept_rate is None and none.open.count == 0


# --- the aging tie-out over random books ------------------------------------------------------

DAY0 = date(2024, 1, 1)
days = st.integers(min_value=0, max_value=240).map(lambda n: DAY0 + timedelta(days=n))
cents = st.integers(min_value=1, max_value=5_000_000).map(lambda n: D(n).scaleb(-2))
invoice_ids = st.sampled_from([f"I{n}" for n in range(8)])
known_or_orphan_ids = st.sampled_from([f"I{n}" for n in range(10)])  # I8, I9 never issued


@st.composite
def invoice_facts(draw):
    issue = draw(days)
    return InvoiceFact(draw(invoice_ids), draw(st.sampled_from(["C1", "C2", "C3"])), "USD", draw(cents), issue,
                       issue + timedelta(days=draw(st.integers(min_value=0, max_value=120))))


books = st.tuples(
    st.lists(invoice_facts(), max_size=8, unique_by=lambda i: i.invoice_id),
    st.lists(st.builds(CreditFact, st.uuids().map(str), known_or_orphan_ids, cents, days), max_size=8),
    st.lists(st.builds(ApplicationFact, st.sampled_from(["P1", "P2"]), known_or_orphan_ids, cents, days), max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(book=books, data=st.data(), order=st.randoms(use_true_random=False))
def test_aging_total_is_the_sum_of_open_balances_whatever_order_facts_arrive(book, data, order):
    invoices, credits, applications = book
    # As often as not, age on a day some fact is dated: where an off-by-one day would show.
    fact_days = sorted({i.issue_date for i in invoices} | {i.due_date for i in invoices}
                       | {c.issue_date for c in credits} | {a.value_date for a in applications})
    as_of = data.draw(st.one_of(days, st.sampled_from(fact_days)) if fact_days else days, label="as_of")
    report = metrics.aging(metrics.open_items(invoices, credits, applications, as_of), as_of)

    issued = {i.invoice_id for i in invoices if i.issue_date <= as_of}
    ledger = (sum((i.amount for i in invoices if i.invoice_id in issued), D(0))
              - sum((c.amount for c in credits if c.invoice_id in issued and c.issue_date <= as_of), D(0))
              - sum((a.amount for a in applications if a.invoice_id in issued and a.value_date <= as_of), D(0)))
    balances = sum((metrics.open_balance(i, credits, applications, as_of) for i in invoices), D(0))
    assert report.total == sum(report.buckets.values(), D(0))
    assert report.total == report.total_open_balance == balances == ledger
    assert sum((c.total for c in report.customers), D(0)) == report.total
    assert metrics.ending_ar(metrics.open_items(invoices, credits, applications, as_of), as_of) == report.total

    shuffled = [list(facts) for facts in (invoices, credits, applications)]
    for facts in shuffled:
        order.shuffle(facts)
    again = metrics.aging(metrics.open_items(*shuffled, as_of), as_of)
    assert again == report
