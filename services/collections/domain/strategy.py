"""Dunning strategies as data, and the planner that turns a customer's open invoices into the
actions due as of a day. Pure: no I/O.

A strategy is a versioned list of steps at day offsets relative to the due date (negative: a
reminder before it falls due). Each step has a channel and conditions. The planner, per
invoice, takes the steps whose offset has been reached and which were not done under any
version of the strategy; per channel it keeps only the highest of them (the lower ones are
superseded, so a missed week never sends the first, second and final notice at once); then it
consolidates per customer, strategy and channel: one notice, one call task, one escalation."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Iterable

from services.collections.domain.model import CollectionsRuleViolation

NOTICE_CHANNELS = ("email", "letter")
CONTACT_CHANNELS = ("email", "letter", "call_task")
CHANNELS = ("email", "letter", "call_task", "escalation", "credit_hold", "recommend_write_off", "recommend_legal")
SEGMENTS = ("low_risk", "medium_risk", "high_risk")
MAX_STEPS = 30
STEP_ID = re.compile(r"^[a-z0-9_-]{1,40}$")
TEMPLATE = re.compile(r"^[a-z0-9_]{1,40}$")


@dataclass(frozen=True)
class Step:
    step_id: str
    day_offset: int
    channel: str
    template: str | None = None
    min_amount: Decimal = Decimal("0")
    segments: tuple[str, ...] = ()       # empty: every segment
    exclude_disputed: bool = True
    escalate_to: str | None = None       # escalation steps: who gets it (default: the AR manager)

    def applies_to(self, segment: str | None, open_balance: Decimal) -> bool:
        if self.segments and segment not in self.segments:
            return False
        return open_balance >= self.min_amount

    def as_dict(self) -> dict[str, Any]:
        return {"step_id": self.step_id, "day_offset": self.day_offset, "channel": self.channel,
                "template": self.template, "min_amount": str(self.min_amount), "segments": list(self.segments),
                "exclude_disputed": self.exclude_disputed, "escalate_to": self.escalate_to}


@dataclass(frozen=True)
class Strategy:
    strategy_id: str
    version: int
    name: str
    steps: tuple[Step, ...]

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.step_id == step_id)


def build_steps(raw_steps: Iterable[dict[str, Any]], known_templates: Iterable[str]) -> tuple[Step, ...]:
    """Validate step definitions (from the API or the database) into Steps sorted by offset."""
    templates = set(known_templates)
    steps: list[Step] = []
    seen: set[str] = set()
    raw_steps = list(raw_steps)
    if not 1 <= len(raw_steps) <= MAX_STEPS:
        raise CollectionsRuleViolation(f"a strategy has 1 to {MAX_STEPS} steps", "steps")
    for i, raw in enumerate(raw_steps):
        where = f"steps.{i}"
        step_id = str(raw.get("step_id", ""))
        if not STEP_ID.match(step_id):
            raise CollectionsRuleViolation("step_id is 1-40 of a-z, 0-9, _ and -", f"{where}.step_id")
        if step_id in seen:
            raise CollectionsRuleViolation(f"step_id {step_id} appears twice", f"{where}.step_id")
        seen.add(step_id)
        channel = raw.get("channel")
        if channel not in CHANNELS:
            raise CollectionsRuleViolation(f"channel must be one of {', '.join(CHANNELS)}", f"{where}.channel")
        offset = raw.get("day_offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or not -60 <= offset <= 720:
            raise CollectionsRuleViolation("day_offset is a whole number of days from -60 to 720", f"{where}.day_offset")
        template = raw.get("template")
        if channel in NOTICE_CHANNELS:
            if not template or not TEMPLATE.match(str(template)):
                raise CollectionsRuleViolation("email and letter steps name a template", f"{where}.template")
            if str(template) not in templates:
                raise CollectionsRuleViolation(f"there is no template {template}", f"{where}.template")
        segments = tuple(raw.get("segments") or ())
        for segment in segments:
            if segment not in SEGMENTS:
                raise CollectionsRuleViolation(f"segments are among {', '.join(SEGMENTS)}", f"{where}.segments")
        try:
            min_amount = Decimal(str(raw.get("min_amount") or "0"))
        except ArithmeticError as exc:
            raise CollectionsRuleViolation("min_amount is a decimal string", f"{where}.min_amount") from exc
        if not min_amount.is_finite() or min_amount < 0:
            raise CollectionsRuleViolation("min_amount is zero or more", f"{where}.min_amount")
        steps.append(Step(step_id=step_id, day_offset=offset, channel=channel, template=template,
                          min_amount=min_amount, segments=segments,
                          exclude_disputed=bool(raw.get("exclude_disputed", True)),
                          escalate_to=raw.get("escalate_to")))
    return tuple(sorted(steps, key=lambda s: (s.day_offset, s.step_id)))


DEFAULT_STRATEGY_ID = "standard"

# What a collections team lead would start from: a friendly reminder before the due date, two
# notices, a call, a final demand by letter, escalation with a credit hold, then a
# recommendation to write off or go to law for what is left after four months.
DEFAULT_STEPS: tuple[dict[str, Any], ...] = (
    {"step_id": "reminder", "day_offset": -3, "channel": "email", "template": "reminder"},
    {"step_id": "first_notice", "day_offset": 7, "channel": "email", "template": "first_notice"},
    {"step_id": "second_notice", "day_offset": 21, "channel": "email", "template": "second_notice"},
    {"step_id": "call", "day_offset": 30, "channel": "call_task", "min_amount": "100"},
    {"step_id": "final_demand", "day_offset": 45, "channel": "letter", "template": "final_demand"},
    {"step_id": "escalate", "day_offset": 60, "channel": "escalation"},
    {"step_id": "credit_hold", "day_offset": 60, "channel": "credit_hold"},
    {"step_id": "recommend_write_off", "day_offset": 90, "channel": "recommend_write_off"},
)


# -- planning ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenInvoice:
    invoice_id: str
    invoice_number: str
    currency: str
    open_balance: Decimal
    due_date: date
    strategy: Strategy
    done_steps: frozenset[str] = frozenset()   # step_ids done or superseded (any version)
    disputed: bool = False
    advanced: bool = False                      # a broken plan moved it on: next step due now

    def days_past_due(self, as_of: date) -> int:
        return (as_of - self.due_date).days


@dataclass
class ChannelAction:
    """One consolidated action for a customer: the highest step reached in the channel, with
    every invoice it covers (and the lower steps it supersedes)."""

    strategy: Strategy
    channel: str
    step: Step
    items: list[tuple[OpenInvoice, Step]] = field(default_factory=list)
    superseded: list[tuple[OpenInvoice, Step]] = field(default_factory=list)

    @property
    def currency(self) -> str:
        return self.items[0][0].currency

    @property
    def invoice_ids(self) -> list[str]:
        return [invoice.invoice_id for invoice, _ in self.items]


@dataclass(frozen=True)
class DisputeExclusion:
    strategy: Strategy
    step: Step
    invoice: OpenInvoice


def due_steps(invoice: OpenInvoice, as_of: date, segment: str | None) -> list[Step]:
    dpd = invoice.days_past_due(as_of)
    steps = [s for s in invoice.strategy.steps if s.step_id not in invoice.done_steps]
    due = [s for s in steps if s.day_offset <= dpd]
    if invoice.advanced:
        later = [s for s in steps if s.day_offset > dpd]
        if later:
            due.append(later[0])
    return [s for s in due if s.applies_to(segment, invoice.open_balance)]


def plan_customer(invoices: Iterable[OpenInvoice], as_of: date,
                  segment: str | None) -> tuple[list[ChannelAction], list[DisputeExclusion]]:
    groups: dict[tuple[str, int, str, str], ChannelAction] = {}
    exclusions: list[DisputeExclusion] = []
    for invoice in sorted(invoices, key=lambda i: (i.due_date, i.invoice_id)):
        if invoice.open_balance <= 0:
            continue
        by_channel: dict[str, list[Step]] = {}
        for step in due_steps(invoice, as_of, segment):
            by_channel.setdefault(step.channel, []).append(step)
        for channel, steps in by_channel.items():
            steps.sort(key=lambda s: (s.day_offset, s.step_id))
            highest = steps[-1]
            if invoice.disputed and highest.exclude_disputed:
                exclusions.append(DisputeExclusion(invoice.strategy, highest, invoice))
                continue
            key = (invoice.strategy.strategy_id, invoice.strategy.version, channel, invoice.currency)
            group = groups.get(key)
            if group is None:
                group = groups[key] = ChannelAction(invoice.strategy, channel, highest)
            elif highest.day_offset > group.step.day_offset:
                group.step = highest
            group.items.append((invoice, highest))
            group.superseded.extend((invoice, s) for s in steps[:-1])
    order = {c: n for n, c in enumerate(CHANNELS)}
    actions = sorted(groups.values(), key=lambda a: (a.strategy.strategy_id, order[a.channel], a.currency))
    return actions, exclusions
