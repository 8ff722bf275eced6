"""The workbench's pure rules: who may do what, sorting and paging on the server, money and
dates per locale without float, the cash applier's running totals, every text in French."""
import re
from decimal import Decimal
from pathlib import Path

import pytest

from services.workbench.domain import money
from services.workbench.domain.cash import selection
from services.workbench.domain.i18n import FRENCH, translate
from services.workbench.domain.roles import PERMISSIONS, ROLES, Permission, home_path, may
from services.workbench.domain.worklist import (
    aging_bucket,
    aging_totals,
    page_number,
    sort_and_page,
    worklist_order,
)

TEMPLATES = Path(__file__).resolve().parents[3] / "services" / "workbench" / "templates"


def _entries(n: int) -> list[dict]:
    return [{"customer_id": f"C{i:04d}", "name": f"Name {n - i}", "priority": str(Decimal(i % 7) + Decimal("0.5")),
             "amount_past_due": f"{(i * 37) % 1000}.{i % 100:02d}", "oldest_days_past_due": i % 90,
             "risk_score": i % 5} for i in range(n)]


def test_each_role_holds_only_its_permissions():
    assert set(PERMISSIONS) == set(ROLES)
    assert may("collector", Permission.LOG_CONTACT) and not may("collector", Permission.APPLY_CASH)
    assert may("cash_applier", Permission.APPLY_CASH) and not may("cash_applier", Permission.VIEW_WORKLIST)
    assert may("dispute_analyst", Permission.RESOLVE_DISPUTE) and not may("dispute_analyst", Permission.LOG_CONTACT)
    assert may("manager", Permission.APPROVE_WRITE_OFF) and not may("manager", Permission.LOG_CONTACT)
    assert not may("collector", Permission.APPROVE_WRITE_OFF)
    assert all(may("admin", p) for p in Permission)
    assert not may("intruder", Permission.VIEW_ACCOUNT)
    assert home_path("cash_applier") == "/cash" and home_path("collector") == "/worklist"


def test_the_worklist_sorts_and_pages_on_the_server_with_stable_ties():
    entries = _entries(5000)
    first = sort_and_page(entries, None, None, 1, None)
    assert (first.sort, first.descending, first.size, first.total, first.pages) == ("priority", True, 50, 5000, 100)
    keys = [(-Decimal(e["priority"]), e["customer_id"]) for e in first.rows]
    assert keys == sorted(keys)
    # Paging covers every account once.
    seen = [e["customer_id"] for p in range(1, 101) for e in sort_and_page(entries, "amount_past_due", "asc", p, 50).rows]
    assert len(seen) == len(set(seen)) == 5000
    by_amount = sort_and_page(entries, "amount_past_due", "asc", 1, 100).rows
    assert [Decimal(e["amount_past_due"]) for e in by_amount] == sorted(Decimal(e["amount_past_due"]) for e in by_amount)
    last = sort_and_page(entries, "name", "asc", 999, 25)
    assert (last.number, len(last.rows), last.first_index, last.last_index) == (200, 25, 4976, 5000)
    unknown = sort_and_page(entries, "DROP TABLE", "sideways", 1, 7)
    assert (unknown.sort, unknown.descending, unknown.size) == ("priority", True, 50)
    empty = sort_and_page([], None, None, 3, 25)
    assert (empty.number, empty.pages, empty.rows, empty.first_index) == (1, 1, [], 0)


def test_the_worklist_page_asked_of_collections():
    assert worklist_order(None, None) == ("priority", True)
    assert worklist_order("name", None) == ("name", False) and worklist_order("name", "desc") == ("name", True)
    assert worklist_order("amount_past_due", "asc") == ("amount_past_due", False)
    assert worklist_order("DROP TABLE", "sideways") == ("priority", True)
    # Past the end, the last page; an empty worklist has one empty page.
    assert [page_number(p, 50, 5000) for p in (None, 1, 40, 100, 101, 999)] == [1, 1, 40, 100, 100, 100]
    assert page_number(3, 25, 0) == 1 and page_number(2, 25, 26) == 2


