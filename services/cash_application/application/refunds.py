"""Refunds of unapplied cash: a plain function of (connection, command, metadata). The caller
owns the transaction; the rule lives in the Payment aggregate."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.eventstore import utc_midnight
from shared.problems import Conflict, NotFound, Unprocessable
from services.cash_application.adapters import repository as repo
from services.cash_application.application.posting import project_saved
from services.cash_application.domain.model import CashApplicationRuleViolation, Payment


@dataclass(frozen=True)
class RefundPayment:
    payment_id: str
    refund_id: str
    amount: Decimal
    method: str
    reference: str | None
    on: date
    reason: str | None


async def refund_payment(conn: AsyncConnection, cmd: RefundPayment, meta: dict[str, Any]) -> dict[str, Any]:
    """Two refunds (or a refund and an application) at once load the same payment version; the
    second append loses with a 409, so the unapplied cash is never paid out twice."""
    payment = await aggregate.load(conn, Payment, cmd.payment_id)
    if not payment.exists:
        raise NotFound(f"payment {cmd.payment_id} does not exist", field="payment_id")
    if payment.returned:
        raise Conflict(f"payment {cmd.payment_id} was returned by the bank: nothing to refund", field="payment_id")
    try:
        payment.refund(refund_id=cmd.refund_id, amount=cmd.amount, method=cmd.method, reference=cmd.reference,
                       on=cmd.on, reason=cmd.reason, at=utc_midnight(cmd.on))
    except CashApplicationRuleViolation as exc:
        raise Unprocessable(str(exc), field=exc.field) from exc
    await project_saved(conn, payment, meta)
    refund = next(r for r in await repo.refunds_of(conn, payment.id) if r["refund_id"] == cmd.refund_id)
    return {**refund, "unapplied_amount": payment.unapplied_amount}
