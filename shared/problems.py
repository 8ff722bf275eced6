"""RFC 9457 problem details: every error a client sees names a stable type, a human message
and, where one is to blame, the offending field."""
from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://ledgerline.dev/problems/"


class Problem(Exception):
    """Raise anywhere in a request to answer with problem+json; nothing is committed."""

    status = 400
    type_name = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        status: int | None = None,
        type_name: str | None = None,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if status is not None:
            self.status = status
        if type_name is not None:
            self.type_name = type_name
        if title is not None:
            self.title = title
        self.extra = extra or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.type_name,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.field:
            body["errors"] = [{"field": self.field, "reason": self.detail}]
        body.update(self.extra)
        return body


class NotFound(Problem):
    status = 404
    type_name = "not-found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    type_name = "conflict"
    title = "Conflict"


class ConcurrencyConflict(Conflict):
    type_name = "concurrency-conflict"
    title = "The resource was changed by someone else"


class Unprocessable(Problem):
    status = 422
    type_name = "business-rule-violated"
    title = "The request breaks a business rule"


class ValidationFailed(Problem):
    status = 422
    type_name = "validation-error"
    title = "The request is not valid"


class ServiceUnavailable(Problem):
    """A dependency (the database) is out of reach: nothing was done, retry after a while."""

    status = 503
    type_name = "service-unavailable"
    title = "The service cannot answer right now"
    retry_after_seconds = 5


class InternalError(Problem):
    status = 500
    type_name = "internal-error"
    title = "Internal error"


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    response = JSONResponse(
        problem.body(str(request.url.path) if request else None),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
    )
    if isinstance(problem, ServiceUnavailable):
        response.headers["Retry-After"] = str(problem.retry_after_seconds)
    return response


_NAMED_REASON = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w]+)*): (.+)$", re.S)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, rest = parts[0], parts[1:]
        if where == "header":
            return rest[0] if rest else "header"
        return ".".join(rest) if rest else where
    return ".".join(parts)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            reason = str(err.get("msg", "invalid"))
            if reason.startswith("Value error, "):
                reason = reason[len("Value error, "):]
            field = _field_name(err.get("loc", ()))
            # A whole-model validator names its field as "lines.0.unit_price: reason".
            named = _NAMED_REASON.match(reason)
            if named and field in ("body", "", "query"):
                field, reason = named.group(1), named.group(2)
            errors.append({"field": field, "reason": reason})
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) or "invalid request"
        problem = ValidationFailed(detail, extra={"errors": errors})
        return problem_response(problem, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 403: "forbidden"}
        problem = Problem(
            str(exc.detail),
            status=exc.status_code,
            type_name=names.get(exc.status_code, "http-error"),
            title=str(exc.detail),
        )
        return problem_response(problem, request)
