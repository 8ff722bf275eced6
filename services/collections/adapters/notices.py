"""Notices: Jinja2 templates (one folder per language) rendered to HTML for the email body and
to a PDF with fpdf2 for the attachment and for printed letters; email sent by SMTP through
shared/mail.py (the standard library's smtplib).

fpdf2 is pure Python (no system libraries such as Cairo or Pango that WeasyPrint needs), so the
service image stays small and the same code runs on a laptop, in CI and in the container. Its
core fonts cover Latin-1, which is what the English and French templates use; characters
outside it are replaced rather than failing a dunning run."""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from fpdf import FPDF
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# Where a template puts the invoice table ({{ invoice_table }}); at the end when it does not.
TABLE_MARK = "<!--invoice-table-->"
DEFAULT_LANGUAGE = "en"


def languages() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir())


def template_names(language: str = DEFAULT_LANGUAGE) -> list[str]:
    return sorted(p.stem for p in (TEMPLATES / language).glob("*.html"))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, keep_trailing_newline=False)


@lru_cache(maxsize=8)
def _labels(language: str) -> dict[str, str]:
    return json.loads((TEMPLATES / language / "labels.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class NoticeLine:
    invoice_number: str
    due_date: date
    days_past_due: int
    open_balance: Decimal


@dataclass(frozen=True)
class RenderedNotice:
    language: str
    subject: str
    html: str
    text: str
    pdf: bytes


def _latin1(value: str) -> str:
    return value.replace("\u2019", "'").replace("\u20ac", "EUR").encode("latin-1", "replace").decode("latin-1")


def _text_of(fragment: str) -> str:
    paragraphs = re.split(r"</p>\s*", fragment)
    return "\n\n".join(html.unescape(re.sub(r"<[^>]+>", "", p)).strip() for p in paragraphs if p.strip())


def render_notice(*, template: str, language: str, notice_id: str, notice_date: date, customer_name: str,
                  postal_address: str | None, currency: str, lines: Sequence[NoticeLine], total: str) -> RenderedNotice:
    language = language if (TEMPLATES / language / f"{template}.html").exists() else DEFAULT_LANGUAGE
    context: dict[str, Any] = {
        "customer_name": customer_name, "currency": currency, "total": total,
        "notice_date": notice_date.isoformat(), "notice_id": notice_id,
        "invoices": [line.__dict__ for line in lines],
        "oldest_days_past_due": max((line.days_past_due for line in lines), default=0),
        "invoice_table": Markup(TABLE_MARK),
    }
    module = _environment().get_template(f"{language}/{template}.html").make_module(context)
    subject = html.unescape(str(getattr(module, "subject", template))).strip()
    body = str(module).strip()
    if TABLE_MARK not in body:
        body += TABLE_MARK
    before, _, after = body.partition(TABLE_MARK)
    labels = _labels(language)
    table = "".join(f"<tr><td>{html.escape(line.invoice_number)}</td><td>{line.due_date.isoformat()}</td>"
                    f"<td>{line.days_past_due}</td><td>{line.open_balance} {currency}</td></tr>" for line in lines)
    html_table = (f"<table><tr><th>{labels['invoice']}</th><th>{labels['due_date']}</th>"
                  f"<th>{labels['days_past_due']}</th><th>{labels['open_balance']}</th></tr>{table}"
                  f"<tr><td colspan=\"3\">{labels['total']}</td><td>{total} {currency}</td></tr></table>")
    html_body = before + html_table + after
    text_lines = [f"{line.invoice_number}  {line.due_date.isoformat()}  {line.days_past_due:>4}  "
                  f"{line.open_balance} {currency}" for line in lines]
    text = "\n".join([_text_of(before), "", *text_lines, f"{labels['total']}: {total} {currency}", "",
                      _text_of(after)]).strip()
    pdf = _pdf(subject=subject, before=_text_of(before), after=_text_of(after), labels=labels, notice_id=notice_id, notice_date=notice_date,
               customer_name=customer_name, postal_address=postal_address, currency=currency, lines=lines,
               total=total)
    return RenderedNotice(language=language, subject=subject, html=html_body, text=text, pdf=pdf)


def _pdf(*, subject: str, before: str, after: str, labels: dict[str, str], notice_id: str, notice_date: date,
         customer_name: str, postal_address: str | None, currency: str, lines: Sequence[NoticeLine],
         total: str) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(subject))
    pdf.set_creator("Ledgerline collections")
    # The notice's own date, not the wall clock: the same notice renders to the same document.
    pdf.set_creation_date(datetime(notice_date.year, notice_date.month, notice_date.day, tzinfo=timezone.utc))
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    # The address block sits where a DL window envelope shows it.
    pdf.set_xy(110, 45)
    pdf.multi_cell(80, 5, _latin1("\n".join([customer_name, *(postal_address or "").splitlines()])))
    pdf.set_xy(20, 80)
    pdf.cell(0, 5, _latin1(f"{labels['notice']} {notice_id} - {labels['date']} {notice_date.isoformat()}"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(20)
    pdf.set_font("Helvetica", style="B", size=12)
    pdf.multi_cell(170, 7, _latin1(subject), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    _paragraphs(pdf, before)
    widths = (50, 35, 35, 50)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.set_x(20)
    for width, label in zip(widths, ("invoice", "due_date", "days_past_due", "open_balance")):
        pdf.cell(width, 6, _latin1(labels[label]), border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for line in lines:
        pdf.set_x(20)
        for width, value, align in zip(widths, (line.invoice_number, line.due_date.isoformat(),
                                                 str(line.days_past_due), f"{line.open_balance} {currency}"),
                                       ("L", "L", "R", "R")):
            pdf.cell(width, 6, _latin1(value), border=1, align=align)
        pdf.ln()
    pdf.set_x(20)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.cell(sum(widths[:3]), 6, _latin1(labels["total"]), border=1)
    pdf.cell(widths[3], 6, _latin1(f"{total} {currency}"), border=1, align="R")
    pdf.ln(10)
    pdf.set_font("Helvetica", size=10)
    _paragraphs(pdf, after)
    return bytes(pdf.output())


def _paragraphs(pdf: FPDF, text: str) -> None:
    for paragraph in text.split("\n\n"):
        if paragraph.strip():
            pdf.set_x(20)
            pdf.multi_cell(170, 5, _latin1(paragraph), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)


def email_message(*, notice_id: str, sender: str, recipient: str, subject: str, text: str, html_body: str,
                  pdf: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    # The notice id is the Message-ID: a resend after a crash carries the same one, so a mail
    # system (or the customer's client) can tell it is the same message.
    message["Message-ID"] = f"<{notice_id}@ledgerline.collections>"
    message.set_content(text)
    message.add_alternative(f"<html><body>{html_body}</body></html>", subtype="html")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{notice_id}.pdf")
    return message
