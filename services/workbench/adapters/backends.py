"""The five services' REST APIs as the workbench calls them: its own API key, the person acting
in X-Actor (the services record that person as the actor of the events: shared/auth.py's
`delegate` scope), an Idempotency-Key on every creating POST."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

CONTEXTS = ("invoicing", "cash_application", "collections", "disputes", "reporting")


class BackendError(Exception):
    """A service said no (4xx, with its problem details) or did not answer (status 503)."""

    def __init__(self, context: str, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{context}: {status} {detail}")
        self.context, self.status, self.detail, self.field = context, status, detail, field


@dataclass
class Backends:
    clients: dict[str, httpx.AsyncClient]

    @classmethod
    def create(cls, urls: dict[str, str], api_key: str | None, timeout: float) -> "Backends":
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
        return cls({c: httpx.AsyncClient(base_url=urls[c], headers=headers, timeout=timeout, limits=limits)
                    for c in CONTEXTS})

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def _call(self, context: str, method: str, path: str, actor: str | None, *,
                    params: dict[str, Any] | None = None, json: Any = None, content: bytes | None = None,
                    idempotency_key: str | None = None, content_type: str | None = None) -> httpx.Response:
        headers = {}
        if actor:
            headers["X-Actor"] = actor
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if content_type:
            headers["Content-Type"] = content_type
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            response = await self.clients[context].request(method, path, params=clean, json=json, content=content,
                                                           headers=headers)
        except httpx.HTTPError as exc:
            raise BackendError(context, 503, f"{context} did not answer ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            detail, field = response.text[:300], None
            try:
                body = response.json()
                detail = body.get("detail") or body.get("title") or detail
                errors = body.get("errors") or []
                if errors:
                    field = errors[0].get("field")
                    reason = errors[0].get("reason")
                    if reason and reason not in detail:
                        detail = f"{detail}: {reason}"
            except ValueError:
                pass
            raise BackendError(context, response.status_code, detail, field)
        return response

    async def get(self, context: str, path: str, actor: str | None = None, **params: Any) -> Any:
        return (await self._call(context, "GET", path, actor, params=params)).json()

    async def get_raw(self, context: str, path: str, actor: str | None = None, **params: Any) -> httpx.Response:
        return await self._call(context, "GET", path, actor, params=params)

    async def post(self, context: str, path: str, actor: str, body: Any, idempotency_key: str | None = None,
                   **params: Any) -> Any:
        return (await self._call(context, "POST", path, actor, json=body, params=params,
                                 idempotency_key=idempotency_key)).json()

    async def post_bytes(self, context: str, path: str, actor: str, content: bytes, idempotency_key: str,
                         content_type: str = "application/octet-stream", **params: Any) -> Any:
        return (await self._call(context, "POST", path, actor, content=content, params=params,
                                 idempotency_key=idempotency_key, content_type=content_type)).json()

    async def put(self, context: str, path: str, actor: str, body: Any, **params: Any) -> Any:
        """A PUT that sets a resource's state (the same body again changes nothing)."""
        return (await self._call(context, "PUT", path, actor, json=body, params=params)).json()
