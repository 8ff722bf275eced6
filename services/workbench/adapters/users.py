"""The users and sessions tables (SQL only here)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def get_user(conn: AsyncConnection, username: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM users WHERE username = :u"), {"u": username})).mappings().first()
    return dict(row) if row else None


async def upsert_user(conn: AsyncConnection, *, username: str, display_name: str, role: str, locale: str,
                      password_hash: str) -> None:
    await conn.execute(text(
        "INSERT INTO users (username, display_name, role, locale, password_hash) VALUES (:u, :d, :r, :l, :p)"
        " ON CONFLICT (username) DO UPDATE SET display_name = :d, role = :r, locale = :l, password_hash = :p,"
        " active = true"), {"u": username, "d": display_name, "r": role, "l": locale, "p": password_hash})


async def insert_user_if_missing(conn: AsyncConnection, *, username: str, display_name: str, role: str, locale: str,
                                 password_hash: str) -> bool:
    result = await conn.execute(text(
        "INSERT INTO users (username, display_name, role, locale, password_hash) VALUES (:u, :d, :r, :l, :p)"
        " ON CONFLICT (username) DO NOTHING"),
        {"u": username, "d": display_name, "r": role, "l": locale, "p": password_hash})
    return result.rowcount == 1


async def set_password_hash(conn: AsyncConnection, username: str, password_hash: str) -> None:
    await conn.execute(text("UPDATE users SET password_hash = :p WHERE username = :u"),
                       {"p": password_hash, "u": username})


async def set_locale(conn: AsyncConnection, username: str, locale: str) -> None:
    await conn.execute(text("UPDATE users SET locale = :l WHERE username = :u"), {"l": locale, "u": username})


async def insert_session(conn: AsyncConnection, *, token_hash: str, username: str, csrf_token: str,
                         expires_at: datetime, id_token: str | None = None) -> None:
    await conn.execute(text(
        "INSERT INTO sessions (token_hash, username, csrf_token, expires_at, id_token)"
        " VALUES (:t, :u, :c, :e, :i)"),
        {"t": token_hash, "u": username, "c": csrf_token, "e": expires_at, "i": id_token})


async def session_user(conn: AsyncConnection, token_hash: str, now: datetime) -> dict[str, Any] | None:
    row = (await conn.execute(text(
        "SELECT s.csrf_token, u.username, u.display_name, u.role, u.locale FROM sessions s"
        " JOIN users u USING (username) WHERE s.token_hash = :t AND s.expires_at > :n AND u.active"),
        {"t": token_hash, "n": now})).mappings().first()
    return dict(row) if row else None


async def delete_session(conn: AsyncConnection, token_hash: str) -> str | None:
    """The ID token the session kept (OIDC sign-ins), else None."""
    return (await conn.execute(text("DELETE FROM sessions WHERE token_hash = :t RETURNING id_token"),
                               {"t": token_hash})).scalar()


async def delete_expired_sessions(conn: AsyncConnection, now: datetime) -> None:
    await conn.execute(text("DELETE FROM sessions WHERE expires_at <= :n"), {"n": now})


# ---------------------------------------------------------------- user administration (admin)

async def list_users(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT username, display_name, role, locale, active, created_at FROM users"
                                   " ORDER BY active DESC, username"))
    return [dict(r) for r in rows.mappings()]


async def insert_user(conn: AsyncConnection, *, username: str, display_name: str, role: str, locale: str,
                      password_hash: str) -> bool:
    """A new user; False when the name is taken (nothing changed)."""
    return await insert_user_if_missing(conn, username=username, display_name=display_name, role=role,
                                        locale=locale, password_hash=password_hash)


async def set_profile(conn: AsyncConnection, username: str, *, display_name: str, role: str, locale: str) -> None:
    await conn.execute(text("UPDATE users SET display_name = :d, role = :r, locale = :l WHERE username = :u"),
                       {"d": display_name, "r": role, "l": locale, "u": username})


async def get_user_for_update(conn: AsyncConnection, username: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM users WHERE username = :u FOR UPDATE"),
                              {"u": username})).mappings().first()
    return dict(row) if row else None


async def set_active(conn: AsyncConnection, username: str, active: bool) -> bool:
    result = await conn.execute(text("UPDATE users SET active = :a WHERE username = :u AND active <> :a"),
                                {"a": active, "u": username})
    return result.rowcount == 1


async def delete_sessions_of(conn: AsyncConnection, username: str) -> None:
    await conn.execute(text("DELETE FROM sessions WHERE username = :u"), {"u": username})


async def record_change(conn: AsyncConnection, *, actor: str, username: str, change: str,
                        detail: str | None = None) -> None:
    await conn.execute(text("INSERT INTO user_changes (actor, username, change, detail) VALUES (:a, :u, :c, :d)"),
                       {"a": actor, "u": username, "c": change, "d": detail})


async def recent_changes(conn: AsyncConnection, limit: int = 50) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT at, actor, username, change, detail FROM user_changes"
                                   " ORDER BY at DESC, change_id DESC LIMIT :n"), {"n": limit})
    return [dict(r) for r in rows.mappings()]


# ---------------------------------------------------------------- OIDC sign-in

async def insert_oidc_login(conn: AsyncConnection, *, state_hash: str, nonce: str, code_verifier: str,
                            next_path: str | None, expires_at: datetime) -> None:
    await conn.execute(text(
        "INSERT INTO oidc_logins (state_hash, nonce, code_verifier, next_path, expires_at)"
        " VALUES (:s, :n, :v, :p, :e)"),
        {"s": state_hash, "n": nonce, "v": code_verifier, "p": next_path, "e": expires_at})


async def take_oidc_login(conn: AsyncConnection, state_hash: str, now: datetime) -> dict[str, Any] | None:
    """The pending sign-in of this state, removed (a state serves once); None when unknown or expired."""
    row = (await conn.execute(text(
        "DELETE FROM oidc_logins WHERE state_hash = :s RETURNING nonce, code_verifier, next_path, expires_at"),
        {"s": state_hash})).mappings().first()
    return dict(row) if row and row["expires_at"] > now else None


async def delete_expired_oidc_logins(conn: AsyncConnection, now: datetime) -> None:
    await conn.execute(text("DELETE FROM oidc_logins WHERE expires_at <= :n"), {"n": now})


async def link_oidc_user(conn: AsyncConnection, username: str, *, subject: str, display_name: str, role: str,
                         locale: str) -> None:
    """The provider's word on the person at each sign-in: subject, name, role and language."""
    await conn.execute(text(
        "UPDATE users SET oidc_subject = :s, display_name = :d, role = :r, locale = :l WHERE username = :u"),
        {"s": subject, "d": display_name, "r": role, "l": locale, "u": username})
