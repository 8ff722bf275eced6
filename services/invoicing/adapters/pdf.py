"""Invoice and credit-memo PDFs with fpdf2 (pure Python, the library collections' notices use).
Core fonts cover Latin-1, enough for the English and French documents; other characters are
replaced rather than failing. The creation date is the document's date, so a document renders
to the same bytes every time (a resent email attaches the same PDF)."""
from __future__ import annotations

from datetime import datetime, timezone

from fpdf import FPDF

from services.invoicing.domain.documents import Document, format_date


def _latin1(value: str) -> str:
    return (value.replace("\u202f", " ").replace("\u2019", "'").replace("\u2212", "-")
            .encode("latin-1", "replace").decode("latin-1"))


def render(doc: Document) -> bytes:
    labels = doc.labels
    title = labels[doc.kind]
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"{title} {doc.number}"))
    pdf.set_creator("Ledgerline invoicing")
    pdf.set_creation_date(datetime(doc.issue_date.year, doc.issue_date.month, doc.issue_date.day, tzinfo=timezone.utc))
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.set_xy(20, 20)
    pdf.cell(0, 8, _latin1(f"{title} {doc.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    facts = [(labels["date"], format_date(doc.issue_date, doc.language))]
    if doc.due_date:
        facts.append((labels["due_date"], format_date(doc.due_date, doc.language)))
    if doc.po_number:
        facts.append((labels["po_number"], doc.po_number))
    if doc.original_invoice_number:
        facts.append((labels["original_invoice"], doc.original_invoice_number))
    if doc.rma_number:
        facts.append((labels["rma"], doc.rma_number))
    if doc.reason:
        facts.append((labels["reason"], doc.reason))
    pdf.set_xy(20, 32)
    for name, value in facts:
        pdf.set_x(20)
        pdf.cell(40, 5, _latin1(name))
        pdf.multi_cell(60, 5, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    # The address block sits where a DL window envelope shows it.
    pdf.set_xy(110, 45)
    pdf.multi_cell(80, 5, _latin1("\n".join([doc.customer_name, *doc.address_lines])))
    pdf.set_y(max(pdf.get_y(), 75) + 5)
    widths = (80, 20, 35, 35)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.set_x(20)
    for width, name in zip(widths, ("description", "quantity", "unit_price", "amount")):
        pdf.cell(width, 6, _latin1(labels[name]), border=1, align="L" if name == "description" else "R")
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for line in doc.lines:
        pdf.set_x(20)
        for width, value, align in zip(widths, (line.description, f"{line.quantity.normalize():f}",
                                                 doc.money(line.unit_price), doc.money(line.amount)),
                                       ("L", "R", "R", "R")):
            pdf.cell(width, 6, _latin1(value[:60]), border=1, align=align)
        pdf.ln()
    rows = [(labels["subtotal"], doc.subtotal)] if doc.taxes else []
    for code, rate, amount in doc.taxes:
        rows.append((f"{labels['tax']} {code}" + (f" {rate.normalize():f} %" if rate is not None else ""), amount))
    rows.append((labels["credit_total" if doc.kind == "credit_memo" else "total"], doc.total))
    for n, (name, amount) in enumerate(rows):
        pdf.set_x(20)
        pdf.set_font("Helvetica", style="B" if n == len(rows) - 1 else "", size=10)
        pdf.cell(sum(widths[:3]), 6, _latin1(name), border=1, align="R")
        pdf.cell(widths[3], 6, _latin1(doc.money(amount)), border=1, align="R")
        pdf.ln()
    pdf.ln(6)
    pdf.set_font("Helvetica", size=10)
    if doc.kind == "credit_memo":
        pdf.set_x(20)
        pdf.multi_cell(170, 5, _latin1(labels["credit_note"]), new_x="LMARGIN", new_y="NEXT")
    elif doc.payee is not None:
        pdf.set_x(20)
        pdf.set_font("Helvetica", style="B", size=11)
        pdf.cell(0, 6, _latin1(labels["payment_instructions"]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        instructions = [(labels["payee"], doc.payee.name)]
        if doc.payee.iban:
            instructions.append((labels["iban"], doc.payee.iban))
        if doc.payee.bic:
            instructions.append((labels["bic"], doc.payee.bic))
        for name, value in instructions:
            pdf.set_x(20)
            pdf.cell(40, 5, _latin1(name))
            pdf.cell(0, 5, _latin1(value), new_x="LMARGIN", new_y="NEXT")
        pdf.set_x(20)
        if doc.payment_reference:
            pdf.cell(0, 5, _latin1(labels["reference"]), new_x="LMARGIN", new_y="NEXT")
            pdf.set_x(20)
            pdf.set_font("Courier", style="B", size=13)
            pdf.cell(0, 7, doc.payment_reference, new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.cell(0, 5, _latin1(f"{labels['reference_missing']}: {doc.number}"), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
