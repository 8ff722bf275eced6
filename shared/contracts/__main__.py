"""Export every contract's JSON Schema: python -m shared.contracts export docs/events/schemas"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from shared.contracts import registry


def schema_documents() -> dict[str, dict]:
    docs = {}
    for cls in registry.all():
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"https://ledgerline.dev/events/{cls.context}/{cls.event_type}.v{cls.schema_version}.json"
        schema["x-ledgerline"] = {
            "context": cls.context,
            "event_type": cls.event_type,
            "schema_version": cls.schema_version,
            "topic": f"ledgerline.{cls.context}.events",
        }
        docs[f"{cls.context}/{cls.event_type}.v{cls.schema_version}.json"] = schema
    return docs


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "export":
        print("usage: python -m shared.contracts export DIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    for name, schema in schema_documents().items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
