"""Public event schemas of every Ledgerline context, in one place, versioned.

Producers build these models and store `to_payload()`; consumers call `registry.parse()` with
the event type and schema version from the message headers (upcasting older versions)."""
from shared.contracts import cash_application, collections, disputes, invoicing  # noqa: F401
from shared.contracts.base import (
    ContractRegistry,
    EventContract,
    NewerSchemaVersion,
    UnknownEvent,
    registry,
    topic_for,
)
from shared.contracts.cash_application import (
    BankStatementImported,
    PaymentApplied,
    PaymentReceived,
    PaymentRefunded,
    PaymentReturned,
    PaymentUnapplied,
    ShortPayDetected,
    SmallBalanceWriteOffReversed,
    SmallBalanceWrittenOff,
    UnappliedCashRecorded,
)
from shared.contracts.collections import (
    AccountEscalated,
    CallTaskCreated,
    CollectorAssigned,
    CreditHoldPlaced,
    CreditHoldReleased,
    CustomerSegmented,
    DunningActionBlocked,
    DunningNoticeSent,
    Installment,
    InstallmentMissed,
    InstallmentPaid,
    PaymentPlanAgreed,
    PaymentPlanBroken,
    PaymentPlanCompleted,
    PromiseBroken,
    PromiseKept,
    PromiseToPayMade,
    WriteOffApproved,
    WriteOffRejected,
    WriteOffRequested,
)
from shared.contracts.disputes import (
    DeductionCodesMapped,
    DeductionOpened,
    DisputeAssigned,
    DisputeAttachmentAdded,
    DisputeEscalated,
    DisputeNoteAdded,
    DisputeOpened,
    DisputeReclassified,
    DisputeResolved,
    DisputeStatusChanged,
    ReasonCodeMapping,
)
from shared.contracts.invoicing import (
    BillingAddress,
    BillingContact,
    CreditMemoIssued,
    CreditMemoLine,
    CustomerProfileChanged,
    CustomerRegistered,
    InvoiceAdjusted,
    InvoiceAdjustmentRejected,
    InvoiceAdjustmentRequested,
    InvoiceIssued,
    InvoiceLine,
    InvoiceVoided,
)

__all__ = [
    "ContractRegistry", "EventContract", "NewerSchemaVersion", "UnknownEvent", "registry", "topic_for",
    "CustomerRegistered", "InvoiceIssued", "InvoiceLine", "CreditMemoIssued", "CreditMemoLine",
    "InvoiceAdjustmentRequested", "InvoiceAdjustmentRejected", "InvoiceAdjusted", "InvoiceVoided",
    "CustomerProfileChanged", "BillingContact", "BillingAddress",
    "PaymentReceived", "PaymentApplied", "ShortPayDetected", "UnappliedCashRecorded",
    "PaymentUnapplied", "PaymentReturned", "PaymentRefunded", "SmallBalanceWrittenOff", "SmallBalanceWriteOffReversed",
    "BankStatementImported",
    "DisputeOpened", "DeductionOpened", "DisputeResolved", "DisputeReclassified", "DisputeAssigned",
    "DeductionCodesMapped", "ReasonCodeMapping", "DisputeStatusChanged", "DisputeNoteAdded",
    "DisputeAttachmentAdded", "DisputeEscalated",
    "PromiseToPayMade", "PromiseKept", "PromiseBroken",
    "PaymentPlanAgreed", "Installment", "InstallmentPaid", "InstallmentMissed", "PaymentPlanCompleted",
    "PaymentPlanBroken", "CollectorAssigned", "CustomerSegmented", "DunningNoticeSent", "CallTaskCreated",
    "DunningActionBlocked", "AccountEscalated", "CreditHoldPlaced", "CreditHoldReleased",
    "WriteOffRequested", "WriteOffApproved", "WriteOffRejected",
]
