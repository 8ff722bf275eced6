"""ISO 11649 creditor references: published examples, check digits, printed form."""
from __future__ import annotations

import pytest

from shared import creditor_reference as rf


@pytest.mark.parametrize("published", [
    "RF18 5390 0754 7034",  # ISO 11649's example, printed in groups of four
    "RF18539007547034",     # the same in electronic form
    "RF712348231",          # the SEPA credit transfer example (CdtrRefInf/Ref)
])
def test_published_examples_are_valid(published):
    assert rf.is_valid(published)


def test_check_digits_are_computed_as_published():
    assert rf.make("539007547034") == "RF18539007547034"
    assert rf.make("2348231") == "RF712348231"
    assert rf.printed(rf.make("539007547034")) == "RF18 5390 0754 7034"


@pytest.mark.parametrize("bad", [
    "RF19 5390 0754 7034",   # a wrong check digit
    "RF18 5390 0754 7043",   # two characters swapped
    "RF18",                  # no reference
    "RF18 5390-0754",        # punctuation is not part of the alphabet
    "XX18539007547034",
    "RF18" + "1" * 22,       # longer than 21 characters
])
def test_typos_and_malformed_references_are_not_valid(bad):
    assert not rf.is_valid(bad)


def test_letters_count_and_case_and_spaces_do_not_matter():
    ref = rf.make("inv 2024 0001")
    assert ref.startswith("RF") and ref.endswith("INV20240001") and rf.is_valid(ref.lower())
    assert rf.reference_of(rf.printed(ref)) == "INV20240001"
    assert rf.reference_of("RF00INV20240001") is None


def test_a_reference_outside_the_alphabet_or_too_long_is_refused():
    for bad in ("", "INV-2024/0001", "X" * 22):
        with pytest.raises(rf.CreditorReferenceError):
            rf.make(bad)
