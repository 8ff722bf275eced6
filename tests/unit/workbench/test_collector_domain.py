"""The collector's account page (pure): a payment plan's running total against the balance of its
invoices, the worklist's ranking reasons said in French, the roles that may act, and the
timeline merged from the services' histories."""
from services.workbench.domain import money
from services.workbench.domain.collector import plan_draft, reasons, timeline
from services.workbench.domain.roles import Permission, may


class _Form(dict):
    def getlist(self, key):
        value = self.get(key, [])
        return value if isinstance(value, list) else [value]


BALANCES = {"I1": "1000.10", "I2": "0.20", "I3": "5.00"}


def test_a_plans_running_total_is_exact_against_the_chosen_invoices():
    draft = plan_draft(_Form({"invoice_ids": ["I1", "I2"], "due_1": "2026-01-01", "amount_1": "500.10",
                              "due_2": "2026-02-01", "amount_2": "0.10", "due_4": "2026-03-01", "amount_4": "0.10"}),
                       BALANCES)
    assert (draft.planned, draft.owed, draft.remaining, draft.over, draft.errors) == \
        ("500.30", "1000.30", "500.00", False, {})
    # Rows are numbered in the order given, skipping the empty ones.
    assert [(i["number"], i["due_date"], i["amount"]) for i in draft.installments] == \
        [(1, "2026-01-01", "500.10"), (2, "2026-02-01", "0.10"), (3, "2026-03-01", "0.10")]
    over = plan_draft(_Form({"invoice_ids": "I2", "due_1": "2026-01-01", "amount_1": "0.21"}), BALANCES)
    assert (over.remaining, over.over) == ("-0.01", True)


def test_a_plan_with_junk_names_the_field_and_unknown_invoices_count_nothing():
    bad = plan_draft(_Form({"invoice_ids": ["I9"], "due_1": "soon", "amount_1": "10", "due_2": "2026-01-01",
                            "amount_2": "ten"}), BALANCES)
    assert set(bad.errors) == {"invoice_ids", "due_1", "amount_2"} and bad.installments == []
    assert bad.owed == "0"
    empty = plan_draft(_Form({"invoice_ids": ["I1"]}), BALANCES)
    assert set(empty.errors) == {"amount_1"}


def test_the_ranking_reasons_are_said_in_french_with_french_money():
    entry = {"reasons": ["2000.50 EUR past due across 3 accounts (+6.0)", "never contacted (+10.0)"],
             "reason_details": [
                 {"code": "oldest_days_past_due", "points": "17.2", "values": {"days": "62"}},
                 {"code": "never_contacted", "points": "10.0", "values": {}},
                 {"code": "amount_past_due", "points": "6.0",
                  "values": {"amount": "2000.50", "currency": "EUR", "accounts": "3"}},
                 {"code": "something_new", "points": "1.0", "values": {}}]}
    said = reasons(entry, "fr", lambda v, c: money.format_money(v, c, "fr"))
    assert said[0] == "facture la plus ancienne échue depuis 62 jours (+17,2)"
    assert said[1] == "jamais contacté (+10,0)"
    assert said[2] == "2\u202f000,50\u00a0€ échus sur 3 comptes (+6,0)"
    assert said[3] == "something_new"  # a code this does not know: collections' text, else the code
    assert reasons({"reasons": ["x (+1.0)"]}, "fr") == ["x (+1.0)"]  # an older collections: its English


def test_a_collector_sets_up_plans_moves_strategies_escalates_and_sends_statements_a_manager_does_not():
    for p in (Permission.SET_UP_PLAN, Permission.CHANGE_STRATEGY, Permission.ESCALATE, Permission.SEND_STATEMENT):
        assert may("collector", p) and may("admin", p)
        assert not may("manager", p) and not may("cash_applier", p) and not may("dispute_analyst", p)


def test_the_timeline_merges_the_histories_newest_first():
    items = timeline(
        [{"event_type": "PromiseToPayMade", "occurred_at": "2026-01-05T00:00:00+00:00", "actor": "alice",
          "data": {"promise_id": "P1", "amount": "50.00", "currency": "USD"}},
         {"event_type": "AccountEscalated", "occurred_at": "2026-01-07T00:00:00+00:00", "actor": "alice",
          "data": {"escalation_id": "E1", "overdue_amount": "900.00", "currency": "USD", "summary": "2 invoices"}}],
        [{"event_type": "DisputeOpened", "occurred_at": "2026-01-06", "actor": "bob",
          "data": {"dispute_id": "D1", "amount": "10.00", "currency": "USD"}}],
        [{"effective_on": "2026-01-02", "changed_by": "carol", "credit_limit": True, "language": True}],
        [{"payment_id": "PAY1", "value_date": "2026-01-03", "amount": "20.00", "currency": "USD", "method": "ach"}],
        [{"contacted_on": "2026-01-04", "kind": "call", "outcome": "promised", "collector_id": "alice",
          "note": "will pay"}])
    assert [(i.on, i.what, i.ref, i.actor) for i in items] == [
        ("2026-01-07", "AccountEscalated", "E1", "alice"), ("2026-01-06", "DisputeOpened", "D1", "bob"),
        ("2026-01-05", "PromiseToPayMade", "P1", "alice"), ("2026-01-04", "contact:call", "promised", "alice"),
        ("2026-01-03", "PaymentReceived", "PAY1", None),
        ("2026-01-02", "CustomerProfileChanged", "credit_limit, language", "carol")]
    assert items[0].amount == "900.00" and items[0].note == "2 invoices"
