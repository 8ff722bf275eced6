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


def _verifier_with_key():
    """An OidcClient whose provider metadata and keys are already known (no HTTP), and the
    provider's private key to sign ID tokens with."""
    import time

    from joserfc.jwk import KeySet, RSAKey

    from services.workbench.application.oidc import OidcClient, Provider
    from services.workbench.settings import WorkbenchSettings

    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    client = OidcClient(WorkbenchSettings(oidc_issuer="https://idp.test/realms/ar", oidc_client_id="workbench",
                                          oidc_redirect_base_url="https://wb.test"))
    client._provider = (time.monotonic(), Provider(
        issuer="https://idp.test/realms/ar", authorization_endpoint="https://idp.test/auth",
        token_endpoint="https://idp.test/token", jwks_uri="https://idp.test/certs", algorithms=("RS256",)))
    client._keys = (time.monotonic(), KeySet.import_key_set({"keys": [key.as_dict(private=False)]}))
    return client, key


async def test_an_id_token_is_accepted_only_when_signed_by_the_provider_for_this_client_and_this_sign_in():
    import time

    import pytest
    from joserfc import jwt
    from joserfc.jwk import OctKey, RSAKey

    from services.workbench.application.oidc import OidcError

    client, key = _verifier_with_key()
    now = int(time.time())
    good = {"iss": "https://idp.test/realms/ar", "aud": "workbench", "sub": "u1", "iat": now, "exp": now + 300,
            "nonce": "n-1", "preferred_username": "olga"}

    def signed(claims, signing_key=key, alg="RS256"):
        return jwt.encode({"alg": alg, "kid": "k1"}, claims, signing_key)

    try:
        assert (await client.verify_id_token(signed(good), "n-1"))["preferred_username"] == "olga"
        assert (await client.verify_id_token(signed({**good, "aud": ["workbench", "other"], "azp": "workbench"}),
                                             "n-1"))["sub"] == "u1"
        refused = [
            signed(good),                                                  # another sign-in's nonce (below)
            signed({**good, "aud": "another-client"}),
            signed({**good, "aud": ["workbench", "other"]}),               # several audiences, no azp
            signed({**good, "iss": "https://evil.test/realms/ar"}),
            signed({**good, "exp": now - 3600, "iat": now - 7200}),        # expired
            signed({k: v for k, v in good.items() if k != "nonce"}),
            signed(good, RSAKey.generate_key(2048, parameters={"kid": "k1"})),  # not the provider's key
            signed(good, OctKey.import_key("workbench-client-secret-long-enough-for-hs256"), "HS256"),
            signed(good)[:-4] + "AAAA",                                    # tampered signature
        ]
        nonces = ["n-2"] + ["n-1"] * (len(refused) - 1)
        for token, nonce in zip(refused, nonces):
            with pytest.raises(OidcError):
                await client.verify_id_token(token, nonce)
    finally:
        await client.close()


async def test_signing_out_goes_to_the_providers_end_session_endpoint_only_when_it_has_one():
    import dataclasses
    import time
    from urllib.parse import parse_qs, urlsplit

    client, _ = _verifier_with_key()
    try:
        assert await client.end_session_url("h.p.s") is None  # no end_session_endpoint: sign out here only
        provider = dataclasses.replace(client._provider[1],
                                       end_session_endpoint="https://idp.test/logout?tenant=ar")
        client._provider = (time.monotonic(), provider)
        url = urlsplit(await client.end_session_url("h.p.s"))
        assert (url.scheme, url.netloc, url.path) == ("https", "idp.test", "/logout")
        assert parse_qs(url.query) == {"tenant": ["ar"], "id_token_hint": ["h.p.s"], "client_id": ["workbench"],
                                       "post_logout_redirect_uri": ["https://wb.test/login"]}
    finally:
        await client.close()
