"""What an admin may set on a user (pure): a name people can type and read, a role, a language,
a password long enough. Each rule answers the field and why, as the forms show it."""
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


def new_user_problems(username: str, display_name: str, role: str, locale: str, password: str) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not USERNAME.match(username):
        problems["username"] = "2 to 64 lower-case letters, digits, dots, dashes or underscores"
    if not display_name.strip() or len(display_name) > 120:
        problems["display_name"] = "1 to 120 characters"
    if role not in ROLES:
        problems["role"] = f"one of {', '.join(ROLES)}"
    if locale not in ("en", "fr"):
        problems["locale"] = "en or fr"
    bad = password_problem(password)
    if bad:
        problems["password"] = bad
    return problems
