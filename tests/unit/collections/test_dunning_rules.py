"""Pure rules of collections: strategy planning, compliance guard, risk score, worklist
priority, installment plans and write-off approval."""
from datetime import date, datetime, time, timezone
from decimal import Decimal

import pytest

from services.collections.domain.compliance import ContactProfile, Policy, blocked_reason, in_quiet_hours
from services.collections.domain.model import CollectionsRuleViolation
from services.collections.domain.plans import PlannedInstallment, judge_installments, validate_installments
from services.collections.domain.promise_rule import AppliedPayment
from services.collections.domain.risk import RiskHistory, score_customer, segment_for
from services.collections.domain.strategy import (
    DEFAULT_STEPS,
    OpenInvoice,
    Strategy,
    build_steps,
    plan_customer,
)
from services.collections.domain.worklist import AccountSnapshot, priority
from services.collections.domain.write_offs import approval_refusal, recommended_action

D = Decimal
TEMPLATES = {"reminder", "first_notice", "second_notice", "final_demand"}
STRATEGY = Strategy("standard", 1, "Standard", build_steps(DEFAULT_STEPS, TEMPLATES))


def invoice(invoice_id="i1", due=date(2024, 1, 31), balance="500.00", **kw) -> OpenInvoice:
    return OpenInvoice(invoice_id=invoice_id, invoice_number=invoice_id.upper(), currency="EUR",
                       open_balance=D(balance), due_date=due, strategy=kw.pop("strategy", STRATEGY), **kw)


# -- strategies -------------------------------------------------------------------------------

def test_steps_are_validated_and_sorted_by_offset():
    steps = build_steps([{"step_id": "b", "day_offset": 10, "channel": "call_task"},
                         {"step_id": "a", "day_offset": -2, "channel": "email", "template": "reminder"}], TEMPLATES)
    assert [s.step_id for s in steps] == ["a", "b"]


@pytest.mark.parametrize("raw,field", [
    ({"step_id": "a", "day_offset": 1, "channel": "fax"}, "steps.0.channel"),
    ({"step_id": "a", "day_offset": 1, "channel": "email"}, "steps.0.template"),
    ({"step_id": "a", "day_offset": 1, "channel": "email", "template": "nope"}, "steps.0.template"),
    ({"step_id": "A B", "day_offset": 1, "channel": "call_task"}, "steps.0.step_id"),
    ({"step_id": "a", "day_offset": "1", "channel": "call_task"}, "steps.0.day_offset"),
    ({"step_id": "a", "day_offset": 1, "channel": "call_task", "segments": ["vip"]}, "steps.0.segments"),
    ({"step_id": "a", "day_offset": 1, "channel": "call_task", "min_amount": "-1"}, "steps.0.min_amount"),
])
def test_bad_steps_name_the_field(raw, field):
    with pytest.raises(CollectionsRuleViolation) as exc:
        build_steps([raw], TEMPLATES)
    assert exc.value.field == field


def test_duplicate_step_ids_are_refused():
    with pytest.raises(CollectionsRuleViolation):
        build_steps([{"step_id": "a", "day_offset": 1, "channel": "call_task"}] * 2, TEMPLATES)


def test_reminder_before_due_date_then_nothing_until_the_first_notice():
    actions, _ = plan_customer([invoice()], date(2024, 1, 28), None)
    assert [(a.channel, a.step.step_id) for a in actions] == [("email", "reminder")]
    reminded = invoice(done_steps=frozenset({"reminder"}))
    assert plan_customer([reminded], date(2024, 2, 6), None)[0] == []
    actions, _ = plan_customer([reminded], date(2024, 2, 7), None)
    assert [(a.channel, a.step.step_id) for a in actions] == [("email", "first_notice")]


def test_catch_up_sends_only_the_highest_step_per_channel_and_supersedes_the_rest():
    # 50 days past due, nothing sent: one email (second notice), one call, one letter.
    actions, _ = plan_customer([invoice()], date(2024, 3, 21), None)
    by_channel = {a.channel: a for a in actions}
    assert {c: a.step.step_id for c, a in by_channel.items()} == {
        "email": "second_notice", "call_task": "call", "letter": "final_demand"}
    assert sorted(s.step_id for _, s in by_channel["email"].superseded) == ["first_notice", "reminder"]


def test_one_consolidated_action_per_customer_and_channel_at_the_highest_step():
    older = invoice("i1", due=date(2024, 1, 1), done_steps=frozenset({"reminder", "first_notice"}))
    newer = invoice("i2", due=date(2024, 1, 20), done_steps=frozenset({"reminder"}))
    actions, _ = plan_customer([newer, older], date(2024, 1, 27), None)
    assert len(actions) == 1
    email = actions[0]
    assert email.step.step_id == "second_notice" and email.invoice_ids == ["i1", "i2"]
    assert [(i.invoice_id, s.step_id) for i, s in email.items] == [("i1", "second_notice"), ("i2", "first_notice")]


