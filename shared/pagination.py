"""Opaque cursor pagination: the cursor encodes the sort key of the last row returned."""
from __future__ import annotations

import base64
import json
from typing import Any

from shared.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise Problem("cursor is not one this API returned", field="cursor") from exc
    if not isinstance(values, list):
        raise Problem("cursor is not one this API returned", field="cursor")
    return values


def page(items: list[dict[str, Any]], limit: int, key_of) -> dict[str, Any]:
    """items were fetched with limit + 1 rows; returns {data, next_cursor}."""
    has_more = len(items) > limit
    data = items[:limit]
    return {"data": data, "next_cursor": encode_cursor(key_of(data[-1])) if has_more and data else None}
