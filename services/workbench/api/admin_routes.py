"""The admin's user administration page: users with their roles, create one, change one's role,
language or display name, reset a password, deactivate or reactivate (admin only: every other
role gets no link and a 403)."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.api import deps
from services.workbench.application import user_admin
from services.workbench.domain.roles import ROLES, Permission as P

router = APIRouter()


@router.get("/admin/users")
async def users_page(request: Request, saved: str | None = None, error: str | None = None) -> Response:
    deps.require(request, P.MANAGE_USERS)
    people, changes = await user_admin.overview(request.app.state.engine)
    return deps.render(request, "admin_users.html", people=people, changes=changes, roles=ROLES, saved=saved,
                       error=error, oidc=request.app.state.settings.oidc_enabled)


def _local_users_only(request: Request) -> None:
    """With OIDC the provider holds the people and their passwords: no local user, no reset."""
    if request.app.state.settings.oidc_enabled:
        raise user_admin.UserAdminError("username", "people sign in at the OpenID provider (OIDC is on)")


def _back(saved: str | None = None, error: user_admin.UserAdminError | None = None) -> Response:
    query = f"saved={quote(saved)}" if saved else f"error={quote(f'{error.field}: {error.reason}')}"
    return RedirectResponse(f"/admin/users?{query}", status_code=303)


@router.post("/admin/users")
async def create_user(request: Request) -> Response:
    user = deps.require(request, P.MANAGE_USERS)
    form = await deps.check_csrf(request)
    username = str(form.get("username") or "").strip().lower()
    try:
        _local_users_only(request)
        await user_admin.create(request.app.state.engine, user.username, username,
                                str(form.get("display_name") or ""), str(form.get("role") or ""),
                                str(form.get("locale") or "en"), str(form.get("password") or ""))
    except user_admin.UserAdminError as exc:
        return _back(error=exc)
    return _back(saved=f"created {username}")


@router.post("/admin/users/{username}/profile")
async def update_profile(request: Request, username: str) -> Response:
    user = deps.require(request, P.MANAGE_USERS)
    form = await deps.check_csrf(request)
    try:
        changes = await user_admin.update_profile(request.app.state.engine, user.username, username,
                                                  str(form.get("display_name") or ""), str(form.get("role") or ""),
                                                  str(form.get("locale") or ""))
    except user_admin.UserAdminError as exc:
        return _back(error=exc)
    return _back(saved=f"{', '.join(changes) or 'unchanged'} {username}")


@router.post("/admin/users/{username}/password")
async def reset_password(request: Request, username: str) -> Response:
    user = deps.require(request, P.MANAGE_USERS)
    form = await deps.check_csrf(request)
    try:
        _local_users_only(request)
        await user_admin.reset_password(request.app.state.engine, user.username, username,
                                        str(form.get("password") or ""))
    except user_admin.UserAdminError as exc:
        return _back(error=exc)
    return _back(saved=f"password reset {username}")


@router.post("/admin/users/{username}/deactivation")
async def deactivate(request: Request, username: str) -> Response:
    return await _set_active(request, username, False)


@router.post("/admin/users/{username}/activation")
async def reactivate(request: Request, username: str) -> Response:
    return await _set_active(request, username, True)


async def _set_active(request: Request, username: str, active: bool) -> Response:
    user = deps.require(request, P.MANAGE_USERS)
    await deps.check_csrf(request)
    try:
        await user_admin.set_active(request.app.state.engine, user.username, username, active)
    except user_admin.UserAdminError as exc:
        return _back(error=exc)
    return _back(saved=f"{'reactivated' if active else 'deactivated'} {username}")
