"""Documents: an invoice's or credit memo's content from the read model, queued for delivery in
the transaction that issues it (an outbox), and the emails sent after commit, one transaction
each, the way collections sends dunning notices."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import creditor_reference, mail
from shared.money import quantize
from shared.problems import NotFound
from services.invoicing.adapters import pdf
from services.invoicing.adapters import repository as repo
from services.invoicing.adapters.reporting_client import StatementSource
from services.invoicing.domain.statements import subject as statement_subject
from services.invoicing.domain.documents import (
    Document, DocumentLine, Payee, address_lines, delivery_for, language_of, payment_reference)
from services.invoicing.domain.model import Customer
from services.invoicing.settings import InvoicingSettings


def payee_of(settings: InvoicingSettings) -> Payee:
    return Payee(settings.payee_name, settings.payee_iban, settings.payee_bic)


def delivery_id_for(kind: str, document_id: str) -> str:
    """Deterministic: the delivery of one document always has the same id (and Message-ID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledgerline:document-delivery:{kind}:{document_id}"))


async def queue_document(conn: AsyncConnection, kind: str, document_id: str, customer: Customer,
                         issued_on: date) -> None:
    """Record how the new document reaches the customer: its delivery preference on the issue date."""
    await queue_documents(conn, [(kind, document_id, customer, issued_on)])


async def queue_documents(conn: AsyncConnection, documents: list[tuple]) -> None:
    """queue_document for many documents at once (a batch of invoices): one statement. Each is
    (kind, document_id, customer, issued_on[, as_of]): as_of for a statement of account, which
    goes out by the preference in force on the day it is made (issued_on)."""
    rows = delivery_rows(documents)
    if rows:
        await repo.insert_delivery(conn, rows)


def delivery_rows(documents: list[tuple]) -> list[dict[str, Any]]:
    """The deliveries queue_documents inserts (repo.insert_delivery's rows), one per document."""
    rows = []
    for kind, document_id, customer, issued_on, *as_of in documents:
        profile = customer.profile_as_of(issued_on)
        delivery = delivery_for(profile.delivery_preference, [c.model_dump(mode="json") for c in profile.billing_contacts])
        rows.append({"delivery_id": delivery_id_for(kind, document_id), "document_kind": kind,
                     "document_id": document_id, "customer_id": customer.id, "channel": delivery.channel,
                     "language": profile.language, "recipient": delivery.recipient, "status": delivery.status,
                     "last_error": delivery.last_error, "created_on": issued_on,
                     "as_of": as_of[0] if as_of else None, "currency": customer.currency if as_of else None})
    return rows


def _lines(rows: list[dict[str, Any]]) -> tuple[DocumentLine, ...]:
    return tuple(DocumentLine(r["description"], Decimal(str(r["quantity"])), Decimal(str(r["unit_price"])),
                              Decimal(str(r["amount"]))) for r in rows)


async def _customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any]:
    customer = await repo.get_customer(conn, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} is not registered", field="customer_id")
    return customer


def _address(customer: dict[str, Any]) -> tuple[str, ...]:
    address = customer.get("billing_address")
    if isinstance(address, str):
        import json
        address = json.loads(address)
    return address_lines(address)


async def invoice_document(conn: AsyncConnection, invoice_id: str, language: str | None,
                           payee: Payee) -> Document:
    invoice = await repo.get_invoice(conn, invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} does not exist", field="invoice_id")
    customer = await _customer(conn, invoice["customer_id"])
    reference = payment_reference(invoice["invoice_number"])
    return Document(
        kind="invoice", language=language_of(language, customer["language"]), number=invoice["invoice_number"],
        issue_date=invoice["issue_date"], due_date=invoice["due_date"], currency=invoice["currency"].strip(),
        customer_name=customer["name"], address_lines=_address(customer), lines=_lines(invoice["lines"]),
        taxes=tuple((t["code"], Decimal(t["rate"]) if t.get("rate") is not None else None, Decimal(t["amount"]))
                    for t in invoice.get("taxes") or []),
        total=quantize(Decimal(invoice["total_amount"]), invoice["currency"].strip()), po_number=invoice.get("po_number"),
        payment_reference=creditor_reference.printed(reference) if reference else None, payee=payee)


def _returned_taxes(memo: dict[str, Any], invoice: dict[str, Any] | None) -> tuple:
    """A return's credited tax on its document: one line, named after the invoice's tax when it
    had one code (VAT 20 %), else "Tax"."""
    tax = sum((Decimal(str(line.get("tax_amount") or 0)) for line in memo["lines"] or []), Decimal(0))
    if tax == 0:
        return ()
    codes = {(t["code"], t.get("rate")) for t in (invoice or {}).get("taxes") or []}
    code, rate = next(iter(codes)) if len(codes) == 1 else ("Tax", None)
    return ((code, Decimal(str(rate)) if rate is not None else None, tax),)


