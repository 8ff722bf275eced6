"""The dispute workflow, pure: statuses, notes, attachments' limits, due dates by reason code and
escalation once per due date."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.disputes.domain.model import Dispute, DisputeAlreadyResolved, DisputeRuleViolation, InvoiceReference

AT = datetime(2024, 3, 1, tzinfo=timezone.utc)
ON = date(2024, 3, 1)


def dispute(code="PRICING") -> Dispute:
    d = Dispute("d-1")
    d.open(invoice=InvoiceReference("inv-1", "C", "USD", Decimal("500.00"), date(2024, 2, 1)), amount=Decimal("50.00"),
           reason_code=code, opened_on=ON, description=None, already_disputed=Decimal(0), at=AT)
    d.version, d.pending = 1, []
    return d


def field(fn) -> str | None:
    with pytest.raises(DisputeRuleViolation) as info:
        fn()
    return info.value.field


def test_statuses_move_and_resolution_closes_them():
    d = dispute()
    assert d.work_status == "new"
    d.change_status(status="in_review", on=ON, by="ann", at=AT)
    d.change_status(status="waiting_on_customer", on=ON, by="ann", at=AT)
    assert [(e.from_status, e.to_status) for e, _ in d.pending] == [("new", "in_review"),
                                                                   ("in_review", "waiting_on_customer")]
    assert field(lambda: d.change_status(status="waiting_on_customer", on=ON, by="ann", at=AT)) == "status"
    assert field(lambda: d.change_status(status="new", on=ON, by="ann", at=AT)) == "status"
    assert field(lambda: d.change_status(status="resolved", on=ON, by="ann", at=AT)) == "status"
    d.resolve(resolution="rejected", credit_amount=None, resolved_on=date(2024, 3, 5), at=AT)
    assert d.work_status == "resolved"
    with pytest.raises(DisputeAlreadyResolved):
        d.change_status(status="in_review", on=ON, by="ann", at=AT)
    d.add_note(note_id="n-1", text="customer agreed", on=date(2024, 3, 6), by="ann", at=AT)  # still allowed


def test_attachment_limits():
    d = dispute()
    kwargs = dict(attachment_id="a-1", file_name="pod.pdf", content_type="application/pdf", sha256="x",
                  kind="proof_of_delivery", on=ON, by="ann", at=AT, max_bytes=1000)
    assert field(lambda: d.add_attachment(size_bytes=1001, **kwargs)) == "body"
    assert field(lambda: d.add_attachment(size_bytes=0, **kwargs)) == "body"
    assert field(lambda: d.add_attachment(size_bytes=10, **{**kwargs, "kind": "selfie"})) == "kind"
    d.add_attachment(size_bytes=1000, **kwargs)
    assert d.pending[0][0].event_type == "DisputeAttachmentAdded"


@pytest.mark.parametrize("code, due", [("PRICING", date(2024, 3, 11)), ("PROMOTION", date(2024, 3, 31)),
                                       ("DUPLICATE_BILLING", date(2024, 3, 8))])
def test_due_date_by_reason_and_escalation_once(code, due):
    d = dispute(code)
    assert d.due_on == due
    assert not d.escalate_if_overdue(as_of=due, at=AT)  # due today: not overdue yet
    assert d.escalate_if_overdue(as_of=date(2024, 4, 2), at=AT)
    (e, _), = d.pending
    assert (e.event_type, e.due_on, e.team) == ("DisputeEscalated", due, d.team)
    assert not d.escalate_if_overdue(as_of=date(2024, 4, 3), at=AT)


def test_reclassification_moves_the_due_date_and_a_new_due_date_escalates_again():
    d = dispute("DUPLICATE_BILLING")
    assert d.escalate_if_overdue(as_of=date(2024, 3, 9), at=AT)
    d.reclassify(reason_code="PROMOTION", on=date(2024, 3, 9), by="ann", at=AT)
    assert d.due_on == date(2024, 3, 31)
    assert not d.escalate_if_overdue(as_of=date(2024, 3, 20), at=AT)
    assert d.escalate_if_overdue(as_of=date(2024, 4, 1), at=AT)
