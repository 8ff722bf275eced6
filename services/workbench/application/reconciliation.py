"""The daily cash reconciliation as the workbench shows it: the bank accounts the latest imports'
statements name, and cash application's reconciliation of a day per account."""
from __future__ import annotations

from typing import Any

from services.workbench.adapters.backends import Backends


async def bank_accounts(backends: Backends, actor: str) -> list[str]:
    """The bank accounts of the latest 200 imports' statements (the page's choices)."""
    body = await backends.get("cash_application", "/v1/bank-files", actor, limit=200)
    seen: dict[str, None] = {}
    for imp in body.get("data", []):
        for s in imp.get("statements") or []:
            if s.get("account"):
                seen.setdefault(str(s["account"]), None)
    return sorted(seen)


async def day(backends: Backends, actor: str, on: str, currency: str, account: str | None
              ) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """(accounts, one reconciliation per account shown, the day's reconciliation over every receipt)."""
    accounts = await bank_accounts(backends, actor)
    per_account = [await backends.get("cash_application", "/v1/reconciliation", actor, date=on, currency=currency,
                                      account=a) for a in ([account] if account else accounts)]
    overall = await backends.get("cash_application", "/v1/reconciliation", actor, date=on, currency=currency)
    return accounts, per_account, overall
