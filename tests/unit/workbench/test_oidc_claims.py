"""What the workbench takes from an OpenID provider's ID token claims (pure): the role from a
configured claim and mapping, the language, the user name; and the PKCE challenge (RFC 7636)."""
from __future__ import annotations

from services.workbench.application.oidc import code_challenge
from services.workbench.domain.oidc import (display_name_from_claims, locale_from_claims, role_from_claims,
                                            username_from_claims)

MAPPING = {"ar-collectors": "collector", "ar-managers": "manager", "ar-admins": "admin"}


def test_the_role_comes_from_the_mapped_claim_and_the_widest_role_wins():
    assert role_from_claims({"groups": ["ar-collectors"]}, "groups", MAPPING) == "collector"
    assert role_from_claims({"groups": ["ar-collectors", "ar-managers", "staff"]}, "groups", MAPPING) == "manager"
    assert role_from_claims({"groups": ["/ar/ar-admins"]}, "groups", MAPPING) == "admin"  # a full group path
    assert role_from_claims({"groups": "ar-managers"}, "groups", MAPPING) == "manager"
    # Keycloak's realm roles sit in an object: a dotted path reaches them.
    assert role_from_claims({"realm_access": {"roles": ["offline_access", "ar-collectors"]}}, "realm_access.roles",
                            MAPPING) == "collector"
    # Without a mapping the workbench's role names themselves count.
    assert role_from_claims({"roles": ["dispute_analyst"]}, "roles", {}) == "dispute_analyst"


def test_no_recognised_role_is_no_role():
    assert role_from_claims({"groups": ["sales"]}, "groups", MAPPING) is None
    assert role_from_claims({"groups": ["collector"]}, "groups", MAPPING) is None  # mapped: only the mapping counts
    assert role_from_claims({}, "groups", MAPPING) is None
    assert role_from_claims({"groups": {"ar-admins": True}}, "groups", MAPPING) is None
    assert role_from_claims({"roles": ["root"]}, "roles", {}) is None


def test_language_name_and_display_name_from_the_claims():
    assert [locale_from_claims({"locale": v}) for v in ("fr", "fr-CA", "fr_FR", "EN-gb", "de", "", 3)] == [
        "fr", "fr", "fr", "en", None, None, None]
    assert locale_from_claims({}) is None
    assert username_from_claims({"preferred_username": "Olga"}, "preferred_username") == "olga"
    assert username_from_claims({"preferred_username": "olga@example.com"}, "preferred_username") is None
    assert username_from_claims({"upn": {"x": 1}}, "upn") is None
    assert display_name_from_claims({"name": "Olga Recouvreur"}, "olga") == "Olga Recouvreur"
    assert display_name_from_claims({"given_name": "Olga", "family_name": "R"}, "olga") == "Olga R"
    assert display_name_from_claims({}, "olga") == "olga"


def test_the_pkce_challenge_is_rfc_7636s():
    # RFC 7636, appendix B.
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
