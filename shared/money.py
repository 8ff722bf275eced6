"""Money as Decimal quantised to the currency's ISO 4217 minor unit. Never float.

Rules (tested in tests/unit/shared/test_money.py):
- Input amounts must be strings (or Decimals in code); a JSON number or a Python float is
  rejected, because a float cannot carry an exact cent.
- Input may not carry more decimals than the currency's minor unit ("10.005" USD is rejected,
  not rounded): a client error should not be hidden by rounding.
- An amount no currency can hold is refused: more than MAX_INTEGER_DIGITS digits before the
  point (the NUMERIC(20, 4) columns hold 16; one is kept for sums), more than MAX_DECIMALS
  significant decimals (the largest ISO 4217 minor unit), NaN or Infinity.
- Amounts computed here (ratios, allocations) are rounded with ROUND_HALF_UP, the rule an AR
  team expects on an invoice; allocation hands the leftover minor units out so parts sum to the
  whole exactly.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any

import iso4217
from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

ZERO = Decimal("0")
MAX_INTEGER_DIGITS = 15
MAX_DECIMALS = 4
_SMALLEST = Decimal(1).scaleb(-MAX_DECIMALS)


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


@lru_cache(maxsize=None)
def minor_unit(currency: str) -> int:
    """Number of decimals of the currency's minor unit (USD 2, JPY 0, BHD 3)."""
    code = normalise_currency(currency)
    try:
        exponent = iso4217.Currency(code).exponent
    except ValueError as exc:  # unknown code
        raise MoneyError(f"unknown ISO 4217 currency code {currency!r}") from exc
    # Funds codes and precious metals have no minor unit (exponent None): not invoice currencies.
    if exponent is None:
        raise MoneyError(f"{code} has no minor unit and cannot be an invoice currency")
    return int(exponent)


def normalise_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency.strip()) != 3 or not currency.strip().isalpha():
        raise MoneyError(f"currency must be a three-letter ISO 4217 code, got {currency!r}")
    return currency.strip().upper()


def validate_currency(currency: str) -> str:
    code = normalise_currency(currency)
    minor_unit(code)
    return code


@lru_cache(maxsize=None)
def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round a computed amount to the currency's minor unit, half up."""
    if isinstance(amount, float):
        raise MoneyError("float amounts are not allowed; use Decimal")
    return Decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP)


def parse_amount(value: Any) -> Decimal:
    """Parse an amount from a string, int or Decimal. Floats are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError("amount must be a decimal string such as \"1234.50\", not a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = Decimal(text)
        except InvalidOperation as exc:
            raise MoneyError(f"{value!r} is not a decimal amount") from exc
    else:
        raise MoneyError("amount must be a decimal string")
    return check_magnitude(result)


def check_magnitude(amount: Decimal) -> Decimal:
    """Refuse what no currency and no amount column can hold (NaN, Infinity, 1E+26, 0.00001)."""
    if not amount.is_finite():
        raise MoneyError("amount must be a finite decimal, not NaN or Infinity")
    if amount != 0 and amount.adjusted() >= MAX_INTEGER_DIGITS:
        raise MoneyError(f"amount has more than {MAX_INTEGER_DIGITS} digits before the decimal point")
    # More than MAX_DECIMALS significant decimals: the amount differs from itself rounded to
    # them (1.50000 does not). quantize is exact here (at most MAX_INTEGER_DIGITS + MAX_DECIMALS
    # digits) and cheaper than as_tuple(), which builds a named tuple per call (a batch of
    # invoices checks every price and product).
    if amount != 0 and amount != amount.quantize(_SMALLEST):
        raise MoneyError(f"amount has more than {MAX_DECIMALS} decimals")
    return amount


def exact_amount(value: Any, currency: str) -> Decimal:
    """Parse and check that the amount fits the currency's minor unit exactly."""
    amount = parse_amount(value)
    q = quantum(currency)
    if amount.quantize(q) != amount:
        raise MoneyError(
            f"{currency} amounts have {minor_unit(currency)} decimals; {value!s} has more"
        )
    return amount.quantize(q)


def to_str(amount: Decimal) -> str:
    return format(amount, "f")


def money_str(amount: Decimal | int | str | None, currency: str) -> str | None:
    """A stored amount (a numeric column, say) as the JSON string at the currency's minor unit."""
    if amount is None:
        return None
    return to_str(quantize(Decimal(amount), currency.strip()))


def allocate(total: Decimal, weights: list[Decimal], currency: str) -> list[Decimal]:
    """Split total in proportion to weights; the parts sum to total exactly."""
    if not weights:
        raise MoneyError("nothing to allocate to")
    weight_sum = sum(weights, ZERO)
    q = quantum(currency)
    if weight_sum == 0:
        raise MoneyError("weights sum to zero")
    parts = [(total * w / weight_sum).quantize(q, rounding="ROUND_DOWN") for w in weights]
    remainder = total - sum(parts, ZERO)
    i = 0
    while remainder > 0:
        parts[i % len(parts)] += q
        remainder -= q
        i += 1
    return parts


def _validate_amount_input(value: Any) -> Decimal:
    # At the boundary amounts are strings: a JSON number (even an integer) is refused, so no
    # client ever learns to send floats.
    if not isinstance(value, (str, Decimal)):
        raise MoneyError("amount must be a decimal string such as \"1234.50\", not a number")
    return parse_amount(value)


# A money amount in an API or event model: accepted only as a decimal string, serialised as one.
# Quantisation to the currency happens where the currency is known (model validators).
Amount = Annotated[
    Decimal,
    BeforeValidator(_validate_amount_input),
    PlainSerializer(to_str, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["1234.50"]}),
]

CurrencyCode = Annotated[
    str,
    BeforeValidator(validate_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["USD"]}),
]
