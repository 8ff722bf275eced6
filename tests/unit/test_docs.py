"""The docs stay true: every route of every service is in docs/api.md and every event in
docs/events.md."""
import importlib
import re
from pathlib import Path

import pytest

from shared.contracts import registry

ROOT = Path(__file__).resolve().parents[2]
CONTEXTS = ["invoicing", "cash_application", "collections", "disputes", "reporting"]


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_route_is_documented(context, monkeypatch):
    monkeypatch.setenv("LEDGERLINE_OPEN_MODE", "true")  # the app is only described here, never served
    api_doc = (ROOT / "docs" / "api.md").read_text()
    app = importlib.import_module(f"services.{context}.main").create_app()
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            pattern = rf"\|\s*{method.upper()}\s*\|\s*{re.escape(path)}\s*\|"
            assert re.search(pattern, api_doc), f"{method.upper()} {path} missing from docs/api.md"


def test_every_event_is_documented():
    events_doc = (ROOT / "docs" / "events.md").read_text()
    for contract in registry.all():
        # "| Name |" in a table headed "event (v1)", or "| Name (vN) |" naming the current version.
        pattern = rf"\|\s*{contract.event_type}(\s*\(v{contract.schema_version}\))?\s*\|"
        assert re.search(pattern, events_doc), contract.event_type
        if contract.schema_version > 1:
            assert f"| {contract.event_type} (v{contract.schema_version}) |" in events_doc, contract.event_type
