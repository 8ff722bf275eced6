"""The workbench: the web app of the AR team (server-rendered pages, htmx), a backend-for-frontend
that holds the people's sessions and calls the five services with its own API key.

    python -m services.workbench serve          # the web app (migrates first unless told not to)
    python -m services.workbench migrate        # its database: users and sessions
    python -m services.workbench create-user NAME --role ROLE [--locale fr] [--display-name ...]
                                                # password read from stdin or LEDGERLINE_WORKBENCH_NEW_PASSWORD
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from shared.db import apply_migrations, make_engine, sql_files
from services.workbench.adapters.backends import CONTEXTS, BackendError, Backends
from services.workbench.api import (admin_routes, auth_routes, cash_routes, collector_routes, deps, dispute_routes,
                                    manager_routes, oidc_routes)
from services.workbench.application import auth, oidc
from services.workbench.application.worklists import WorklistCache
from services.workbench.settings import WorkbenchSettings

log = logging.getLogger("workbench")
STATIC = Path(__file__).resolve().parent / "static"


def migrations() -> list[tuple[str, str]]:
    return [(f"workbench/{name}", sql) for name, sql in sql_files("services.workbench.adapters", "migrations")]


def create_app(settings: WorkbenchSettings | None = None) -> FastAPI:
    settings = settings or WorkbenchSettings()
    if settings.oidc_enabled:  # misconfigured OIDC fails at start, not at someone's sign-in
        oidc.check_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, application_name="ledgerline-workbench")
        if settings.migrate_on_start:
            await apply_migrations(engine, migrations())
        if settings.seed_demo_users:
            created = await auth.seed_demo_users(engine)
            if created:
                log.warning("workbench: seeded demo users %s (password <username>-pass-2026; never in production)",
                            ", ".join(created))
        urls = {c: getattr(settings, f"{c}_url") for c in CONTEXTS}
        app.state.engine = engine
        app.state.backends = Backends.create(urls, settings.resolved_api_key(), settings.service_timeout_seconds)
        app.state.oidc = oidc.OidcClient(settings) if settings.oidc_enabled else None
        if app.state.oidc:
            log.warning("workbench: people sign in at %s (OIDC); the local password form is off", settings.oidc_issuer)
        try:
            yield
        finally:
            if app.state.oidc:
                await app.state.oidc.close()
            await app.state.backends.close()
            await engine.dispose()

    app = FastAPI(title="Ledgerline workbench", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.worklists = WorklistCache()
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.middleware("http")
    async def session_and_headers(request: Request, call_next):
        request.state.user = None
        if not request.url.path.startswith("/static/") and request.url.path not in ("/healthz", "/readyz"):
            row = await auth.session(request.app.state.engine, request.cookies.get(deps.SESSION_COOKIE))
            if row:
                request.state.user = deps.User(username=row["username"], display_name=row["display_name"],
                                               role=row["role"], locale=row["locale"], csrf_token=row["csrf_token"])
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        return response

    @app.exception_handler(deps.NotSignedIn)
    async def not_signed_in(request: Request, exc: deps.NotSignedIn) -> Response:
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        if request.method != "GET":
            return Response("sign in first", status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(deps.Forbidden)
    async def forbidden(request: Request, exc: deps.Forbidden) -> HTMLResponse:
        return deps.render(request, "error.html", status_code=403, message="You may not do this.",
                           detail=str(exc))

    @app.exception_handler(deps.CsrfFailed)
    async def csrf_failed(request: Request, exc: deps.CsrfFailed) -> HTMLResponse:
        return deps.render(request, "error.html", status_code=403, message="You may not do this.",
                           detail="missing or wrong CSRF token")

    @app.exception_handler(BackendError)
    async def backend_failed(request: Request, exc: BackendError) -> HTMLResponse:
        status = exc.status if 400 <= exc.status < 500 else 502
        return deps.render(request, "error.html", status_code=status, message="A service did not answer",
                           detail=f"{exc.context}: {exc.detail}")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1 FROM users LIMIT 1"))
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure
            return JSONResponse({"status": "not ready", "database": str(exc)[:200]}, status_code=503)
        return JSONResponse({"status": "ready"})

    for module in (auth_routes, oidc_routes, collector_routes, cash_routes, dispute_routes, manager_routes,
                   admin_routes):
        app.include_router(module.router)
    return app


async def _migrate(settings: WorkbenchSettings) -> int:
    engine = make_engine(settings.database_url, pool_size=1, application_name="ledgerline-workbench")
    try:
        applied = await apply_migrations(engine, migrations())
        print(f"workbench: {len(applied)} migration(s) applied")
        if settings.seed_demo_users:
            print("workbench: demo users seeded:", ", ".join(await auth.seed_demo_users(engine)) or "none new")
    finally:
        await engine.dispose()
    return 0


async def _create_user(settings: WorkbenchSettings, args: argparse.Namespace) -> int:
    password = os.environ.get("LEDGERLINE_WORKBENCH_NEW_PASSWORD") or sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("the password must have at least 12 characters", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url, pool_size=1, application_name="ledgerline-workbench")
    try:
        await apply_migrations(engine, migrations())
        await auth.create_user(engine, args.username, args.display_name or args.username, args.role, args.locale,
                               password)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    print(f"workbench: user {args.username} ({args.role}) saved")
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the web app")
    sub.add_parser("migrate", help="apply the workbench's migrations")
    create = sub.add_parser("create-user", help="create or update a user (password on stdin)")
    create.add_argument("username")
    create.add_argument("--role", required=True)
    create.add_argument("--locale", default="en")
    create.add_argument("--display-name", default=None)
    args = parser.parse_args(argv)
    settings = WorkbenchSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "create-user":
        return asyncio.run(_create_user(settings, args))
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                proxy_headers=True, timeout_graceful_shutdown=20)
    return 0
