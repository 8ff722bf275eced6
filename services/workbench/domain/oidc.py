"""Who an OpenID Connect ID token says the person is, in the workbench's terms (pure; no I/O):
the name they work under, their display name, their language and their role, from the claims the
provider signed. No recognised role: no role (the sign-in is refused)."""
from __future__ import annotations

from typing import Any, Mapping

from services.workbench.domain.roles import ROLES
from services.workbench.domain.users import USERNAME

# When a person is in several mapped groups, the role with the widest view wins.
PRECEDENCE = ("admin", "manager", "dispute_analyst", "cash_applier", "collector")


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (Keycloak's realm_access.roles)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claimed_values(claims: Mapping[str, Any], path: str) -> list[str]:
    """The claim's values as strings: a list, a single string, or a space-separated string."""
    value = claim(claims, path)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if isinstance(v, (str, int))]
    return []


def role_from_claims(claims: Mapping[str, Any], path: str, mapping: Mapping[str, str]) -> str | None:
    """The workbench role the claim's values map to (the mapping, else the role names themselves,
    a group path's last part included: "/ar/manager" is manager); None when none is recognised."""
    found = set()
    for value in claimed_values(claims, path):
        for candidate in (value, value.rsplit("/", 1)[-1]):
            role = mapping.get(candidate) if mapping else candidate
            if role in ROLES:
                found.add(role)
    return next((r for r in PRECEDENCE if r in found), None)


def locale_from_claims(claims: Mapping[str, Any]) -> str | None:
    """en or fr from the `locale` claim (a BCP 47 tag: fr-CA is fr); None when absent or other."""
    value = claims.get("locale")
    if not isinstance(value, str) or not value:
        return None
    language = value.replace("_", "-").split("-", 1)[0].lower()
    return language if language in ("en", "fr") else None


def username_from_claims(claims: Mapping[str, Any], username_claim: str) -> str | None:
    """The name the person works under (the events' actor): the configured claim, lower case,
    when it is a workbench user name; None otherwise (the sign-in is refused)."""
    value = claim(claims, username_claim)
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if USERNAME.match(value) else None


def display_name_from_claims(claims: Mapping[str, Any], username: str) -> str:
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        parts = [claims.get("given_name"), claims.get("family_name")]
        name = " ".join(p for p in parts if isinstance(p, str) and p.strip())
    return (name.strip() or username)[:120]
