"""Who may do what in the workbench: the roles and their permissions (pure; no I/O).

Every page and every action names one permission; a role holds a set of them. The templates
show a button only when the user's role holds its permission, and the route refuses with 403
when it does not (so a hand-made request gets no further than a hidden button)."""
from __future__ import annotations

from enum import Enum

ROLES = ("collector", "cash_applier", "dispute_analyst", "manager", "admin")


class Permission(str, Enum):
    VIEW_WORKLIST = "view_worklist"
    VIEW_ANY_WORKLIST = "view_any_worklist"      # choose whose worklist (managers)
    VIEW_ACCOUNT = "view_account"
    LOG_CONTACT = "log_contact"
    RECORD_PROMISE = "record_promise"
    OPEN_DISPUTE = "open_dispute"
    REQUEST_WRITE_OFF = "request_write_off"
    SET_UP_PLAN = "set_up_plan"                  # payment plans with installments
    CHANGE_STRATEGY = "change_strategy"          # pause or move the account's dunning strategy
    ESCALATE = "escalate"
    SEND_STATEMENT = "send_statement"            # invoicing delivers it by the customer's preference
    VIEW_UNAPPLIED = "view_unapplied"
    APPLY_CASH = "apply_cash"                    # apply, split, re-apply and reverse
    RETURN_PAYMENT = "return_payment"            # the bank took a payment back
    UPLOAD_BANK_FILE = "upload_bank_file"
    VIEW_DISPUTES = "view_disputes"
    RESOLVE_DISPUTE = "resolve_dispute"
    WORK_DISPUTE = "work_dispute"                # reassign, notes, status, attachments
    APPROVE_WRITE_OFF = "approve_write_off"
    VIEW_MANAGER = "view_manager"
    EXPORT = "export"
    MANAGE_USERS = "manage_users"


P = Permission
_COLLECTOR = {P.VIEW_WORKLIST, P.VIEW_ACCOUNT, P.LOG_CONTACT, P.RECORD_PROMISE, P.OPEN_DISPUTE, P.REQUEST_WRITE_OFF,
              P.EXPORT, P.SET_UP_PLAN, P.CHANGE_STRATEGY, P.ESCALATE, P.SEND_STATEMENT}
_CASH = {P.VIEW_ACCOUNT, P.VIEW_UNAPPLIED, P.APPLY_CASH, P.RETURN_PAYMENT, P.UPLOAD_BANK_FILE, P.EXPORT}
_DISPUTES = {P.VIEW_ACCOUNT, P.VIEW_DISPUTES, P.RESOLVE_DISPUTE, P.WORK_DISPUTE, P.OPEN_DISPUTE, P.EXPORT}
# The manager oversees (every worklist, queue and approval) but does not work the accounts.
_MANAGER = {P.VIEW_WORKLIST, P.VIEW_ANY_WORKLIST, P.VIEW_ACCOUNT, P.VIEW_UNAPPLIED, P.VIEW_DISPUTES,
            P.APPROVE_WRITE_OFF, P.VIEW_MANAGER, P.EXPORT}

PERMISSIONS: dict[str, frozenset[Permission]] = {
    "collector": frozenset(_COLLECTOR),
    "cash_applier": frozenset(_CASH),
    "dispute_analyst": frozenset(_DISPUTES),
    "manager": frozenset(_MANAGER),
    "admin": frozenset(Permission),
}


def may(role: str, permission: Permission) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def home_path(role: str) -> str:
    """Where a role lands after logging in: its day's work."""
    return {"collector": "/worklist", "cash_applier": "/cash", "dispute_analyst": "/disputes",
            "manager": "/manager", "admin": "/worklist"}.get(role, "/worklist")
