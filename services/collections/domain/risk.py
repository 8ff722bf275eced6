"""The customer risk score: an explainable, pure function of the customer's own history.

score = sum of six capped factors (points out of 100):
- average days late of settled invoices: min(avg, 60) / 60 * 30
- trend: average days late of the last 3 settled invoices minus the earlier ones, when worse:
  min(max(trend, 0), 30) / 30 * 10
- share of settled invoices paid late: share * 20
- disputes opened (any): min(n, 3) / 3 * 10
- broken promises and plans: min(n, 3) / 3 * 15
- exposure against the credit limit: min(open / limit, 1.5) / 1.5 * 15 (15 when no limit and
  something is open)
Segments: low_risk < 30 <= medium_risk < 60 <= high_risk."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Sequence

D = Decimal


@dataclass(frozen=True)
class RiskHistory:
    days_late: Sequence[int]        # per settled invoice, in settlement order; <= 0 means on time
    disputes: int
    broken_promises: int
    open_balance: Decimal
    credit_limit: Decimal | None


@dataclass(frozen=True)
class RiskScore:
    score: int
    segment: str
    factors: dict[str, str]


def _cap(value: Decimal, cap: Decimal) -> Decimal:
    return min(max(value, D(0)), cap)


def _avg(values: Sequence[int]) -> Decimal:
    return D(sum(values)) / D(len(values)) if values else D(0)


def segment_for(score: int) -> str:
    return "high_risk" if score >= 60 else "medium_risk" if score >= 30 else "low_risk"


def score_customer(history: RiskHistory) -> RiskScore:
    late = [max(d, 0) for d in history.days_late]
    average = _avg(late)
    recent, earlier = late[-3:], late[:-3]
    trend = _avg(recent) - _avg(earlier) if earlier else D(0)
    share_late = D(sum(1 for d in late if d > 0)) / D(len(late)) if late else D(0)
    if history.credit_limit and history.credit_limit > 0:
        utilisation = history.open_balance / history.credit_limit
    else:
        utilisation = D("1.5") if history.open_balance > 0 else D(0)
    points = {
        "avg_days_late": _cap(average, D(60)) / 60 * 30,
        "trend_days_late": _cap(trend, D(30)) / 30 * 10,
        "share_paid_late": share_late * 20,
        "disputes": D(min(history.disputes, 3)) / 3 * 10,
        "broken_promises": D(min(history.broken_promises, 3)) / 3 * 15,
        "exposure": _cap(utilisation, D("1.5")) / D("1.5") * 15,
    }
    shown = {
        "avg_days_late": f"{average.quantize(D('0.1'))}",
        "trend_days_late": f"{trend.quantize(D('0.1'))}",
        "share_paid_late": f"{share_late.quantize(D('0.01'))}",
        "disputes": str(history.disputes),
        "broken_promises": str(history.broken_promises),
        "exposure": f"{utilisation.quantize(D('0.01'))}",
    }
    total = int(sum(points.values(), D(0)).quantize(D(1), rounding=ROUND_HALF_UP))
    factors = {name: f"{shown[name]} (+{points[name].quantize(D('0.1'), rounding=ROUND_HALF_UP)})" for name in points}
    return RiskScore(score=total, segment=segment_for(total), factors=factors)
