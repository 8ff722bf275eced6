"""Money and dates as people read them, per locale (babel), from the APIs' decimal strings:
never through float, so what is shown is exactly what the service sent."""
from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from babel.dates import format_date as _babel_date
from babel.numbers import format_currency as _babel_currency
from babel.numbers import format_decimal as _babel_decimal

LOCALES = {"en": "en_US", "fr": "fr_FR"}


def _locale(lang: str) -> str:
    return LOCALES.get(lang, "en_US")


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


def format_money(value: str | None, currency: str | None, lang: str) -> str:
    """'1234.50' USD -> '$1,234.50' (en) or '1 234,50 $US' (fr). The amount keeps the digits the
    API sent (babel formats Decimals exactly; currency_digits=False keeps e.g. 3-decimal amounts)."""
    amount = parse_amount(value)
    if amount is None:
        return ""
    if not currency:
        return _babel_decimal(amount, locale=_locale(lang), decimal_quantization=False)
    return _babel_currency(amount, currency.strip(), locale=_locale(lang), currency_digits=False,
                           format_type="standard", decimal_quantization=False)


def format_day(value: str | date | None, lang: str) -> str:
    if value in (None, ""):
        return ""
    day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    return _babel_date(day, format="medium", locale=_locale(lang))


def add(values: list[str]) -> str:
    """Sum of decimal strings, exactly (running totals of a selection)."""
    total = sum((parse_amount(v) or Decimal(0) for v in values), Decimal(0))
    return format(total, "f")
