"""/v1 routes of the customer master over time: effective-dated profile changes, the profile as
of a date and the history of changes."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import aggregate
from shared.contracts import BillingAddress, BillingContact
from shared.idempotency import idempotent_create, idempotency_key_header
from shared.money import Amount, MoneyError, exact_amount, money_str
from shared.problems import NotFound, ValidationFailed
from shared.service import get_runtime, request_metadata
from services.invoicing.adapters import repository as repo
from services.invoicing.api.routes import _customer_out, _if_match_version
from services.invoicing.application import handlers
from services.invoicing.domain.model import Customer
from services.invoicing.domain.terms import PaymentTerms, UnknownTerms

router = APIRouter(prefix="/v1")


class ProfileChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    effective_on: date | None = Field(default=None, description="From when the change holds; defaults to today")
    payment_terms: str | None = Field(default=None, max_length=20, description="NET30, NET45_EOM, DUE_ON_RECEIPT")
    credit_limit: Amount | None = None
    billing_contacts: list[BillingContact] | None = Field(default=None, max_length=50,
                                                          description="Replaces the list")
    billing_address: BillingAddress | None = None
    language: Literal["en", "fr"] | None = None
    delivery_preference: Literal["email_pdf", "postal", "portal_upload", "e_invoice"] | None = None
    po_number_required: bool | None = Field(default=None, description="Refuse invoices without a PO number")

    @model_validator(mode="after")
    def _terms_known(self) -> "ProfileChangeRequest":
        if self.payment_terms:
            try:
                PaymentTerms.parse(self.payment_terms)
            except UnknownTerms as exc:
                raise ValueError(f"payment_terms: {exc}") from exc
        return self


def _profile_out(customer: Customer, on: date) -> dict[str, Any]:
    p = customer.profile_as_of(on)
    return {"customer_id": customer.id, "as_of": on.isoformat(), "currency": customer.currency,
            "payment_terms": p.payment_terms.code, "payment_terms_days": p.payment_terms.days,
            "credit_limit": money_str(p.credit_limit, customer.currency),
            "billing_contacts": [c.model_dump(mode="json") for c in p.billing_contacts],
            "billing_address": p.billing_address.model_dump(mode="json") if p.billing_address else None,
            "language": p.language, "delivery_preference": p.delivery_preference,
            "po_number_required": p.po_number_required, "version": customer.version}


@router.post("/customers/{customer_id}/profile-changes", status_code=201, tags=["customers"])
async def change_profile(customer_id: str, body: ProfileChangeRequest, request: Request,
                         key: str = Depends(idempotency_key_header),
                         if_match: str | None = Header(default=None, alias="If-Match")):
    """Change terms, credit limit, billing contacts and address, language or delivery preference
    from a date (CustomerProfileChanged); only the fields given change."""
    expected = _if_match_version(if_match)
    runtime = get_runtime(request)
    today = runtime.definition.state["clock"].now().date()

    async def command(conn):
        customer = await repo.get_customer(conn, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} is not registered", field="customer_id")
        limit = None
        if body.credit_limit is not None:
            try:
                limit = exact_amount(body.credit_limit, customer["currency"].strip())
            except MoneyError as exc:
                raise ValidationFailed(str(exc), field="credit_limit") from exc
        meta = request_metadata(request)
        row = await handlers.change_customer_profile(conn, handlers.ChangeCustomerProfile(
            customer_id=customer_id, effective_on=body.effective_on or today, changed_by=meta["actor"],
            payment_terms=PaymentTerms.parse(body.payment_terms) if body.payment_terms else None,
            credit_limit=limit, billing_contacts=body.billing_contacts, billing_address=body.billing_address,
            language=body.language, delivery_preference=body.delivery_preference,
            po_number_required=body.po_number_required, expected_version=expected), meta)
        return _customer_out(row)

    return await idempotent_create(request, key, {"customer_id": customer_id, **body.model_dump(mode="json")},
                                   command)


@router.get("/customers/{customer_id}/profile", tags=["customers"])
async def profile_as_of(customer_id: str, request: Request, as_of: date | None = None) -> dict[str, Any]:
    """The customer master as it stood on `as_of` (default today), replayed from its stream."""
    runtime = get_runtime(request)
    async with runtime.engine.connect() as conn:
        customer = await aggregate.load(conn, Customer, customer_id)
    if not customer.exists:
        raise NotFound(f"customer {customer_id} is not registered", field="customer_id")
    return _profile_out(customer, as_of or runtime.definition.state["clock"].now().date())


@router.get("/customers/{customer_id}/profile-changes", tags=["customers"])
async def profile_history(customer_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        if await repo.get_customer(conn, customer_id) is None:
            raise NotFound(f"customer {customer_id} is not registered", field="customer_id")
        rows = await repo.profile_history(conn, customer_id)
    return {"data": [{"version": r["version"], "effective_on": r["effective_on"].isoformat(),
                      "changes": r["changes"], "changed_by": r["changed_by"]} for r in rows]}
