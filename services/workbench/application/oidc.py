"""Signing in at an OpenID provider instead of the local users: the authorization code flow with
PKCE (S256), state and nonce. The provider's endpoints come from its discovery document
(<issuer>/.well-known/openid-configuration); the ID token is verified with joserfc: signature
by the provider's JWKS (asymmetric algorithms only), iss, aud (and azp), exp, iat and the nonce
this sign-in sent. The person's role comes from a configured claim; no recognised role, no
session. A signed-in person is a workbench user row like a local one (linked to the provider's
subject), so the services get the person as the actor exactly as for local users.

The sign-in's state, nonce and code verifier wait server-side (table oidc_logins, ten minutes,
used once); the browser holds the state in a cookie, so a callback only completes in the browser
that started it.

Signing out (RP-initiated logout): the session keeps the ID token server-side (sessions.id_token,
never in a cookie); when the provider's discovery document has an end_session_endpoint, the
browser goes there with it as id_token_hint, and the provider sends it back to /login."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncEngine

from services.workbench.adapters import users
from services.workbench.application.auth import open_session
from services.workbench.domain.roles import ROLES
from services.workbench.domain.oidc import (claimed_values, display_name_from_claims, locale_from_claims,
                                            role_from_claims, username_from_claims)
from services.workbench.settings import WorkbenchSettings

LOGIN_MINUTES = 10
METADATA_SECONDS = 3600
KEY_REFRESH_SECONDS = 60
NO_PASSWORD = "!oidc"  # not an argon2 hash: a local password can never match


class OidcError(Exception):
    """The sign-in cannot complete; `reason` is for the person (no token, no secret)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class NoRole(OidcError):
    """The provider vouched for the person but none of their groups or roles is a workbench role."""

    def __init__(self, username: str, values: list[str]) -> None:
        super().__init__(f"no workbench role for {username}", 403)
        self.username, self.values = username, values


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    end_session_endpoint: str | None = None  # RP-Initiated Logout 1.0; absent: sign out here only


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def check_settings(settings: WorkbenchSettings) -> None:
    missing = [name for name in ("oidc_issuer", "oidc_client_id", "oidc_redirect_base_url")
               if not getattr(settings, name)]
    if missing:
        raise ValueError("OIDC needs " + ", ".join(f"LEDGERLINE_WORKBENCH_{m.upper()}" for m in missing))
    if set(settings.oidc_role_mapping.values()) - set(ROLES):
        raise ValueError(f"LEDGERLINE_WORKBENCH_OIDC_ROLE_MAPPING: the roles are {', '.join(ROLES)}")


