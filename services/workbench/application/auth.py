"""Logging in and out: argon2id password hashes (argon2-cffi's defaults, RFC 9106), sessions as
random tokens whose SHA-256 alone is stored, and one CSRF token per session."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.workbench.adapters import users
from services.workbench.domain.roles import ROLES

HASHER = PasswordHasher()
# Verified when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = HASHER.hash("not-a-password")


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def login(engine: AsyncEngine, username: str, password: str, session_hours: float) -> tuple[str, dict] | None:
    """A new session token for the right password, else None (unknown user, inactive, wrong)."""
    async with engine.begin() as conn:
        user = await users.get_user(conn, username.strip())
        stored = user["password_hash"] if user and user["active"] else _DUMMY_HASH
        try:
            HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is None or not user["active"]:
            return None
        if HASHER.check_needs_rehash(stored):
            await users.set_password_hash(conn, user["username"], HASHER.hash(password))
        token = await open_session(conn, user["username"], session_hours)
    return token, user


async def open_session(conn: AsyncConnection, username: str, session_hours: float,
                       id_token: str | None = None) -> str:
    """A new session for the user (local password or OIDC sign-in alike): its token. An OIDC
    sign-in's ID token stays with the session (server-side) for signing out at the provider."""
    token = secrets.token_urlsafe(32)
    await users.insert_session(conn, token_hash=token_hash(token), username=username,
                               csrf_token=secrets.token_urlsafe(32), expires_at=_now() + timedelta(hours=session_hours),
                               id_token=id_token)
    await users.delete_expired_sessions(conn, _now())
    return token


async def session(engine: AsyncEngine, token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    async with engine.connect() as conn:
        return await users.session_user(conn, token_hash(token), _now())


async def logout(engine: AsyncEngine, token: str | None) -> str | None:
    """The session ends; the ID token it kept when it came from an OIDC sign-in, else None."""
    if not token:
        return None
    async with engine.begin() as conn:
        return await users.delete_session(conn, token_hash(token))


async def create_user(engine: AsyncEngine, username: str, display_name: str, role: str, locale: str,
                      password: str, *, replace: bool = True) -> bool:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if locale not in ("en", "fr"):
        raise ValueError("locale must be en or fr")
    async with engine.begin() as conn:
        if replace:
            await users.upsert_user(conn, username=username, display_name=display_name, role=role, locale=locale,
                                    password_hash=hash_password(password))
            return True
        return await users.insert_user_if_missing(conn, username=username, display_name=display_name, role=role,
                                                  locale=locale, password_hash=hash_password(password))


async def set_locale(engine: AsyncEngine, username: str, locale: str) -> None:
    async with engine.begin() as conn:
        await users.set_locale(conn, username, locale)


# `make run` seeds these (README lists them). Password: the username + "-pass-2026"; never in production.
DEMO_USERS = (
    ("admin", "Ada Admin", "admin", "en"),
    ("alice", "Alice Collector", "collector", "en"),
    ("camille", "Camille Recouvreur", "collector", "fr"),
    ("carl", "Carl Cash", "cash_applier", "en"),
    ("dora", "Dora Disputes", "dispute_analyst", "en"),
    ("maria", "Maria Manager", "manager", "en"),
)


def demo_password(username: str) -> str:
    return f"{username}-pass-2026"


async def seed_demo_users(engine: AsyncEngine) -> list[str]:
    created = []
    for username, name, role, locale in DEMO_USERS:
        if await create_user(engine, username, name, role, locale, demo_password(username), replace=False):
            created.append(username)
    return created
