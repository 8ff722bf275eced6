"""What every page route needs: the signed-in user, the permission check (403), the CSRF check
on state-changing requests, the services' client and rendering in the user's language."""
from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from services.workbench.adapters.backends import BackendError, Backends
from services.workbench.domain import money
from services.workbench.domain.i18n import translate
from services.workbench.domain.roles import Permission, may
from services.workbench.domain.worklist import aging_bucket

SESSION_COOKIE = "ll_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str
    locale: str
    csrf_token: str

    def may(self, permission: Permission | str) -> bool:
        return may(self.role, Permission(permission))


class NotSignedIn(Exception):
    """No valid session: pages redirect to /login, htmx requests are told to."""


class Forbidden(Exception):
    """The user's role may not do this: 403 page."""


class CsrfFailed(Exception):
    """A state-changing request without the session's CSRF token: 403."""


def backends(request: Request) -> Backends:
    return request.app.state.backends


def current_user(request: Request) -> User:
    user = getattr(request.state, "user", None)
    if user is None:
        raise NotSignedIn()
    return user


def require(request: Request, permission: Permission) -> User:
    user = current_user(request)
    if not user.may(permission):
        raise Forbidden(permission.value)
    return user


async def check_csrf(request: Request) -> dict[str, Any]:
    """The form of a state-changing request, after checking its CSRF token (form field or the
    X-CSRF-Token header htmx sends) against the session's."""
    user = current_user(request)
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD) or ""
    if not isinstance(sent, str) or not hmac.compare_digest(sent, user.csrf_token):
        raise CsrfFailed()
    return form


def today(request: Request) -> date:
    fixed = request.app.state.settings.as_of
    return date.fromisoformat(fixed) if fixed else date.today()


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


async def post_then_back(request: Request, context: str, path: str, user: User, body: dict[str, Any],
                         form: dict[str, Any], back: str, saved: str) -> RedirectResponse:
    """A form's action: POST to a service as the person (the form's Idempotency-Key, or a new
    one), then back to the page with `saved`, or with the service's words when it refused the
    input (4xx); anything else is the service's failure and propagates."""
    try:
        await backends(request).post(context, path, user.username, body,
                                     idempotency_key=str(form.get("idempotency_key") or new_idempotency_key()))
    except BackendError as exc:
        if 400 <= exc.status < 500:
            return RedirectResponse(f"{back}?error={quote(exc.detail[:300])}", status_code=303)
        raise
    return RedirectResponse(f"{back}?saved={saved}", status_code=303)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    user: User | None = getattr(request.state, "user", None)
    lang = user.locale if user else request.cookies.get("ll_lang", "en")
    if lang not in ("en", "fr"):
        lang = "en"
    helpers = {
        "t": lambda text: translate(text, lang),
        "money": lambda value, currency=None: money.format_money(value, currency, lang),
        "day": lambda value: money.format_day(value, lang),
        "bucket": aging_bucket,
        "lang": lang,
        "user": user,
        "may": (lambda p: user is not None and user.may(p)),
        "csrf": user.csrf_token if user else "",
        "new_key": new_idempotency_key,
        "request": request,
    }
    return templates.TemplateResponse(request, name, {**helpers, **context}, status_code=status_code)
