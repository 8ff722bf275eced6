"""Signing in and out, and the language a person works in."""
from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.api import deps
from services.workbench.application import auth
from services.workbench.domain.roles import home_path

router = APIRouter()


def safe_next(value: str | None) -> str | None:
    """Only a local path (no scheme, no //host): never an open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


@router.get("/")
async def index(request: Request) -> Response:
    user = getattr(request.state, "user", None)
    return RedirectResponse(home_path(user.role) if user else "/login", status_code=303)


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next=safe_next(next) or "", error=None)


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    settings = request.app.state.settings
    response.set_cookie(deps.SESSION_COOKIE, token, httponly=True, samesite="lax", path="/",
                        secure=settings.secure_cookies, max_age=int(settings.session_hours * 3600))


LOGIN_CSRF_COOKIE = "ll_login_csrf"


def _login_page(request: Request, status_code: int = 200, **context) -> Response:
    settings = request.app.state.settings
    if settings.oidc_enabled:  # no password form: a link to the provider
        return deps.render(request, "login.html", status_code=status_code, oidc=True,
                           provider=settings.oidc_provider_name, **context)
    token = secrets.token_urlsafe(24)
    response = deps.render(request, "login.html", status_code=status_code, login_csrf=token, **context)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=request.app.state.settings.secure_cookies)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    # Login CSRF: the form carries a token that must match a cookie set with the page
    # (double submit; there is no session yet to hold one).
    if request.app.state.settings.oidc_enabled:
        return deps.render(request, "error.html", status_code=403, message="Local sign-in is off",
                           detail="this workbench signs people in at its OpenID provider", back="/login",
                           back_label="Sign in")
    form = await request.form()
    sent, expected = str(form.get(deps.CSRF_FIELD) or ""), request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not expected or not hmac.compare_digest(sent, expected):
        raise deps.CsrfFailed()
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    next_path = safe_next(str(form.get("next") or ""))
    result = await auth.login(request.app.state.engine, username, password,
                              request.app.state.settings.session_hours) if username and password else None
    if result is None:
        return _login_page(request, status_code=401, next=next_path or "",
                           error="Unknown user or wrong password", username=username)
    token, user = result
    response = RedirectResponse(next_path or home_path(user["role"]), status_code=303)
    set_session_cookie(request, response, token)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """The workbench's session ends; a person who signed in at the OpenID provider is then sent
    to the provider's end_session_endpoint (when it has one) to end that session too, and comes
    back to /login."""
    await deps.check_csrf(request)
    id_token = await auth.logout(request.app.state.engine, request.cookies.get(deps.SESSION_COOKIE))
    client = getattr(request.app.state, "oidc", None)
    target = (await client.end_session_url(id_token) if client is not None and id_token else None) or "/login"
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(deps.SESSION_COOKIE, path="/")
    return response


@router.post("/language")
async def language(request: Request) -> Response:
    form = await deps.check_csrf(request)
    user = deps.current_user(request)
    lang = str(form.get("lang") or "en")
    if lang in ("en", "fr"):
        await auth.set_locale(request.app.state.engine, user.username, lang)
    back = safe_next(request.headers.get("HX-Current-URL", "").split(request.url.netloc, 1)[-1]) \
        or safe_next(str(form.get("back") or "")) or "/"
    return RedirectResponse(back, status_code=303)
