import json
import pathlib
from typing import ClassVar

import pytest
from pydantic import ValidationError

from shared.contracts import ContractRegistry, EventContract, PaymentApplied, registry
from shared.contracts.__main__ import schema_documents

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_money_in_events_is_quantised_and_serialised_as_strings():
    e = PaymentApplied(payment_id="p", invoice_id="i", customer_id="c", amount="10.5", currency="usd",
                       value_date="2024-01-31", application_id="a", rule="remittance", confidence="1")
    payload = e.to_payload()
    assert payload["amount"] == "10.50" and payload["currency"] == "USD"
    with pytest.raises(ValidationError):
        PaymentApplied(payment_id="p", invoice_id="i", customer_id="c", amount="10.505", currency="USD",
                       value_date="2024-01-31", application_id="a", rule="remittance", confidence="1")
    with pytest.raises(ValidationError):
        PaymentApplied(payment_id="p", invoice_id="i", customer_id="c", amount=10.5, currency="USD",
                       value_date="2024-01-31", application_id="a", rule="remittance", confidence="1")


def test_registry_round_trip_for_every_contract():
    for cls in registry.all():
        assert cls.schema_version >= 1
        assert cls.context in {"invoicing", "cash_application", "collections", "disputes"}
    e = PaymentApplied(payment_id="p", invoice_id="i", customer_id="c", amount="1.00", currency="USD",
                       value_date="2024-01-31", application_id="a", rule="remittance", confidence="1")
    assert registry.parse("PaymentApplied", 2, e.to_payload()) == e


def test_payment_applied_v1_is_upcast_with_the_remittance_rule():
    v1 = {"payment_id": "p", "invoice_id": "i", "customer_id": "c", "amount": "1.00", "currency": "USD",
          "value_date": "2024-01-31"}
    e = registry.parse("PaymentApplied", 1, v1)
    assert (e.application_id, e.rule, e.confidence) == ("p:i", "remittance", 1)
    with pytest.raises(ValidationError):
        PaymentApplied(**{**v1, "application_id": "a", "rule": "x", "confidence": "1.5"})


def test_old_versions_are_upcast_on_read():
    local = ContractRegistry()

    class NoteAdded(EventContract):
        event_type: ClassVar[str] = "NoteAdded"
        schema_version: ClassVar[int] = 3
        context: ClassVar[str] = "test"
        text: str
        author: str

    local.register(NoteAdded)

    @local.upcaster("NoteAdded", 1)
    def v1_to_v2(data):
        return {"text": data["body"]}

    @local.upcaster("NoteAdded", 2)
    def v2_to_v3(data):
        return {**data, "author": "unknown"}

    assert local.parse("NoteAdded", 1, {"body": "hi"}) == NoteAdded(text="hi", author="unknown")
    assert local.parse("NoteAdded", 3, {"text": "x", "author": "a"}).author == "a"
    with pytest.raises(ValueError):
        local.parse("NoteAdded", 4, {})


def test_published_json_schemas_match_the_models():
    """docs/events/schemas is the published language; it must be regenerated when a contract
    changes (python -m shared.contracts export docs/events/schemas)."""
    for name, schema in schema_documents().items():
        path = ROOT / "docs" / "events" / "schemas" / name
        assert path.exists(), f"{name} not exported"
        assert json.loads(path.read_text()) == json.loads(json.dumps(schema)), f"{name} is stale"


def test_readers_ignore_fields_they_do_not_know_and_writers_still_refuse_them():
    """Tolerant reader (issue 13, item 5): a producer that added a field does not break its
    consumers. Failed before: parse validated with extra="forbid"."""
    payload = {"payment_id": "p", "invoice_id": "i", "customer_id": "c", "amount": "1.00", "currency": "USD",
               "value_date": "2024-01-31", "application_id": "a", "rule": "remittance", "confidence": "1"}
    known = registry.parse("PaymentApplied", PaymentApplied.schema_version, payload)
    newer = registry.parse("PaymentApplied", PaymentApplied.schema_version, {**payload, "added_later": "x"})
    assert newer == known
    with pytest.raises(ValidationError):
        PaymentApplied(**{**payload, "added_later": "x"})


def test_a_newer_schema_version_is_refused_as_such():
    from shared.contracts import NewerSchemaVersion

    e = PaymentApplied(payment_id="p", invoice_id="i", customer_id="c", amount="1.00", currency="USD",
                       value_date="2024-01-31", application_id="a", rule="remittance", confidence="1")
    with pytest.raises(NewerSchemaVersion):
        registry.parse("PaymentApplied", PaymentApplied.schema_version + 1, e.to_payload())
