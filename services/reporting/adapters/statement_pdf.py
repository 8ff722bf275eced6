"""Statements of account as PDF with fpdf2 (as invoicing renders invoices and collections its
notices). Core fonts cover Latin-1 (English and French); the creation date is the statement's
as-of date, so one statement renders to the same bytes every time."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from fpdf import FPDF

from shared.money import money_str
from services.reporting.domain.statements import Statement


def _latin1(value: str) -> str:
    return value.replace("\u2019", "'").encode("latin-1", "replace").decode("latin-1")


def _money(s: Statement, amount: Decimal) -> str:
    text = money_str(amount, s.currency) or "0"
    if s.language == "fr":
        text = text.replace(".", ",")
    return f"{text} {s.currency}"


def _day(s: Statement, day) -> str:
    return day.strftime("%d/%m/%Y") if s.language == "fr" else day.isoformat()


def render(s: Statement) -> bytes:
    labels = s.labels
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"{labels['title']} {s.customer_id} {s.as_of.isoformat()}"))
    pdf.set_creator("Ledgerline reporting")
    pdf.set_creation_date(datetime(s.as_of.year, s.as_of.month, s.as_of.day, tzinfo=timezone.utc))
    pdf.add_page()
    pdf.set_xy(20, 20)
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.cell(0, 8, _latin1(labels["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for name, value in ((labels["customer"], f"{s.customer_name} ({s.customer_id})"),
                        (labels["as_of"], _day(s, s.as_of))):
        pdf.set_x(20)
        pdf.cell(40, 6, _latin1(name))
        pdf.cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    if len(s.members) > 1:
        pdf.set_x(20)
        pdf.cell(40, 6, _latin1(labels["members"]))
        pdf.multi_cell(130, 6, _latin1(", ".join(s.members)), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (35, 35, 25, 25, 20, 30)
    heads = (labels["account"], labels["invoice"], labels["issued"], labels["due"], labels["days"], labels["open"])
    pdf.set_font("Helvetica", style="B", size=8)
    pdf.set_x(20)
    for width, head in zip(widths, heads):
        pdf.cell(width, 6, _latin1(head), border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=8)
    if not s.lines:
        pdf.set_x(20)
        pdf.cell(sum(widths), 6, _latin1(labels["none"]), border=1, new_x="LMARGIN", new_y="NEXT")
    for line in s.lines:
        pdf.set_x(20)
        for width, value, align in zip(widths, (line.customer_id, line.invoice_number, _day(s, line.issue_date),
                                                 _day(s, line.due_date), str(max(line.days_past_due, 0)),
                                                 _money(s, line.open_balance)), ("L", "L", "L", "L", "R", "R")):
            pdf.cell(width, 6, _latin1(value[:24]), border=1, align=align)
        pdf.ln()
    pdf.ln(4)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.set_x(20)
    pdf.cell(0, 6, _latin1(labels["aging"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.set_x(20)
    for bucket in s.buckets:
        pdf.cell(34, 6, _latin1(bucket), border=1, align="C")
    pdf.ln()
    pdf.set_x(20)
    for amount in s.buckets.values():
        pdf.cell(34, 6, _latin1(_money(s, amount)), border=1, align="R")
    pdf.ln(10)
    pdf.set_font("Helvetica", size=10)
    rows = ((labels["open_total"], s.open_total), (labels["unapplied"], -s.unapplied_cash),
            (labels["balance"], s.balance_due))
    for n, (name, amount) in enumerate(rows):
        pdf.set_x(20)
        pdf.set_font("Helvetica", style="B" if n == len(rows) - 1 else "", size=10)
        pdf.cell(120, 6, _latin1(name), border=1)
        pdf.cell(50, 6, _latin1(_money(s, amount)), border=1, align="R")
        pdf.ln()
    return bytes(pdf.output())
