from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.money import Amount, CurrencyCode, MoneyError, allocate, exact_amount, minor_unit, parse_amount, quantize


def test_minor_units_follow_iso_4217():
    assert minor_unit("USD") == 2
    assert minor_unit("jpy") == 0
    assert minor_unit("BHD") == 3
    with pytest.raises(MoneyError):
        minor_unit("XYZ")
    with pytest.raises(MoneyError):
        minor_unit("XAU")  # no minor unit: not an invoice currency


def test_floats_are_refused_everywhere():
    with pytest.raises(MoneyError):
        parse_amount(10.1)
    with pytest.raises(MoneyError):
        quantize(10.1, "USD")  # type: ignore[arg-type]

    class M(BaseModel):
        amount: Amount

    with pytest.raises(ValidationError):
        M(amount=10.5)
    assert M(amount="10.50").model_dump(mode="json") == {"amount": "10.50"}


def test_exact_amount_rejects_extra_decimals_instead_of_rounding():
    assert exact_amount("10.5", "USD") == Decimal("10.50")
    with pytest.raises(MoneyError):
        exact_amount("10.005", "USD")
    with pytest.raises(MoneyError):
        exact_amount("1.5", "JPY")
    assert exact_amount("1.005", "BHD") == Decimal("1.005")


def test_quantize_rounds_half_up():
    assert quantize(Decimal("0.125"), "USD") == Decimal("0.13")
    assert quantize(Decimal("-0.125"), "USD") == Decimal("-0.13")
    assert quantize(Decimal("2.5"), "JPY") == Decimal("3")


def test_currency_code_validation():
    class M(BaseModel):
        currency: CurrencyCode

    assert M(currency="eur").currency == "EUR"
    with pytest.raises(ValidationError):
        M(currency="EURO")


@given(st.integers(min_value=0, max_value=10**9), st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=12))
def test_allocation_sums_to_the_whole(cents, weights):
    total = Decimal(cents).scaleb(-2)
    parts = allocate(total, [Decimal(w) for w in weights], "USD")
    assert sum(parts) == total
    assert all(p == p.quantize(Decimal("0.01")) for p in parts)
    assert max(parts) - min(parts) <= total  # sanity: no negative part
    assert all(p >= 0 for p in parts)


def test_json_numbers_are_refused_even_integers():
    class M(BaseModel):
        amount: Amount

    with pytest.raises(ValidationError):
        M.model_validate_json('{"amount": 10}')
    assert M.model_validate_json('{"amount": "10"}').amount == Decimal("10")


@pytest.mark.parametrize("text", ["1E+26", "1000000000000000", "-1000000000000000.00", "NaN", "sNaN", "Infinity",
                                  "-Infinity", "0.00001", "1.23456"])
def test_amounts_no_currency_or_column_can_hold_are_refused(text):
    with pytest.raises(MoneyError):
        parse_amount(text)


@pytest.mark.parametrize("text", ["999999999999999.9999", "-999999999999999.99", "0", "10.5000000", "0.0001"])
def test_the_largest_and_finest_amounts_a_column_holds_pass(text):
    assert parse_amount(text) == Decimal(text)
