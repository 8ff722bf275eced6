"""Reporting's statement of account, fetched over its HTTP API (the services share nothing but
APIs and events): the PDF a statement delivery sends or hands to the connector that picks it up."""
from __future__ import annotations

from datetime import date

import httpx


class StatementUnavailable(Exception):
    """Reporting did not answer with the statement (down, or not yet aware of the customer)."""


class StatementSource:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.transport = transport  # tests route to an in-process reporting app

    async def pdf(self, customer_id: str, as_of: date, currency: str, language: str) -> bytes:
        try:
            async with httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout,
                                         transport=self.transport) as client:
                r = await client.get(f"/v1/reports/statements/{customer_id}", params={
                    "as_of": as_of.isoformat(), "currency": currency, "language": language, "format": "pdf"})
        except httpx.HTTPError as exc:
            raise StatementUnavailable(f"reporting unreachable: {type(exc).__name__}: {exc}") from exc
        if r.status_code != 200 or r.headers.get("content-type") != "application/pdf":
            raise StatementUnavailable(f"reporting answered {r.status_code}: {r.text[:200]}")
        return r.content
