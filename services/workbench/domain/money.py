"""Money and dates as people read them in English (en-US) and French (fr-FR), from the APIs'
decimal strings: never through float, so what is shown is exactly the digits the service sent.

CLDR's patterns for the two languages the workbench speaks, written out here rather than taken
from babel: babel ships every CLDR locale (33 MB), which the service image cannot carry within
its size budget, to format two."""
from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

# CLDR symbols (en-US, fr-FR) of the currencies a book is likely to hold; others show their code.
SYMBOLS = {
    "en": {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$", "CNY": "CN¥", "INR": "₹",
           "MXN": "MX$", "BRL": "R$", "NZD": "NZ$", "HKD": "HK$", "ILS": "₪", "KRW": "₩"},
    "fr": {"USD": "$US", "EUR": "€", "GBP": "£GB", "JPY": "JPY", "CAD": "$CA", "AUD": "$AU", "CNY": "CNY",
           "INR": "₹", "MXN": "$MX", "BRL": "R$", "NZD": "$NZ", "HKD": "HKD", "ILS": "₪", "KRW": "₩"},
}
GROUP = {"en": ",", "fr": "\u202f"}      # fr: narrow no-break space
DECIMAL = {"en": ".", "fr": ","}
MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "fr": ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."),
}


def _lang(lang: str) -> str:
    return lang if lang in DECIMAL else "en"


def parse_amount(value: str | None) -> Decimal | None:
    """The API's decimal string as a Decimal (None for missing); raises ValueError on junk."""
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount


def format_number(value: str | Decimal, lang: str) -> str:
    """Digits as given (no rounding, no float), grouped by thousands, the locale's separators."""
    lang = _lang(lang)
    amount = value if isinstance(value, Decimal) else parse_amount(value)
    text = format(abs(amount), "f")
    whole, _, fraction = text.partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    out = GROUP[lang].join(groups) + (DECIMAL[lang] + fraction if fraction else "")
    return ("-" if amount < 0 else "") + out


def format_money(value: str | None, currency: str | None, lang: str) -> str:
    """'1234.50' USD -> '$1,234.50' (en) or '1 234,50 $US' (fr)."""
    lang = _lang(lang)
    amount = parse_amount(value)
    if amount is None:
        return ""
    if not currency:
        return format_number(amount, lang)
    code = currency.strip().upper()
    number = format_number(abs(amount), lang)
    sign = "-" if amount < 0 else ""
    symbol = SYMBOLS[lang].get(code, code)
    if lang == "fr":
        return f"{sign}{number}\u00a0{symbol}"
    return f"{sign}{symbol}{number}"


def format_day(value: str | date | None, lang: str) -> str:
    """en: 'Mar 5, 2026'; fr: '5 mars 2026' (CLDR's medium date)."""
    if value in (None, ""):
        return ""
    lang = _lang(lang)
    day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    month = MONTHS[lang][day.month - 1]
    return f"{day.day} {month} {day.year}" if lang == "fr" else f"{month} {day.day}, {day.year}"


def add(values: list[str]) -> str:
    """Sum of decimal strings, exactly (running totals of a selection)."""
    total = sum((parse_amount(v) or Decimal(0) for v in values), Decimal(0))
    return format(total, "f")
