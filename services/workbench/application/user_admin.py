"""The admin's user administration: create a user with a role, change a user's role, language or
display name, reset a password, deactivate or reactivate; each change recorded (who, whom, what,
when). A reset or a deactivation ends the person's sessions at once; a new role holds from the
person's next request (the session reads the user's row each time)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.workbench.adapters import users
from services.workbench.application.auth import hash_password
from services.workbench.domain.users import new_user_problems, password_problem, profile_changes, profile_problems


class UserAdminError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


async def overview(engine: AsyncEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with engine.connect() as conn:
        return await users.list_users(conn), await users.recent_changes(conn)


async def create(engine: AsyncEngine, actor: str, username: str, display_name: str, role: str, locale: str,
                 password: str) -> None:
    problems = new_user_problems(username, display_name, role, locale, password)
    if problems:
        field, reason = next(iter(problems.items()))
        raise UserAdminError(field, reason)
    password_hash = hash_password(password)
    async with engine.begin() as conn:
        if not await users.insert_user(conn, username=username, display_name=display_name.strip(), role=role,
                                       locale=locale, password_hash=password_hash):
            raise UserAdminError("username", "already taken")
        await users.record_change(conn, actor=actor, username=username, change="created", detail=role)


async def reset_password(engine: AsyncEngine, actor: str, username: str, password: str) -> None:
    bad = password_problem(password)
    if bad:
        raise UserAdminError("password", bad)
    password_hash = hash_password(password)
    async with engine.begin() as conn:
        if await users.get_user(conn, username) is None:
            raise UserAdminError("username", "no such user")
        await users.set_password_hash(conn, username, password_hash)
        await users.delete_sessions_of(conn, username)
        await users.record_change(conn, actor=actor, username=username, change="password_reset")


async def set_active(engine: AsyncEngine, actor: str, username: str, active: bool) -> None:
    if username == actor and not active:
        raise UserAdminError("username", "you cannot deactivate yourself")
    async with engine.begin() as conn:
        if await users.get_user(conn, username) is None:
            raise UserAdminError("username", "no such user")
        if await users.set_active(conn, username, active):
            if not active:
                await users.delete_sessions_of(conn, username)
            await users.record_change(conn, actor=actor, username=username,
                                      change="reactivated" if active else "deactivated")


async def update_profile(engine: AsyncEngine, actor: str, username: str, display_name: str, role: str,
                         locale: str) -> list[str]:
    """Change a user's display name, role and language; the changes made (none: nothing differed).
    An admin does not change its own role (the last admin cannot lock everyone out)."""
    problems = profile_problems(display_name, role, locale)
    if problems:
        field, reason = next(iter(problems.items()))
        raise UserAdminError(field, reason)
    async with engine.begin() as conn:
        current = await users.get_user_for_update(conn, username)
        if current is None:
            raise UserAdminError("username", "no such user")
        changes = profile_changes(current, display_name, role, locale)
        if username == actor and role != current["role"]:
            raise UserAdminError("role", "you cannot change your own role")
        if changes:
            await users.set_profile(conn, username, display_name=display_name.strip(), role=role, locale=locale)
            for change, detail in changes:
                await users.record_change(conn, actor=actor, username=username, change=change, detail=detail)
    return [change for change, _ in changes]
