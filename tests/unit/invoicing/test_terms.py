from datetime import date

import pytest

from services.invoicing.domain.terms import PaymentTerms, UnknownTerms


@pytest.mark.parametrize("code, issued, due", [
    ("NET30", date(2024, 1, 15), date(2024, 2, 14)),
    ("net 45", date(2024, 1, 15), date(2024, 2, 29)),       # leap year
    ("DUE_ON_RECEIPT", date(2024, 3, 1), date(2024, 3, 1)),
    ("NET30_EOM", date(2024, 1, 15), date(2024, 3, 1)),     # Jan 31 + 30 days
    ("NET0_EOM", date(2023, 2, 3), date(2023, 2, 28)),
])
def test_due_dates(code, issued, due):
    assert PaymentTerms.parse(code).due_date(issued) == due


def test_codes_round_trip_and_unknown_terms_are_refused():
    assert PaymentTerms.parse("net30_eom").code == "NET30_EOM"
    assert PaymentTerms(0).code == "DUE_ON_RECEIPT"
    for bad in ("2/10 NET30", "NET", "NET400", "weekly"):
        with pytest.raises(UnknownTerms):
            PaymentTerms.parse(bad)
