"""Signing in at the OpenID provider (when LEDGERLINE_WORKBENCH_OIDC_ISSUER is set): the start,
which sends the browser to the provider, and the callback it comes back to. Refusals are pages
that say why (no workbench role, a deactivated user, an expired sign-in), never a 5xx."""
from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.api import deps
from services.workbench.api.auth_routes import safe_next, set_session_cookie
from services.workbench.application import oidc
from services.workbench.domain.roles import ROLES, home_path

router = APIRouter()
log = logging.getLogger("workbench.oidc")
STATE_COOKIE = "ll_oidc_state"


def _client(request: Request) -> oidc.OidcClient:
    client = getattr(request.app.state, "oidc", None)
    if client is None:
        raise HTTPException(status_code=404)
    return client


def _refused(request: Request, message: str, detail: str, status: int) -> Response:
    response = deps.render(request, "error.html", status_code=status, message=message, detail=detail,
                           back="/login", back_label="Sign in again")
    response.delete_cookie(STATE_COOKIE, path="/oidc")
    return response


@router.get("/login/oidc")
async def start(request: Request, next: str | None = None) -> Response:
    client = _client(request)
    try:
        url, state = await oidc.begin(request.app.state.engine, client, safe_next(next))
    except oidc.OidcError as exc:
        return _refused(request, "Sign-in is not available", exc.reason, exc.status)
    response = RedirectResponse(url, status_code=303)
    # SameSite=Lax: the provider sends the browser back with a top-level GET, which carries it.
    response.set_cookie(STATE_COOKIE, state, httponly=True, samesite="lax", path="/oidc",
                        secure=request.app.state.settings.secure_cookies, max_age=oidc.LOGIN_MINUTES * 60)
    return response


@router.get("/oidc/callback")
async def callback(request: Request, state: str = "", code: str = "", error: str = "",
                   error_description: str = "") -> Response:
    client = _client(request)
    if error:
        return _refused(request, "Sign-in was refused", f"{error}: {error_description}"[:300], 403)
    expected = request.cookies.get(STATE_COOKIE) or ""
    if not state or not code or not expected or not hmac.compare_digest(state, expected):
        return _refused(request, "Sign-in was refused", "this sign-in did not start in this browser: sign in again",
                        400)
    try:
        token, user, next_path = await oidc.complete(request.app.state.engine, client, state, code,
                                                      request.app.state.settings.session_hours)
    except oidc.NoRole as exc:
        log.warning("oidc: %s signed in at the provider with no workbench role (%s: %s)", exc.username,
                    request.app.state.settings.oidc_role_claim, exc.values)
        groups = ", ".join(exc.values) or "-"
        return _refused(request, "You have no role in the workbench",
                        f"{exc.username}: {request.app.state.settings.oidc_role_claim} = {groups}. "
                        f"Ask an administrator for one of the roles {', '.join(ROLES)}.", 403)
    except oidc.OidcError as exc:
        log.warning("oidc: sign-in refused: %s", exc.reason)
        return _refused(request, "Sign-in was refused", exc.reason, exc.status)
    response = RedirectResponse(next_path or home_path(user["role"]), status_code=303)
    set_session_cookie(request, response, token)
    response.delete_cookie(STATE_COOKIE, path="/oidc")
    return response