def test_aging_buckets_and_totals_are_exact():
    assert [aging_bucket(d) for d in (-5, 0, 1, 30, 31, 60, 61, 90, 91, 400)] == \
        ["current", "current", "1-30", "1-30", "31-60", "31-60", "61-90", "61-90", "90+", "90+"]
    totals = aging_totals([{"days_past_due": 3, "open_balance": "0.10"}, {"days_past_due": 4, "open_balance": "0.20"},
                           {"days_past_due": 120, "open_balance": "1000000.01"}])
    assert totals["1-30"] == "0.30" and totals["90+"] == "1000000.01" and Decimal(totals["current"]) == 0


@pytest.mark.parametrize("value, currency, lang, expected", [
    ("1234.50", "USD", "en", "$1,234.50"),
    ("1234.50", "EUR", "fr", "1\u202f234,50\xa0€"),
    ("0.10", "USD", "en", "$0.10"),
    ("9999999999999999.99", "USD", "en", "$9,999,999,999,999,999.99"),  # beyond float's precision
    ("12.345", "BHD", "en", "BHD12.345"),
    ("-5.00", "USD", "en", "-$5.00"),
    ("-5.00", "EUR", "fr", "-5,00\xa0€"),
    ("1234567.891", "USD", "fr", "1\u202f234\u202f567,891\xa0$US"),
    ("100", "XYZ", "en", "XYZ100"),
    ("999.99", None, "fr", "999,99"),
])
def test_money_keeps_the_apis_digits_in_each_locale(value, currency, lang, expected):
    assert money.format_money(value, currency, lang) == expected


def test_money_refuses_junk_and_dates_follow_the_locale():
    for junk in ("abc", "NaN", "Infinity", "1e"):
        with pytest.raises(ValueError):
            money.parse_amount(junk)
    assert money.format_money(None, "USD", "en") == ""
    assert money.format_day("2026-03-05", "en") == "Mar 5, 2026"
    assert money.format_day("2026-03-05", "fr") == "5 mars 2026"
    assert money.format_day("2026-01-05", "fr") == "5 janv. 2026"
    assert money.format_day("2026-12-25", "en") == "Dec 25, 2026"
    assert money.add(["0.10", "0.20", ""]) == "0.30"


class _Form(dict):
    def getlist(self, key):
        value = self.get(key, [])
        return value if isinstance(value, list) else [value]


def test_the_cash_appliers_running_totals_are_exact_and_flag_overapplication():
    form = _Form({"pick": ["I1", "I2"], "amount_I1": "0.10", "amount_I2": "0.20", "amount_I3": "5.00"})
    sel = selection(form, ["I1", "I2", "I3"], "1.00")
    assert (sel.selected, sel.remaining, sel.over, sel.errors) == ("0.30", "0.70", False, {})
    assert sel.applications == [{"invoice_id": "I1", "amount": "0.10"}, {"invoice_id": "I2", "amount": "0.20"}]
    over = selection(_Form({"pick": ["I3"], "amount_I3": "5.00"}), ["I1", "I2", "I3"], "1.00")
    assert (over.remaining, over.over) == ("-4.00", True)
    bad = selection(_Form({"pick": ["I1", "I2"], "amount_I1": "-1", "amount_I2": "ten"}), ["I1", "I2"], "1.00")
    assert set(bad.errors) == {"I1", "I2"} and bad.applications == []


