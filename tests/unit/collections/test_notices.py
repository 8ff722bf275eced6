"""Notice rendering: every template exists in every language, renders its subject, body, the
invoice table and a PDF; the email carries the PDF and the notice id as Message-ID."""
import io
from datetime import date
from decimal import Decimal

import pytest
from pypdf import PdfReader

from services.collections.adapters.notices import (
    NoticeLine,
    email_message,
    languages,
    render_notice,
    template_names,
)
from services.collections.domain.strategy import DEFAULT_STEPS

LINES = [NoticeLine("INV-2", date(2024, 2, 1), 30, Decimal("250.00")),
         NoticeLine("INV-1", date(2024, 1, 1), 61, Decimal("1000.00"))]


def render(template: str, language: str, **kw):
    args = dict(template=template, language=language, notice_id="n-1", notice_date=date(2024, 3, 2),
                customer_name="Dupont & Fils", postal_address="1 rue de la Paix\n75002 Paris", currency="EUR",
                lines=LINES, total="1250.00")
    return render_notice(**{**args, **kw})


def test_every_template_of_the_default_strategy_exists_in_every_language():
    assert languages() == ["en", "fr"]
    needed = {s["template"] for s in DEFAULT_STEPS if s.get("template")}
    for language in languages():
        assert needed <= set(template_names(language)), language


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("template", ["reminder", "first_notice", "second_notice", "final_demand"])
def test_each_template_renders_to_text_html_and_pdf(template, language):
    notice = render(template, language)
    assert notice.language == language and notice.subject and "{" not in notice.subject
    assert "Dupont &amp; Fils" in notice.html and "Dupont & Fils" in notice.text
    assert "INV-1" in notice.text and "1250.00 EUR" in notice.text
    page = PdfReader(io.BytesIO(notice.pdf)).pages[0].extract_text()
    assert "INV-1" in page and "INV-2" in page and "1250.00 EUR" in page and "75002 Paris" in page


def test_the_french_final_demand_speaks_french_and_the_same_notice_renders_the_same_pdf():
    notice = render("final_demand", "fr")
    assert notice.subject == "Mise en demeure : 1250.00 EUR"
    assert "la plus ancienne de 61 jours" in notice.text
    assert "Solde dû" in PdfReader(io.BytesIO(notice.pdf)).pages[0].extract_text()
    assert render("final_demand", "fr").pdf == notice.pdf


def test_a_language_without_the_template_falls_back_to_english():
    assert render("reminder", "de").language == "en"


def test_characters_outside_latin1_do_not_break_the_pdf():
    notice = render("reminder", "en", customer_name="Łódź Trading \u2019 \u20ac")
    assert PdfReader(io.BytesIO(notice.pdf)).pages[0].extract_text()


def test_the_email_has_both_bodies_the_pdf_and_the_notice_id():
    notice = render("first_notice", "en")
    message = email_message(notice_id="n-1", sender="ar@x.example", recipient="ap@y.example",
                            subject=notice.subject, text=notice.text, html_body=notice.html, pdf=notice.pdf)
    assert message["Message-ID"] == "<n-1@ledgerline.collections>"
    assert message.get_body(("plain",)).get_content().startswith("Dear Dupont & Fils")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "n-1.pdf" and attachment.get_payload(decode=True) == notice.pdf