def test_disputed_invoices_are_excluded_and_reported():
    actions, excluded = plan_customer([invoice("i1", disputed=True), invoice("i2")], date(2024, 2, 8), None)
    assert [a.invoice_ids for a in actions] == [["i2"]]
    assert [(e.invoice.invoice_id, e.step.step_id) for e in excluded] == [("i1", "first_notice")]


def test_conditions_minimum_amount_and_segment():
    steps = build_steps([{"step_id": "call", "day_offset": 5, "channel": "call_task", "min_amount": "1000"},
                         {"step_id": "vip", "day_offset": 5, "channel": "escalation", "segments": ["high_risk"]}],
                        TEMPLATES)
    strategy = Strategy("s", 1, "S", steps)
    small = invoice(balance="999.99", strategy=strategy)
    assert plan_customer([small], date(2024, 2, 10), "medium_risk")[0] == []
    big = invoice(balance="1000.00", strategy=strategy)
    assert [a.channel for a in plan_customer([big], date(2024, 2, 10), "high_risk")[0]] == ["call_task", "escalation"]


def test_a_broken_plan_makes_the_next_step_due_at_once():
    done = frozenset({"reminder", "first_notice"})
    assert plan_customer([invoice(done_steps=done)], date(2024, 2, 12), None)[0] == []
    actions, _ = plan_customer([invoice(done_steps=done, advanced=True)], date(2024, 2, 12), None)
    assert [a.step.step_id for a in actions] == ["second_notice"]


def test_paid_invoices_get_nothing():
    assert plan_customer([invoice(balance="0.00")], date(2024, 3, 1), None) == ([], [])


# -- compliance -------------------------------------------------------------------------------

NOON = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_guard_order_and_internal_channels():
    policy = Policy()
    assert blocked_reason("email", policy, ContactProfile(), 0, NOON) is None
    assert blocked_reason("email", policy, ContactProfile(do_not_contact=True), 9, NOON) == "do_not_contact"
    assert blocked_reason("letter", policy, ContactProfile(consent={"letter": False}), 0, NOON) == "no_consent"
    assert blocked_reason("letter", policy, ContactProfile(consent={"email": False}), 0, NOON) is None
    assert blocked_reason("call_task", policy, ContactProfile(), 7, NOON) == "frequency_cap"
    assert blocked_reason("call_task", policy, ContactProfile(), 6, NOON) is None
    assert blocked_reason("escalation", policy, ContactProfile(do_not_contact=True), 99, NOON) is None


def test_quiet_hours_are_in_the_customers_time_zone_and_apply_to_email():
    policy = Policy()
    tokyo = ContactProfile(time_zone="Asia/Tokyo")          # noon UTC is 21:00 in Tokyo
    assert blocked_reason("email", policy, tokyo, 0, NOON) == "quiet_hours"
    assert blocked_reason("letter", policy, tokyo, 0, NOON) is None
    assert blocked_reason("email", policy, ContactProfile(time_zone="Europe/Paris"), 0, NOON) is None
    assert in_quiet_hours(Policy(quiet_start=time(1), quiet_end=time(5)), time(3))
    assert not in_quiet_hours(Policy(quiet_start=time(1), quiet_end=time(5)), time(5))
    assert not in_quiet_hours(Policy(quiet_start=time(8), quiet_end=time(8)), time(3))


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(CollectionsRuleViolation):
        blocked_reason("email", Policy(), ContactProfile(time_zone="Mars/Base"), 0, NOON)


# -- risk -------------------------------------------------------------------------------------

def test_a_clean_payer_is_low_risk_with_every_factor_shown():
    score = score_customer(RiskHistory(days_late=[0, -2, 0], disputes=0, broken_promises=0,
                                       open_balance=D("100"), credit_limit=D("10000")))
    assert score.score == 0 and score.segment == "low_risk"
    assert set(score.factors) == {"avg_days_late", "trend_days_late", "share_paid_late", "disputes",
                                  "broken_promises", "exposure"}


def test_risk_factors_add_up():
    # avg 20 days late -> 10; trend: last three 30 vs earlier 5 -> 25 -> 8.3; share 4/5 -> 16;
    # 1 dispute -> 3.3; 3 broken -> 15; exposure 1.5 -> 15. Total 67.7 -> 68.
    score = score_customer(RiskHistory(days_late=[0, 10, 30, 30, 30], disputes=1, broken_promises=3,
                                       open_balance=D("15000"), credit_limit=D("10000")))
    assert score.score == 68 and score.segment == "high_risk"
    assert score.factors["avg_days_late"] == "20.0 (+10.0)"
    assert score.factors["share_paid_late"] == "0.80 (+16.0)"
    assert score.factors["exposure"] == "1.50 (+15.0)"