def test_every_text_the_templates_show_has_a_french_translation():
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([^"']+)["']\)""", template.read_text()))
    assert len(used) > 60
    missing = sorted(u for u in used if u not in FRENCH)
    assert missing == []
    assert translate("Worklist", "fr") == "Liste de travail" and translate("Worklist", "en") == "Worklist"


def test_the_unapplied_queues_order_maps_onto_the_service_and_balances_reopen_exactly():
    from services.workbench.domain.cash import applied_total, queue_order, reopened_balances

    age = queue_order("age", None)  # oldest first: the value date ascending
    assert (age.descending, age.api_sort, age.api_order, age.toggled("age")) == (True, "value_date", "asc", "asc")
    assert (queue_order("amount", "asc").api_order, queue_order("customer", None).api_order) == ("asc", "asc")
    assert queue_order("amount", "asc").toggled("amount") == "desc" and queue_order("amount", None).toggled("score") == "desc"
    unknown = queue_order("1; DROP TABLE payments", "sideways")
    assert (unknown.api_sort, unknown.api_order) == ("received", "asc")
    payment = {"applications": [{"application_id": "a1", "invoice_id": "I1", "amount": "0.10", "reversed_on": None},
                                {"application_id": "a2", "invoice_id": "I1", "amount": "0.20", "reversed_on": None},
                                {"application_id": "a3", "invoice_id": "I2", "amount": "5.00", "reversed_on": "2026-01-02"}]}
    items = [{"invoice_id": "I1", "open_balance": "0.00"}, {"invoice_id": "I2", "open_balance": "7.10"}]
    assert reopened_balances(payment, items) == {"I1": "0.30", "I2": "7.10"}
    assert (applied_total(payment), applied_total(payment, ["a2"])) == ("0.30", "0.20")


def test_the_dispute_queues_filters_become_the_services_query_and_junk_filters_nothing():
    from datetime import date

    from services.workbench.domain.disputes import queue_filters

    f = queue_filters({"reason_code": "PRICING", "owner": "-", "min_age": "30", "max_age": "90",
                       "min_amount": "10.50", "max_amount": "", "team": "billing", "kind": "deduction"},
                      date(2026, 3, 31))
    assert f.query == {"status": "open", "kind": "deduction", "reason_code": "PRICING", "owner": "-",
                       "team": "billing", "opened_to": "2026-03-01", "opened_from": "2025-12-31",
                       "min_amount": "10.50"} and f.errors == {}
    bad = queue_filters({"status": "closed'", "min_age": "-3", "min_amount": "NaN", "max_amount": "1e99",
                         "team": "finance"}, date(2026, 3, 31))
    assert bad.query == {"status": "open"} and set(bad.errors) == {"min_age", "min_amount", "max_amount"}


def test_a_trend_chart_scales_exactly_and_breaks_its_line_where_a_value_is_missing():
    from services.workbench.domain.charts import HEIGHT, line_chart

    chart = line_chart(["2026-01", "2026-02", "2026-03", "2026-04"], ["40.5", None, "60", "20"])
    assert not chart.empty and len(chart.segments) == 2 and len(chart.dots) == 3
    ys = {value: Decimal(y) for _, y, value in chart.dots}
    assert ys["60"] < ys["40.5"] < ys["20"] <= HEIGHT  # higher values are drawn higher up
    assert [v for _, v in chart.y_ticks] == ["0.0", "15.0", "30.0", "45.0", "60.0"]  # from zero
    assert line_chart(["a"], [None]).empty and not line_chart(["a"], ["5"]).empty
    assert len(line_chart([str(i) for i in range(60)], ["1"] * 60).x_labels) <= 9


def test_what_an_admin_may_set_on_a_user():
    from services.workbench.domain.users import new_user_problems, password_problem

    assert new_user_problems("bob.cash", "Bob", "cash_applier", "fr", "x" * 12) == {}
    bad = new_user_problems("Bob Smith", " ", "root", "de", "short")
    assert set(bad) == {"username", "display_name", "role", "locale", "password"}
    assert password_problem("x" * 11) and password_problem("x" * 257) and password_problem("x" * 12) is None


def test_an_edit_of_a_user_records_only_what_it_changes():
    from services.workbench.domain.users import profile_changes, profile_problems

    bob = {"display_name": "Bob Cash", "role": "cash_applier", "locale": "fr"}
    assert profile_changes(bob, " Bob Cash ", "cash_applier", "fr") == []
    assert profile_changes(bob, "Robert Cash", "manager", "en") == [
        ("role_changed", "cash_applier → manager"), ("locale_changed", "fr → en"), ("renamed", "Robert Cash")]
    assert set(profile_problems("", "root", "de")) == {"display_name", "role", "locale"}
    assert profile_problems("Bob", "collector", "en") == {}


def test_the_messages_the_cash_and_dispute_pages_send_back_read_in_french():
    import ast
    import inspect

    from services.workbench.api import cash_routes, dispute_routes
    from services.workbench.domain import disputes

    said = set()
    for module in (cash_routes, dispute_routes):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "quote" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                said.add(node.args[0].value)
    said |= {"a whole number of days", "a positive decimal amount"}
    assert len(said) >= 10 and sorted(m for m in said if m not in FRENCH) == []
    assert set(disputes.queue_filters({"min_age": "x", "min_amount": "y"}, __import__("datetime").date.today())
               .errors.values()) <= said
