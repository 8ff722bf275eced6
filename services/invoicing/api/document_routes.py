"""/v1 routes of documents: invoice and credit-memo PDFs, in English or French."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from shared.service import get_runtime
from services.invoicing.application import documents

router = APIRouter(prefix="/v1", tags=["documents"])

_LANGUAGE = Query(None, description="en or fr; default the customer's language")
_PDF = {200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The document as a PDF"}}


async def _pdf(request: Request, kind: str, document_id: str, language: str | None) -> Response:
    runtime = get_runtime(request)
    async with runtime.engine.connect() as conn:
        doc, content = await documents.render(conn, kind, document_id, language, runtime.settings)
    return Response(content, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{doc.number}.pdf"', "Content-Language": doc.language})


@router.get("/invoices/{invoice_id}/pdf", response_class=Response, responses=_PDF)
async def invoice_pdf(invoice_id: str, request: Request, language: Literal["en", "fr"] | None = _LANGUAGE):
    """The invoice as a PDF: lines, tax amounts as the ERP gave them, the total and the payment
    instructions with the invoice's ISO 11649 RF creditor reference."""
    return await _pdf(request, "invoice", invoice_id, language)


@router.get("/credit-memos/{credit_memo_id}/pdf", response_class=Response, responses=_PDF)
async def credit_memo_pdf(credit_memo_id: str, request: Request, language: Literal["en", "fr"] | None = _LANGUAGE):
    """The credit memo as a PDF: the invoice it credits, its lines (a return's) or its amount."""
    return await _pdf(request, "credit_memo", credit_memo_id, language)
