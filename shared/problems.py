"""RFC 9457 problem details: every error a client sees names a stable type, a human message
and, where one is to blame, the offending field."""
from __future__ import annotations

from typing import Any


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
