"""Property-based tests (hypothesis) of reporting's pure domain over random books: the aging
total equals the sum of open balances, the roll-forward ties for any period (and after a
close with late events), grouping and conversion keep totals, and no result depends on the
order the facts come in."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.reporting.domain import forecast as fc
from services.reporting.domain import ledger, metrics, periodic
from services.reporting.domain.facts import InvoiceFact

DAY0 = date(2024, 1, 1)
cents = st.integers(min_value=1, max_value=1_000_000).map(lambda n: Decimal(n).scaleb(-2))
days = st.integers(min_value=0, max_value=200).map(lambda n: DAY0 + timedelta(days=n))


@st.composite
def books(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    invoices = []
    for i in range(n):
        issue = draw(days)
        invoices.append(InvoiceFact(f"I{i}", f"C{draw(st.integers(0, 3))}", "USD", draw(cents), issue,
                                    issue + timedelta(days=draw(st.sampled_from([0, 15, 30, 60])))))
    movements = []
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        target = draw(st.sampled_from([i.invoice_id for i in invoices] + ["I-unknown"]))
        kind = draw(st.sampled_from(ledger.KINDS))
        amount = draw(cents)
        if kind == ledger.CASH and draw(st.booleans()):
            amount = -amount  # an unapplication
        movements.append(ledger.Movement(target, kind, amount, draw(days)))
    return invoices, movements


@settings(max_examples=150, deadline=None)
@given(books(), days, st.randoms(use_true_random=False))
def test_aging_total_is_the_sum_of_open_balances_whatever_the_order(book, as_of, rnd):
    invoices, movements = book
    items = ledger.open_items(invoices, movements, as_of)
    aging = metrics.aging(items, as_of)
    assert aging.total == aging.total_open_balance == sum((i.open_balance for i in items), Decimal(0))
    assert sum((c.total for c in aging.customers), Decimal(0)) == aging.total
    for spec in (metrics.BucketSpec((7, 45)), metrics.BucketSpec((30, 60, 90), metrics.INVOICE)):
        assert metrics.aging(items, as_of, spec).total == aging.total
    groups = metrics.group_aging(aging, lambda a: a.item.customer_id[-1] if a.item.amount > 100 else None)
    assert sum((g.total for g in groups), Decimal(0)) == aging.total
    shuffled_invoices, shuffled_movements = list(invoices), list(movements)
    rnd.shuffle(shuffled_invoices)
    rnd.shuffle(shuffled_movements)
    assert metrics.aging(ledger.open_items(shuffled_invoices, shuffled_movements, as_of), as_of) == aging


@settings(max_examples=150, deadline=None)
@given(books(), days, st.integers(min_value=0, max_value=120), st.randoms(use_true_random=False))
def test_the_roll_forward_ties_for_any_period_and_any_order(book, start, length, rnd):
    invoices, movements = book
    end = start + timedelta(days=length)
    rf = ledger.roll_forward(invoices, movements, start, end)
    assert rf.ties, rf
    assert rf.closing == ledger.total_open(invoices, movements, end)
    rnd.shuffle(movements)
    assert ledger.roll_forward(list(reversed(invoices)), movements, start, end) == rf


@settings(max_examples=100, deadline=None)
@given(books(), books(), days, st.integers(min_value=0, max_value=60), st.integers(min_value=1, max_value=60))
def test_after_a_close_late_events_become_prior_period_adjustments_and_it_still_ties(book, late, start, first, second):
    invoices, movements = book
    closed = ledger.roll_forward(invoices, movements, start, start + timedelta(days=first))
    next_start = closed.end + timedelta(days=1)
    # Late facts arrive, some dated inside the closed period.
    all_invoices = invoices + [InvoiceFact("L" + i.invoice_id, i.customer_id, i.currency, i.amount, i.issue_date,
                                           i.due_date) for i in late[0]]
    all_movements = movements + [ledger.Movement("L" + m.invoice_id, m.kind, m.amount, m.on_date) for m in late[1]]
    current = ledger.roll_forward(all_invoices, all_movements, next_start, next_start + timedelta(days=second))
    booked = ledger.after_close(current, closed.closing)
    assert booked.ties and booked.opening == closed.closing and booked.closing == current.closing
    assert booked.prior_period_adjustments == ledger.total_open(all_invoices, all_movements, closed.end) - closed.closing


@settings(max_examples=100, deadline=None)
@given(books(), days, st.dictionaries(st.sampled_from(["C0", "C1", "C2", "C3"]),
                                      st.decimals(min_value=0, max_value=90, places=2)))
def test_the_forecast_places_every_positive_open_balance_once(book, as_of, delays):
    invoices, movements = book
    items = ledger.open_items(invoices, movements, as_of)
    result = fc.forecast(as_of, items, delays, [])
    placed = sum((w.total for w in result.weeks), Decimal(0)) + result.beyond
    assert placed == sum((i.open_balance for i in items if i.open_balance > 0), Decimal(0))


@given(st.lists(cents, min_size=1, max_size=14), cents)
def test_countback_dso_counts_whole_months_until_the_ar_is_explained(sales, ending):
    months = periodic.countback_months(date(2024, 12, 31), date(2024, 12, 31) - timedelta(days=31 * (len(sales) - 1)))
    monthly = [(s, e, amount) for (s, e), amount in zip(months, sales)]
    result = periodic.dso_countback(ending, monthly)
    covered = sum((a for _, _, a in monthly), Decimal(0))
    all_days = sum(((e - s).days + 1 for s, e, _ in monthly), 0)
    assert result.value is not None and 0 <= result.value <= all_days
    assert (result.unexplained_ar > 0) == (ending > covered)


def test_fx_conversion_and_allowance_round_half_up_to_the_minor_unit():
    assert ledger.convert(Decimal("10.005"), Decimal("1"), Decimal("0.01")) == Decimal("10.01")
    assert ledger.convert(Decimal("1000"), Decimal("0.0091234"), Decimal("1")) == Decimal("9")
    a = ledger.allowance({"current": Decimal("300.00"), "1-30": Decimal("0.50")}, [Decimal("1"), Decimal("50")],
                         Decimal("0.01"))
    assert [line.allowance for line in a.lines] == [Decimal("3.00"), Decimal("0.25")] and a.allowance == Decimal("3.25")


def test_bucket_specs_label_and_place_the_edges():
    spec = metrics.BucketSpec((15, 45))
    assert spec.labels == ("current", "1-15", "16-45", "45+")
    assert [spec.bucket(d) for d in (-3, 0, 1, 15, 16, 45, 46)] == [
        "current", "current", "1-15", "1-15", "16-45", "16-45", "45+"]
    by_issue = metrics.BucketSpec((30,), metrics.INVOICE)
    assert by_issue.labels == ("0-30", "30+") and by_issue.bucket(0) == "0-30" and by_issue.bucket(31) == "30+"
    for bad in ((), (30, 30), (60, 30), (0, 30)):
        try:
            metrics.BucketSpec(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_kpi_formulas_on_a_worked_example():
    # 900 ending AR, 300 current, 300 of sales over 31 days, 2900 beginning AR.
    assert periodic.per_sales_days(Decimal("900"), Decimal("300"), 31) == Decimal("93.00")
    assert periodic.per_sales_days(Decimal("600"), Decimal("300"), 31) == Decimal("62.00")
    assert periodic.per_sales_days(Decimal("1"), Decimal("0"), 31) is None
    assert periodic.cei(Decimal("2900"), Decimal("300"), Decimal("900"), Decimal("300")) == Decimal("79.31")
    assert periodic.cei(Decimal("0"), Decimal("0"), Decimal("0"), Decimal("0")) is None
    late = periodic.average_days_late([(Decimal("400"), 45), (Decimal("399.50"), 10), (Decimal("1"), -5)])
    assert (late.weighted, late.by_count, late.payments) == (Decimal("27.48"), Decimal("18.33"), 3)
    assert periodic.countback_months(date(2024, 3, 15), date(2024, 1, 20)) == [
        (date(2024, 3, 1), date(2024, 3, 15)), (date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 1, 1), date(2024, 1, 31))]