def test_improving_trend_adds_nothing_and_segments_have_bounds():
    improving = score_customer(RiskHistory(days_late=[30, 30, 30, 0, 0, 0], disputes=0, broken_promises=0,
                                           open_balance=D("0"), credit_limit=None))
    assert improving.factors["trend_days_late"].endswith("(+0.0)")
    assert (segment_for(29), segment_for(30), segment_for(59), segment_for(60)) == \
        ("low_risk", "medium_risk", "medium_risk", "high_risk")


# -- worklist ---------------------------------------------------------------------------------

def account(**kw) -> AccountSnapshot:
    base = dict(customer_id="c", currency="EUR", amount_past_due=D("5000"), oldest_days_past_due=45,
                risk_score=40, broken_promises=1, last_contact_on=date(2024, 3, 1), promise_due_today=False,
                follow_up_due=False)
    return AccountSnapshot(**{**base, **kw})


def test_priority_is_the_sum_of_its_reasons():
    p = priority(account(), date(2024, 3, 8))
    # 15 + 12.5 + 6 + 5 + 5 = 43.5
    assert p.score == D("43.5")
    assert p.reasons[0] == "5000 EUR past due (+15.0)"
    assert "last contact 7 days ago (+5.0)" in p.reasons


def test_promise_due_today_and_more_money_rank_higher():
    today = date(2024, 3, 8)
    assert priority(account(promise_due_today=True), today).score > priority(account(), today).score
    assert priority(account(amount_past_due=D("20000")), today).score > priority(account(), today).score
    assert "never contacted (+10.0)" in priority(account(last_contact_on=None), today).reasons


# -- plans ------------------------------------------------------------------------------------

SCHEDULE = [PlannedInstallment(1, date(2024, 4, 1), D("300")), PlannedInstallment(2, date(2024, 5, 1), D("300"))]


def test_installments_paid_in_order_and_plan_completes():
    payments = [AppliedPayment(D("300"), date(2024, 3, 30)), AppliedPayment(D("300"), date(2024, 5, 2))]
    outcomes = judge_installments(SCHEDULE, date(2024, 3, 15), 2, payments, date(2024, 5, 10))
    assert [(o.number, o.status, o.on) for o in outcomes] == [(1, "paid", date(2024, 3, 30)),
                                                               (2, "paid", date(2024, 5, 2))]


def test_an_installment_is_missed_the_day_after_its_grace():
    payments = [AppliedPayment(D("300"), date(2024, 4, 1)), AppliedPayment(D("100"), date(2024, 5, 1)),
                AppliedPayment(D("200"), date(2024, 5, 5))]
    before = judge_installments(SCHEDULE, date(2024, 3, 15), 2, payments, date(2024, 5, 3))
    assert [o.status for o in before] == ["paid", "open"] and before[1].paid_amount == D("100")
    after = judge_installments(SCHEDULE, date(2024, 3, 15), 2, payments, date(2024, 5, 4))
    assert [(o.status, o.on, o.paid_amount) for o in after][1] == ("missed", date(2024, 5, 4), D("100"))


def test_payments_before_the_plan_do_not_count_and_schedules_are_checked():
    early = [AppliedPayment(D("600"), date(2024, 3, 1))]
    outcomes = judge_installments(SCHEDULE, date(2024, 3, 15), 0, early, date(2024, 4, 2))
    assert outcomes[0].status == "missed"
    assert validate_installments(SCHEDULE, date(2024, 3, 15), D("600")) is None
    assert "exceed" in validate_installments(SCHEDULE, date(2024, 3, 15), D("599"))
    assert validate_installments(list(reversed(SCHEDULE)), date(2024, 3, 15), D("600")) is not None
    assert validate_installments(SCHEDULE, date(2024, 4, 2), D("600")) is not None


# -- write-offs -------------------------------------------------------------------------------

LIMITS = {"manager": D("1000"), "cfo": None}


def test_write_off_approval_rules():
    ok = dict(requested_by="ann", approver="bob", approver_role="manager", amount=D("1000"), limits=LIMITS)
    assert approval_refusal(**ok) is None
    assert "requester" in approval_refusal(**{**ok, "approver": "ann"})
    assert "exceeds" in approval_refusal(**{**ok, "amount": D("1000.01")})
    assert approval_refusal(**{**ok, "amount": D("10000000"), "approver_role": "cfo"}) is None
    assert "not a registered" in approval_refusal(**{**ok, "approver_role": None})
    assert "may not approve" in approval_refusal(**{**ok, "approver_role": "collector"})


def test_recommended_action():
    assert recommended_action(oldest_days_past_due=130, risk_score=10, broken_commitments=0,
                              on_active_plan=False) == "legal"
    assert recommended_action(oldest_days_past_due=60, risk_score=70, broken_commitments=0,
                              on_active_plan=False) == "credit_hold"
    assert recommended_action(oldest_days_past_due=60, risk_score=10, broken_commitments=1,
                              on_active_plan=False) == "call_manager"
    assert recommended_action(oldest_days_past_due=60, risk_score=70, broken_commitments=1,
                              on_active_plan=True) == "payment_plan"
