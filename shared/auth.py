"""API-key authentication with scopes, for every route but health, metrics and API docs.

Keys are configured per service as JSON (LEDGERLINE_<CONTEXT>_API_KEYS), holding only SHA-256
hashes of the keys, never the keys themselves:

    {"sha256:<hex of sha256(key)>": {"actor": "erp-sap", "scopes": ["invoicing:write", "invoicing:read"]}}

A client sends `Authorization: Bearer <key>`. Reads (GET, HEAD) need `<context>:read`, anything
else `<context>:write`; `<context>:*` or `*` grant both. The key's actor is recorded in the
metadata of every event the request appends, so the audit trail says who did what.

Closed by default: a service with no keys configured refuses to start (OpenModeNotRequested)
unless open mode is asked for explicitly (<PREFIX>ALLOW_OPEN=true or LEDGERLINE_OPEN_MODE=true);
an open service logs a loud warning and takes the actor from `X-Actor` (local development).

A key granted the scope `delegate` (and only such a key: `*` does not imply it) belongs to a
front end that acts for people, such as the workbench: its requests name the person in `X-Actor`,
and that person is the actor recorded in events and checked by acting_as; without the header the
key's own actor acts. Any other key's X-Actor is ignored."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from shared.problem_http import problem_response
from shared.problems import Problem

log = logging.getLogger(__name__)

DELEGATE_SCOPE = "delegate"
ACTOR_HEADER = "X-Actor"
MAX_ACTOR_LENGTH = 64

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/v1/openapi.json"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    actor: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        context, _, action = scope.partition(":")
        if scope == DELEGATE_SCOPE:  # acting for people is granted by name only
            return scope in self.scopes
        if action == "admin":  # never implied by <context>:*, which means read and write
            return bool({scope, "*"} & self.scopes)
        return bool({scope, f"{context}:*", "*"} & self.scopes)


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(raw: str | None) -> dict[str, Principal]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        keys = {
            digest: Principal(actor=str(entry["actor"]), scopes=frozenset(entry["scopes"]))
            for digest, entry in data.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError("api_keys must be JSON {\"sha256:<hex>\": {\"actor\": ..., \"scopes\": [...]}}") from exc
    bad = [d for d in keys if not d.startswith("sha256:") or len(d) != 71]
    if bad:
        raise ValueError(f"api_keys entries must be keyed by sha256:<64 hex digits>, not {bad[0][:20]}...")
    return keys


def required_scope(context: str, method: str) -> str:
    return f"{context}:{'read' if method.upper() in READ_METHODS else 'write'}"


def _authenticate(keys: dict[str, Principal], header: str | None) -> Principal | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    digest = key_hash(header[7:].strip())
    for known, principal in keys.items():
        if hmac.compare_digest(known, digest):
            return principal
    return None


def document_security(app: FastAPI, context: str) -> None:
    """Publish the scheme in the OpenAPI document: bearer keys, and each operation's scope."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http", "scheme": "bearer",
            "description": "Ledgerline API key; scopes <context>:read for reads, <context>:write for the rest"}
        for path, operations in schema.get("paths", {}).items():
            if path in OPEN_PATHS:
                continue
            for method, operation in operations.items():
                operation["security"] = [{"apiKey": []}]
                operation["x-required-scopes"] = [required_scope(context, method)]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class OpenModeNotRequested(RuntimeError):
    """No API keys are configured and open mode was not asked for: the service must not start."""


def install_auth(app: FastAPI, context: str, raw_keys: str | None, *, allow_open: bool = False) -> None:
    """Gate every route but OPEN_PATHS by API key and scope. With no keys, refuse (raise
    OpenModeNotRequested) unless allow_open, and then warn loudly that anyone may call the API."""
    document_security(app, context)
    keys = parse_api_keys(raw_keys)
    prefix = f"LEDGERLINE_{context.upper()}_"
    if not keys and not allow_open:
        raise OpenModeNotRequested(
            f"{context}: no API keys configured ({prefix}API_KEYS), refusing to start an open API. "
            f"Configure keys, or ask for open mode explicitly for local development with "
            f"{prefix}ALLOW_OPEN=true or LEDGERLINE_OPEN_MODE=true.")
    if not keys:
        log.warning("%s: OPEN MODE — no API keys, every route accepts anonymous requests and trusts X-Actor. "
                    "Local development only; never expose this service (set %sAPI_KEYS).", context, prefix)

    async def authenticate(request: Request) -> Response | None:
        """None lets the request through (request.state.actor and .principal set); otherwise the
        refusal to answer."""
        if request.url.path in OPEN_PATHS:
            return None
        if not keys:
            request.state.actor = request.headers.get("X-Actor", "anonymous")
            request.state.principal = None
            return None
        principal = _authenticate(keys, request.headers.get("Authorization"))
        if principal is None:
            response: JSONResponse = problem_response(Problem(
                "send a valid API key as 'Authorization: Bearer <key>'", field="Authorization", status=401,
                type_name="unauthorized", title="Authentication required"), request)
            response.headers["WWW-Authenticate"] = 'Bearer realm="ledgerline"'
            return response
        scope = required_scope(context, request.method)
        if not principal.may(scope):
            return problem_response(Problem(
                f"this API key lacks the scope {scope}", field="Authorization", status=403,
                type_name="forbidden", title="Not allowed", extra={"required_scope": scope}), request)
        delegated = request.headers.get(ACTOR_HEADER)
        if delegated is not None and principal.may(DELEGATE_SCOPE):
            delegated = delegated.strip()
            if not delegated or len(delegated) > MAX_ACTOR_LENGTH or not delegated.isprintable():
                return problem_response(Problem(
                    f"{ACTOR_HEADER} must name a person in 1 to {MAX_ACTOR_LENGTH} printable characters",
                    field=ACTOR_HEADER, status=400, type_name="bad-request", title="Bad request"), request)
            request.state.actor = delegated
        else:
            request.state.actor = principal.actor
        request.state.principal = principal
        return None

    app.add_middleware(_Gate, check=authenticate)


class _Gate:
    """Pure ASGI middleware running `check` before the routes. Not @app.middleware("http"): its
    BaseHTTPMiddleware runs every request through an extra task group and memory streams, a cost
    the write path's profile showed (docs/benchmarks.md)."""

    def __init__(self, app, check) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            refused = await self.check(Request(scope, receive))
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _principal(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def require_scope(request: Request, scope: str) -> None:
    """For a route that needs more than its method's scope (e.g. `collections:admin` to set who
    may approve). A service running in open mode lets everything through."""
    principal = _principal(request)
    if principal is not None and not principal.may(scope):
        raise Problem(f"this API key lacks the scope {scope}", field="Authorization", status=403,
                      type_name="forbidden", title="Not allowed", extra={"required_scope": scope})


def acting_as(request: Request, claimed: str, field: str) -> None:
    """A body that names who acts (requested_by, approved_by, ...) must name the request's actor
    when keys are configured (the key's actor, or the person a `delegate` key acts for), so nobody
    approves in someone else's name. Open-mode services trust it."""
    principal = _principal(request)
    actor = getattr(request.state, "actor", None) or (principal.actor if principal else None)
    if principal is not None and claimed != actor:
        raise Problem(f"{field} must be the API key's actor ({actor}), not {claimed}", field=field,
                      status=403, type_name="forbidden", title="Not allowed")
