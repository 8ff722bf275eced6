"""Input that no handler should ever see: a NUL character (U+0000) in a string. PostgreSQL's
text and jsonb refuse it, so without this check it reaches the database and fails there. One
check for every route, before routing: the JSON body, the query, the path and the headers."""
from __future__ import annotations

import json
from typing import Any, Iterable

NUL = "\x00"


def nul_in_json(value: Any, path: tuple[str, ...] = ()) -> str | None:
    """The dotted field name of the first string (or key) holding a NUL, or None."""
    if isinstance(value, str):
        return ".".join(path) or "body" if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return ".".join(path + (key.replace(NUL, "\\u0000"),))
            found = nul_in_json(item, path + (key,))
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_in_json(item, path + (str(index),))
            if found:
                return found
    return None


def nul_in_body(body: bytes) -> str | None:
    """A JSON body's field holding a NUL. Only a body with the escape is parsed (a raw NUL byte
    makes the JSON itself invalid, which request validation reports)."""
    if b"\\u0000" not in body:
        return None
    try:
        return nul_in_json(json.loads(body))
    except ValueError:
        return None


def nul_in_pairs(pairs: Iterable[tuple[str, str]]) -> str | None:
    for name, value in pairs:
        if NUL in name or NUL in value:
            return name.replace(NUL, "\\u0000")
    return None