class OidcClient:
    """The provider as the workbench sees it: discovery and keys cached (an hour; the keys fetched
    again at once when a token names a key not seen yet, as providers rotate them)."""

    def __init__(self, settings: WorkbenchSettings, http: httpx.AsyncClient | None = None) -> None:
        check_settings(settings)
        self.settings = settings
        self.issuer = (settings.oidc_issuer or "").rstrip("/")
        self.client_id = settings.oidc_client_id or ""
        self.client_secret = settings.resolved_oidc_client_secret()
        self.redirect_uri = settings.oidc_redirect_uri()
        self.post_logout_redirect_uri = settings.oidc_post_logout_redirect_uri()
        self.http = http or httpx.AsyncClient(timeout=settings.oidc_timeout_seconds)
        self._provider: tuple[float, Provider] | None = None
        self._keys: tuple[float, KeySet] | None = None

    async def close(self) -> None:
        await self.http.aclose()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self.http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the sign-in provider did not answer ({type(exc).__name__})", 502) from exc

    async def provider(self) -> Provider:
        if self._provider and time.monotonic() - self._provider[0] < METADATA_SECONDS:
            return self._provider[1]
        meta = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        # OpenID Connect Discovery 1.0 §4.3: the document's issuer is exactly the one configured.
        if str(meta.get("issuer", "")).rstrip("/") != self.issuer:
            raise OidcError("the sign-in provider's discovery document names another issuer", 502)
        algorithms = tuple(a for a in meta.get("id_token_signing_alg_values_supported") or ["RS256"]
                           if a != "none" and not a.startswith("HS"))
        try:
            provider = Provider(issuer=meta["issuer"], authorization_endpoint=meta["authorization_endpoint"],
                                token_endpoint=meta["token_endpoint"], jwks_uri=meta["jwks_uri"],
                                algorithms=algorithms or ("RS256",),
                                end_session_endpoint=meta.get("end_session_endpoint") or None)
        except KeyError as exc:
            raise OidcError(f"the sign-in provider's discovery document lacks {exc.args[0]}", 502) from exc
        self._provider = (time.monotonic(), provider)
        return provider

    async def keys(self, refresh: bool = False) -> KeySet:
        if not refresh and self._keys and time.monotonic() - self._keys[0] < METADATA_SECONDS:
            return self._keys[1]
        provider = await self.provider()
        document = await self._get_json(provider.jwks_uri)
        # Only the signing keys: a JWKS may also publish encryption keys.
        document = {"keys": [k for k in document.get("keys", []) if k.get("use", "sig") == "sig"]}
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcError("the sign-in provider's keys could not be read", 502) from exc
        self._keys = (time.monotonic(), keys)
        return keys

    async def authorization_url(self, state: str, nonce: str, verifier: str) -> str:
        provider = await self.provider()
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                 "scope": self.settings.oidc_scopes, "state": state, "nonce": nonce,
                 "code_challenge": code_challenge(verifier), "code_challenge_method": "S256"}
        separator = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{separator}{urlencode(query)}"

    async def end_session_url(self, id_token: str) -> str | None:
        """Where to send the browser so the provider ends its session too (OpenID Connect
        RP-Initiated Logout 1.0), back to the workbench's login page afterwards; None when the
        provider publishes no end_session_endpoint (or cannot be reached): signing out then ends
        the workbench's session only."""
        try:
            provider = await self.provider()
        except OidcError:
            return None
        if not provider.end_session_endpoint:
            return None
        query = {"id_token_hint": id_token, "client_id": self.client_id,
                 "post_logout_redirect_uri": self.post_logout_redirect_uri}
        separator = "&" if "?" in provider.end_session_endpoint else "?"
        return f"{provider.end_session_endpoint}{separator}{urlencode(query)}"

    async def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for the code (client_secret_basic for a confidential client)."""
        provider = await self.provider()
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": verifier}
        auth = None
        if self.client_secret:
            auth = httpx.BasicAuth(self.client_id, self.client_secret)
        else:
            data["client_id"] = self.client_id
        try:
            response = await self.http.post(provider.token_endpoint, data=data, auth=auth,
                                            headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcError(f"the sign-in provider did not answer ({type(exc).__name__})", 502) from exc
        if response.status_code != 200:
            try:
                error = response.json().get("error", "")
            except ValueError:
                error = ""
            raise OidcError(f"the sign-in provider refused the code ({error or response.status_code})", 400)
        body = response.json()
        if not isinstance(body.get("id_token"), str):
            raise OidcError("the sign-in provider sent no ID token", 502)
        return body

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        provider = await self.provider()
        try:
            try:
                token = jwt.decode(id_token, await self.keys(), algorithms=list(provider.algorithms))
            except (JoseError, ValueError):
                # Perhaps a key the cached set does not have yet (providers rotate them): fetch the
                # keys again, at most once a minute, and try once more.
                if self._keys and time.monotonic() - self._keys[0] < KEY_REFRESH_SECONDS:
                    raise
                token = jwt.decode(id_token, await self.keys(refresh=True), algorithms=list(provider.algorithms))
            registry = jwt.JWTClaimsRegistry(
                leeway=60, iss={"essential": True, "value": provider.issuer},
                aud={"essential": True, "value": self.client_id}, sub={"essential": True},
                exp={"essential": True}, iat={"essential": True}, nonce={"essential": True, "value": nonce})
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token was not valid ({type(exc).__name__})", 400) from exc
        claims = dict(token.claims)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token was issued to another party (azp)", 400)
        return claims


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def begin(engine: AsyncEngine, client: OidcClient, next_path: str | None) -> tuple[str, str]:
    """Where to send the browser, and the state it must bring back (kept in its cookie)."""
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    url = await client.authorization_url(state, nonce, verifier)
    async with engine.begin() as conn:
        await users.insert_oidc_login(conn, state_hash=state_hash(state), nonce=nonce, code_verifier=verifier,
                                      next_path=next_path, expires_at=_now() + timedelta(minutes=LOGIN_MINUTES))
        await users.delete_expired_oidc_logins(conn, _now())
    return url, state


async def complete(engine: AsyncEngine, client: OidcClient, state: str, code: str,
                   session_hours: float) -> tuple[str, dict[str, Any], str | None]:
    """The callback: the pending sign-in (once), the code exchanged, the ID token verified, the
    person's user row made or updated from the claims, and a new session: (token, user, next)."""
    async with engine.begin() as conn:
        pending = await users.take_oidc_login(conn, state_hash(state), _now())
    if pending is None:
        raise OidcError("this sign-in expired or was already used: sign in again", 400)
    tokens = await client.exchange(code, pending["code_verifier"])
    claims = await client.verify_id_token(tokens["id_token"], pending["nonce"])
    settings = client.settings
    username = username_from_claims(claims, settings.oidc_username_claim)
    if username is None:
        raise OidcError(f"the provider's {settings.oidc_username_claim} is not a workbench user name "
                        "(2 to 64 lower-case letters, digits, dots, dashes or underscores)", 403)
    role = role_from_claims(claims, settings.oidc_role_claim, settings.oidc_role_mapping)
    if role is None:
        raise NoRole(username, claimed_values(claims, settings.oidc_role_claim))
    subject = f"{claims['iss']} {claims['sub']}"
    locale = locale_from_claims(claims)
    display_name = display_name_from_claims(claims, username)
    async with engine.begin() as conn:
        user = await users.get_user_for_update(conn, username)
        if user is not None and user["oidc_subject"] not in (None, subject):
            raise OidcError(f"the name {username} belongs to another person at the provider", 403)
        if user is not None and not user["active"]:
            raise OidcError(f"{username} is deactivated in the workbench: ask an administrator", 403)
        if user is None:
            await users.insert_user(conn, username=username, display_name=display_name, role=role,
                                    locale=locale or "en", password_hash=NO_PASSWORD)
            await users.record_change(conn, actor="oidc", username=username, change="created", detail=role)
        elif user["role"] != role:
            await users.record_change(conn, actor="oidc", username=username, change="role_changed",
                                      detail=f"{user['role']} → {role}")
        await users.link_oidc_user(conn, username, subject=subject, display_name=display_name, role=role,
                                   locale=locale or (user["locale"] if user else "en"))
        token = await open_session(conn, username, session_hours, id_token=tokens["id_token"])
        user = await users.get_user(conn, username)
    return token, user, pending["next_path"]
