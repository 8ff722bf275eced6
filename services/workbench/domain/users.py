"""What an admin may set on a user (pure): a name people can type and read, a role, a language,
a password long enough; what an edit of the role, language or display name changes. Each rule
answers the field and why, as the forms show it."""
from __future__ import annotations

import re

from services.workbench.domain.roles import ROLES

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 256


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"at most {MAX_PASSWORD} characters"
    return None


def display_name_problem(display_name: str) -> str | None:
    if not display_name.strip() or len(display_name) > 120:
        return "1 to 120 characters"
    return None


def profile_problems(display_name: str, role: str, locale: str) -> dict[str, str]:
    """What is wrong with a user's display name, role and language (empty: nothing)."""
    problems: dict[str, str] = {}
    bad = display_name_problem(display_name)
    if bad:
        problems["display_name"] = bad
    if role not in ROLES:
        problems["role"] = f"one of {', '.join(ROLES)}"
    if locale not in ("en", "fr"):
        problems["locale"] = "en or fr"
    return problems


def profile_changes(current: dict, display_name: str, role: str, locale: str) -> list[tuple[str, str]]:
    """The changes an edit makes, as (change, detail) for the user's history: only what differs."""
    changes = []
    if role != current["role"]:
        changes.append(("role_changed", f"{current['role']} → {role}"))
    if locale != current["locale"]:
        changes.append(("locale_changed", f"{current['locale']} → {locale}"))
    if display_name.strip() != current["display_name"]:
        changes.append(("renamed", display_name.strip()))
    return changes


def new_user_problems(username: str, display_name: str, role: str, locale: str, password: str) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not USERNAME.match(username):
        problems["username"] = "2 to 64 lower-case letters, digits, dots, dashes or underscores"
    problems.update(profile_problems(display_name, role, locale))
    bad = password_problem(password)
    if bad:
        problems["password"] = bad
    return problems