async def credit_memo_document(conn: AsyncConnection, credit_memo_id: str, language: str | None) -> Document:
    memo = await repo.get_credit_memo(conn, credit_memo_id)
    if memo is None:
        raise NotFound(f"credit memo {credit_memo_id} does not exist", field="credit_memo_id")
    invoice = await repo.get_invoice(conn, memo["invoice_id"])
    customer = await _customer(conn, memo["customer_id"])
    amount = quantize(Decimal(memo["amount"]), memo["currency"].strip())
    lines = _lines(memo["lines"]) if memo["lines"] else (DocumentLine(memo["reason"], Decimal(1), amount, amount),)
    return Document(
        kind="credit_memo", language=language_of(language, customer["language"]),
        number=f"CM-{credit_memo_id[:8].upper()}", issue_date=memo["issue_date"], currency=memo["currency"].strip(),
        customer_name=customer["name"], address_lines=_address(customer), lines=lines,
        taxes=_returned_taxes(memo, invoice), total=amount,
        original_invoice_number=invoice["invoice_number"] if invoice else memo["invoice_id"],
        rma_number=memo.get("rma_number"), reason=memo["reason"])


async def render(conn: AsyncConnection, kind: str, document_id: str, language: str | None,
                 settings: InvoicingSettings) -> tuple[Document, bytes]:
    doc = (await invoice_document(conn, document_id, language, payee_of(settings)) if kind == "invoice"
           else await credit_memo_document(conn, document_id, language))
    return doc, await asyncio.to_thread(pdf.render, doc)


def statement_source(settings: InvoicingSettings, transport: Any = None) -> StatementSource:
    return StatementSource(settings.reporting_url, settings.reporting_api_key, settings.reporting_timeout_seconds,
                           transport)


def statement_source_of(runtime: Any) -> StatementSource:
    """The runtime's way to reporting: definition.state["statement_source"] when set (tests route
    it to an in-process reporting app), else reporting_url from the settings."""
    return runtime.definition.state.get("statement_source") or statement_source(runtime.settings)


@dataclass(frozen=True)
class Rendered:
    """A delivery's document ready to send: the email's subject and text, the PDF and its name."""

    title: str
    body: list[str]
    filename: str
    content: bytes


async def render_delivery(conn: AsyncConnection, row: dict[str, Any], settings: InvoicingSettings,
                          statements: StatementSource) -> Rendered:
    """Any delivery's document: an invoice or credit memo rendered here, a statement of account
    fetched from reporting as of its date (StatementUnavailable when reporting does not answer)."""
    if row["document_kind"] == "statement":
        customer = await _customer(conn, row["customer_id"])
        content = await statements.pdf(row["customer_id"], row["as_of"], row["currency"].strip(), row["language"])
        title = statement_subject(row["language"], customer["name"], row["as_of"])
        return Rendered(title, [customer["name"], "", title], f"statement-{row['document_id']}.pdf", content)
    doc, content = await render(conn, row["document_kind"], row["document_id"], row["language"], settings)
    labels = doc.labels
    title = f"{labels[doc.kind]} {doc.number}"
    body = [doc.customer_name, "", f"{title} - {labels['total' if doc.kind == 'invoice' else 'credit_total']}:"
            f" {doc.money(doc.total)}"]
    if doc.payment_reference:
        body.append(f"{labels['reference']}: {doc.payment_reference}")
    return Rendered(title, body, f"{doc.number}.pdf", content)


def email_message(*, delivery_id: str, sender: str, recipient: str, rendered: Rendered) -> EmailMessage:
    title = rendered.title
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = title
    message["Date"] = formatdate(localtime=False)
    # The delivery id is the Message-ID: a resend after a crash carries the same one.
    message["Message-ID"] = f"<{delivery_id}@ledgerline.invoicing>"
    message.set_content("\n".join(rendered.body))
    message.add_attachment(rendered.content, maintype="application", subtype="pdf", filename=rendered.filename)
    return message


def smtp_settings(settings: InvoicingSettings) -> mail.SmtpSettings:
    return mail.SmtpSettings(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                             starttls=settings.smtp_starttls, ssl=settings.smtp_ssl, username=settings.smtp_username,
                             password=settings.smtp_password, timeout=settings.smtp_timeout_seconds)


async def deliver_pending_documents(engine: AsyncEngine, settings: InvoicingSettings,
                                    limit: int = 100_000, statements: StatementSource | None = None) -> dict[str, int]:
    """Email pending documents, one transaction each: the row is locked (other instances skip it),
    the PDF rendered (a statement's fetched from reporting), sent, and the row marked sent in the
    same transaction. A crash after the SMTP server accepted it and before the commit leaves it
    pending: sent again once, same Message-ID. A failure (SMTP, or reporting not answering for a
    statement) counts an attempt; after smtp_max_attempts the delivery is marked failed."""
    smtp = smtp_settings(settings)
    statements = statements or statement_source(settings)
    counts = {"sent": 0, "failed": 0, "retry": 0}
    for _ in range(limit):
        async with engine.begin() as conn:
            row = await repo.claim_pending_delivery(conn)
            if row is None:
                break
            try:
                rendered = await render_delivery(conn, row, settings, statements)
                message = email_message(delivery_id=row["delivery_id"], sender=smtp.sender,
                                        recipient=row["recipient"], rendered=rendered)
                await asyncio.to_thread(mail.send_email, smtp, message)
            except Exception as exc:  # smtplib raises OSError and SMTPException subclasses; all count
                final = row["attempts"] + 1 >= settings.smtp_max_attempts
                await repo.mark_delivery(conn, row["delivery_id"], status="failed" if final else "pending",
                                         error=f"{type(exc).__name__}: {exc}"[:500])
                counts["failed" if final else "retry"] += 1
                if not final:
                    break  # the server is likely down: leave the rest for the next pass
                continue
            await repo.mark_delivery(conn, row["delivery_id"], status="sent", error=None)
            counts["sent"] += 1
    return counts
