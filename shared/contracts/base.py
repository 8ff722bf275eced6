"""The published language: versioned event contracts, a registry and upcasting.

Each event class declares its `event_type`, `schema_version` and the context that publishes it.
Old payload versions are upcast on read by registered functions, never rewritten in a store.

Strict writers, tolerant readers: a producer building a contract gets an error for a field the
contract does not have (extra="forbid"), but ContractRegistry.parse, what consumers read with,
drops fields it does not know, so a producer may add an optional field (a minor change,
same schema version) before its consumers are upgraded. A payload of a newer schema version
than the code knows raises NewerSchemaVersion (the consumer runner pauses the partition at such
an event until newer code is deployed, see shared/consumer.py); a type the code has no contract
for raises UnknownEvent (the runner records it in unknown_events)."""
from __future__ import annotations

from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from shared.money import quantize


# Each contract's field names and aliases, computed once (ContractRegistry.parse runs per event).
_KNOWN_FIELDS: dict[type, frozenset[str]] = {}


def _known_fields(cls: type["EventContract"]) -> frozenset[str]:
    known = _KNOWN_FIELDS.get(cls)
    if known is None:
        known = _KNOWN_FIELDS[cls] = frozenset(cls.model_fields) | {
            f.alias for f in cls.model_fields.values() if f.alias}
    return known


class EventContract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    context: ClassVar[str]

    # Money fields are quantised to the event's currency (every money event has one).
    money_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _quantise_money(self) -> "EventContract":
        currency = getattr(self, "currency", None)
        if currency:
            for name in self.money_fields:
                value = getattr(self, name)
                if value is None:
                    continue
                exact = quantize(value, currency)
                if exact != value:
                    raise ValueError(f"{name} {value} has more decimals than {currency} allows")
                # "10.5" becomes "10.50": amounts travel at the currency's minor unit.
                object.__setattr__(self, name, exact)
        return self

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class ContractRegistry:
    def __init__(self) -> None:
        self._latest: dict[str, type[EventContract]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[EventContract]) -> type[EventContract]:
        existing = self._latest.get(cls.event_type)
        if existing is not None and existing is not cls:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._latest[cls.event_type] = cls
        return cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning a payload of from_version into from_version + 1."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return decorate

    def contract(self, event_type: str) -> type[EventContract] | None:
        return self._latest.get(event_type)

    def all(self) -> list[type[EventContract]]:
        return sorted(self._latest.values(), key=lambda c: (c.context, c.event_type))

    def parse(self, event_type: str, schema_version: int, payload: dict[str, Any]) -> EventContract:
        cls = self._latest.get(event_type)
        if cls is None:
            raise UnknownEvent(event_type)
        if schema_version > cls.schema_version:
            raise NewerSchemaVersion(
                f"{event_type} v{schema_version} is newer than this code knows (v{cls.schema_version})"
            )
        data = dict(payload)
        version = schema_version
        while version < cls.schema_version:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise ValueError(f"no upcaster for {event_type} v{version}")
            data = step(data)
            version += 1
        # A tolerant reader: fields this version does not know are dropped (in Python here, not
        # in a model validator: a validator callback per event costs more than this check).
        known = _known_fields(cls)
        if not known.issuperset(data):
            data = {k: v for k, v in data.items() if k in known}
        return cls.model_validate(data)


class UnknownEvent(LookupError):
    """An event type this code has no contract for (the runner records it; handlers skip it)."""


class NewerSchemaVersion(ValueError):
    """A payload version newer than this code's contract: wait for newer code, never guess."""


registry = ContractRegistry()


def event(cls: type[EventContract]) -> type[EventContract]:
    return registry.register(cls)


DEFAULT_TOPIC_PREFIX = "ledgerline"


def topic_for(context: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    return f"{prefix}.{context}.events"


def with_topic_prefix(topic: str, prefix: str) -> str:
    """Rename a default-prefixed topic (ledgerline.<context>.events) under another prefix."""
    head = DEFAULT_TOPIC_PREFIX + "."
    return prefix + "." + topic[len(head):] if prefix != DEFAULT_TOPIC_PREFIX and topic.startswith(head) else topic
