"""/v1 routes of deductions as retailers take them and of the dispute workflow's steps:
customers' code mappings, reclassification, assignment, the validity decision, the timeline,
retailer deduction report profiles and imports, and the root-cause report."""
from __future__ import annotations

import hashlib
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.idempotency import idempotent_create, idempotent_request, idempotency_key_header
from shared.money import Amount, CurrencyCode, MoneyError, exact_amount, money_str
from shared.problems import NotFound, ValidationFailed
from shared.service import get_runtime, request_metadata
from services.disputes.adapters import deductions as repo_d
from services.disputes.adapters import repository as repo
from services.disputes.api.routes import _if_match_version
from services.disputes.api.schemas import dispute_out
from services.disputes.application import deductions


router = APIRouter(prefix="/v1")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CodeMappingLine(_Request):
    customer_reason_code: str = Field(min_length=1, max_length=60, description="The retailer's own code")
    reason_code: str = Field(min_length=1, max_length=40, description="One of GET /v1/reason-codes")

    @field_validator("reason_code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class CodeMappingRequest(_Request):
    mappings: list[CodeMappingLine] = Field(max_length=1000)


class ReclassifyRequest(_Request):
    reason_code: str = Field(min_length=1, max_length=40)
    reclassified_on: date | None = None
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("reason_code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class AssignRequest(_Request):
    owner: str | None = Field(default=None, min_length=1, max_length=120)
    team: Literal["sales", "customer_service", "billing", "logistics"]
    assigned_on: date | None = None


class DecisionRequest(_Request):
    valid_amount: Amount = Field(description="Credited to the customer (a credit memo on the invoice)")
    invalid_amount: Amount = Field(description="Re-billed as a new invoice linked to the deduction")
    decided_on: date | None = None
    note: str | None = Field(default=None, max_length=2000)


class ProfileRequest(_Request):
    customer_id: str = Field(min_length=1, max_length=64)
    columns: dict[str, str] = Field(description="deduction_number, invoice_number, amount, reason_code, "
                                                "deduction_date (required) and payment_reference (optional) -> "
                                                "the report's column headers")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    date_format: str = Field(default="%Y-%m-%d", max_length=40, description="strptime format, e.g. %m/%d/%Y")

    @field_validator("columns")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [f for f in deductions.REPORT_FIELDS if not value.get(f)]
        unknown = [f for f in value if f not in deductions.REPORT_FIELDS + deductions.OPTIONAL_REPORT_FIELDS]
        if missing or unknown:
            raise ValueError(f"columns: missing {missing}, unknown {unknown}")
        return value


def _today(request: Request) -> date:
    return get_runtime(request).definition.state["clock"].today()


def _actor(request: Request) -> str:
    return getattr(request.state, "actor", None) or "anonymous"


async def _currency_of(conn, dispute_id: str) -> str:
    current = await repo.get_dispute(conn, dispute_id)
    if current is None:
        raise NotFound(f"dispute {dispute_id} does not exist", field="dispute_id")
    return current["currency"].strip()


@router.put("/customers/{customer_id}/deduction-codes", tags=["deductions"])
async def put_deduction_codes(customer_id: str, body: CodeMappingRequest, request: Request) -> dict[str, Any]:
    """Replace the customer's mapping of its own deduction codes to the catalogue (DeductionCodesMapped
    when it changes). Deductions opened afterwards are classified through it."""
    async with get_runtime(request).engine.begin() as conn:
        mapping = await deductions.set_code_mapping(
            conn, customer_id, [(m.customer_reason_code, m.reason_code) for m in body.mappings], _today(request),
            _actor(request), request_metadata(request))
    return _mapping_out(customer_id, mapping)


def _mapping_out(customer_id: str, mapping: dict[str, str]) -> dict[str, Any]:
    return {"customer_id": customer_id, "mappings": [{"customer_reason_code": k, "reason_code": v}
                                                     for k, v in sorted(mapping.items())]}


@router.get("/customers/{customer_id}/deduction-codes", tags=["deductions"])
async def get_deduction_codes(customer_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        return _mapping_out(customer_id, await repo_d.code_mapping(conn, customer_id))


@router.post("/disputes/{dispute_id}/reclassification", status_code=201, tags=["disputes"])
async def reclassify(dispute_id: str, body: ReclassifyRequest, request: Request,
                     key: str = Depends(idempotency_key_header),
                     if_match: str | None = Header(default=None, alias="If-Match")):
    expected = _if_match_version(if_match)

    async def command(conn):
        meta = {**request_metadata(request), **({"note": body.note} if body.note else {})}
        return dispute_out(await deductions.reclassify(conn, dispute_id, body.reason_code,
                                                       body.reclassified_on or _today(request), _actor(request),
                                                       expected, meta))

    return await idempotent_create(request, key, {"dispute_id": dispute_id, **body.model_dump(mode="json")}, command)


@router.post("/disputes/{dispute_id}/assignment", status_code=201, tags=["disputes"])
async def assign(dispute_id: str, body: AssignRequest, request: Request, key: str = Depends(idempotency_key_header),
                 if_match: str | None = Header(default=None, alias="If-Match")):
    """Reassign the dispute to an owner and team (DisputeAssigned)."""
    expected = _if_match_version(if_match)

    async def command(conn):
        return dispute_out(await deductions.assign(conn, dispute_id, body.owner, body.team,
                                                   body.assigned_on or _today(request), _actor(request), expected,
                                                   request_metadata(request)))

    return await idempotent_create(request, key, {"dispute_id": dispute_id, **body.model_dump(mode="json")}, command)


@router.post("/disputes/{dispute_id}/decision", status_code=201, tags=["deductions"])
async def decide(dispute_id: str, body: DecisionRequest, request: Request, key: str = Depends(idempotency_key_header),
                 if_match: str | None = Header(default=None, alias="If-Match")):
    """A deduction's validity: valid_amount credited, invalid_amount re-billed; together the whole
    deduction (DisputeResolved with resolution valid, invalid or partial and rebill_amount)."""
    expected = _if_match_version(if_match)

    async def command(conn):
        currency = await _currency_of(conn, dispute_id)
        amounts = {}
        for name in ("valid_amount", "invalid_amount"):
            try:
                amounts[name] = exact_amount(getattr(body, name), currency)
            except MoneyError as exc:
                raise ValidationFailed(str(exc), field=name) from exc
        return dispute_out(await deductions.decide_validity(conn, deductions.DecideValidity(
            dispute_id=dispute_id, decided_on=body.decided_on or _today(request), note=body.note,
            expected_version=expected, **amounts), request_metadata(request)))

    return await idempotent_create(request, key, {"dispute_id": dispute_id, **body.model_dump(mode="json")}, command)


@router.get("/disputes/{dispute_id}/timeline", tags=["disputes"])
async def get_timeline(dispute_id: str, request: Request) -> dict[str, Any]:
    """Every step of the dispute from its event stream: opened, assigned, reclassified, decided."""
    async with get_runtime(request).engine.connect() as conn:
        return {"dispute_id": dispute_id, "data": await deductions.timeline(conn, dispute_id)}


@router.put("/deduction-report-profiles/{profile_id}", tags=["deductions"])
async def put_profile(profile_id: str, body: ProfileRequest, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.begin() as conn:
        await repo_d.put_profile(conn, profile_id=profile_id, customer_id=body.customer_id, columns=body.columns,
                                 delimiter=body.delimiter, date_format=body.date_format)
    return {"profile_id": profile_id, **body.model_dump(mode="json")}


@router.get("/deduction-report-profiles/{profile_id}", tags=["deductions"])
async def get_profile(profile_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        profile = await repo_d.get_profile(conn, profile_id)
    if profile is None:
        raise NotFound(f"no deduction report profile {profile_id}", field="profile_id")
    return {k: profile[k] for k in ("profile_id", "customer_id", "columns", "delimiter", "date_format")}


@router.post("/deduction-imports", status_code=201, tags=["deductions"],
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
async def import_deductions(request: Request, key: str = Depends(idempotency_key_header),
                            profile_id: str = Query(..., description="PUT /v1/deduction-report-profiles/{id}")):
    """A retailer portal's deduction report (CSV, raw body): each line matches an open deduction of
    the same invoice and amount or opens one; the answer is the validation report, line by line."""
    content = (await request.body()).decode("utf-8-sig", errors="replace")
    fingerprint = {"profile_id": profile_id, "sha256": hashlib.sha256(content.encode()).hexdigest()}

    async def command(conn):
        profile = await repo_d.get_profile(conn, profile_id)
        if profile is None:
            raise NotFound(f"no deduction report profile {profile_id}", field="profile_id")
        return 201, await deductions.import_report(conn, profile, content, _actor(request), request_metadata(request))

    status, body, replayed = await idempotent_request(request, key, fingerprint, command)
    return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"} if replayed else {})


@router.get("/reports/deductions", tags=["reports"])
async def root_cause_report(request: Request, currency: CurrencyCode,
                            group_by: Literal["reason", "customer", "owner_team", "owner", "product_line"] = "reason",
                            kind: Literal["dispute", "deduction"] | None = "deduction",
                            opened_from: date | None = None, opened_to: date | None = None) -> dict[str, Any]:
    """Root causes: per reason, customer, owner team, owner or product line (the disputed line's, else
    the invoice's when all its lines share one), what was opened, is still open, was
    credited (valid), re-billed (invalid) and recovered on the re-bills, with cycle times in days."""
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo_d.root_cause(conn, group_by=group_by, kind=kind, currency=currency,
                                       opened_from=opened_from, opened_to=opened_to)

    def money(v: Any) -> str:
        return money_str(v, currency)

    return {"currency": currency, "group_by": group_by, "kind": kind, "data": [
        {"key": r["key"], "opened": r["opened"], "opened_amount": money(r["opened_amount"]),
         "still_open": r["still_open"], "open_amount": money(r["open_amount"]), "resolved": r["resolved"],
         "credited_amount": money(r["credited_amount"]), "rebilled_amount": money(r["rebilled_amount"]),
         "recovered_amount": money(r["recovered_amount"]),
         "avg_cycle_days": None if r["avg_cycle_days"] is None else str(round(r["avg_cycle_days"], 1)),
         "max_cycle_days": r["max_cycle_days"]} for r in rows]}
