"""Problems as HTTP answers: RFC 9457 problem+json responses and the FastAPI exception handlers
that answer every Problem, request validation error and HTTP error with one. The problems
themselves (shared.problems) carry no web framework, so the application code and the processes
that only parse or match (a bank import's worker) do not import one."""
from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.problems import PROBLEM_MEDIA_TYPE, Problem, ServiceUnavailable, ValidationFailed


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
