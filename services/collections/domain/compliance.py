"""The compliance guard: may this contact go out now? Pure.

Defaults in the spirit of Regulation F (12 CFR 1006.14): at most 7 contact attempts in 7 days
per account, no email in the customer's quiet hours (21:00-08:00 local). Do-not-contact and a
withdrawn channel consent block every contact channel. Internal actions (escalation, credit
hold, recommendations) are not contacts and are never blocked."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.collections.domain.model import CollectionsRuleViolation
from services.collections.domain.strategy import CONTACT_CHANNELS


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 7
    window_days: int = 7
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)

    def validate(self) -> "Policy":
        if not 1 <= self.max_attempts <= 100:
            raise CollectionsRuleViolation("max_attempts is 1 to 100", "max_attempts")
        if not 1 <= self.window_days <= 90:
            raise CollectionsRuleViolation("window_days is 1 to 90", "window_days")
        return self


@dataclass(frozen=True)
class ContactProfile:
    time_zone: str = "UTC"
    do_not_contact: bool = False
    consent: dict[str, bool] = field(default_factory=dict)   # absent: consent given
    has_email: bool = True


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CollectionsRuleViolation(f"{name} is not an IANA time zone", "time_zone") from exc


def in_quiet_hours(policy: Policy, local: time) -> bool:
    if policy.quiet_start == policy.quiet_end:
        return False
    if policy.quiet_start < policy.quiet_end:
        return policy.quiet_start <= local < policy.quiet_end
    return local >= policy.quiet_start or local < policy.quiet_end


def blocked_reason(channel: str, policy: Policy, profile: ContactProfile, attempts_in_window: int,
                   at: datetime) -> str | None:
    """Why this contact may not go now, or None. Persistent reasons come first, so the record
    says the lasting cause rather than today's."""
    if channel not in CONTACT_CHANNELS:
        return None
    if profile.do_not_contact:
        return "do_not_contact"
    if profile.consent.get(channel) is False:
        return "no_consent"
    if channel == "email" and not profile.has_email:
        return "no_email_address"
    if attempts_in_window >= policy.max_attempts:
        return "frequency_cap"
    if channel == "email" and in_quiet_hours(policy, at.astimezone(zone(profile.time_zone)).time()):
        return "quiet_hours"
    return None


PERSISTENT_REASONS = ("do_not_contact", "no_consent", "no_email_address", "disputed")
