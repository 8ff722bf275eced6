"""A seeded generator of an AR portfolio and a bank file of receipts with the noise real files
have, the true answer kept aside.

Portfolio: customers with company names and open invoices numbered INV-nnnnnnn (sequential, so
almost every number has other real invoices one edit away), amounts spread over 50 to 25,000.
Receipts, by kind (shares in KINDS):
- exact: the invoice number in the bank's free text, as printed;
- noisy_reference: one typo (substitution, transposition, deletion, insertion) or extra
  characters (INV0100001/1, #100001, inv 100001., 0100001X);
- no_reference: the payer's name and the amount, nothing else (text that names no invoice);
- amount_only: no text at all, only the amount and the payer's name as the bank shows it (upper
  case, another legal form, a dropped letter);
- multi_remittance: one payment, several invoices, a remittance line (reference + amount) each,
  as lockbox rows or EDI 820 RMR segments;
- multi_text: one payment, several invoice numbers in its free text;
- multi_no_reference: one payment for a customer's oldest open invoices, no reference at all;
- short_with_reason: a remittance line paying less than the invoice, with an adjustment code;
- short_without_reason: the invoice number in the text, the amount well short of it;
- within_tolerance: the invoice number, a few units short (a bank charge): written off;
- overpayment: the invoice number, more than its balance;
- other_name: the payer's name has nothing to do with the customer master (a parent company, a
  factor), the invoice number is in the text;
- unidentifiable: an unknown payer, no reference, an amount matching nothing;
- recurring_amount: a subscription customer (one in ten bills the same fee again and again)
  pays its oldest fee invoice by name and amount only; several open invoices have that amount,
  so the right answer is to refuse and ask a person (it counts as a miss, never as a hit).
Payer names differ from the customer master in a share of every kind (case, legal form,
punctuation, a typo). Every receipt's truth is the list of (invoice_id, amount applied).
"""
from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

_WORDS_A = ("Blue", "North", "Summit", "Pioneer", "Atlas", "Cedar", "Granite", "Harbor", "Iron", "Lakeside", "Maple",
            "Oak", "Pacific", "Quantum", "Redwood", "Silver", "Sterling", "Titan", "United", "Vertex", "Western",
            "Apex", "Bright", "Coastal", "Delta", "Eagle", "Falcon", "Golden", "Highland", "Imperial", "Juniper",
            "Keystone", "Liberty", "Meridian", "Nova", "Orion", "Prairie", "Royal", "Sierra", "Trident")
_WORDS_B = ("River", "Stone", "Ridge", "Valley", "Bridge", "Crest", "Field", "Forge", "Gate", "Hill", "Point",
            "Star", "Wave", "Wind", "Wood", "Peak", "Bay", "Creek", "Dale", "Harvest", "Lantern", "Mill", "Park",
            "Rock", "Shore", "Spring", "Tower", "Vista", "Works", "Yard")
_WORDS_C = ("Logistics", "Foods", "Industries", "Manufacturing", "Retail", "Supply", "Systems", "Trading", "Partners",
            "Holdings", "Electronics", "Textiles", "Pharma", "Motors", "Media", "Energy", "Construction", "Farms",
            "Healthcare", "Software", "Chemicals", "Packaging", "Distribution", "Services", "Outfitters")
_LEGAL = ("Inc", "LLC", "Ltd", "Corp", "Co", "GmbH", "PLC")
_OTHER_PAYERS = ("First Factoring Capital", "Global Payables Services", "Parent Holdings Treasury",
                 "Shared Services Centre", "AP Outsourcing Partners", "Regional Finance Hub")
_REASONS = ("DAMAGED", "PRICING", "SHORTAGE", "CM", "01", "04", "PROMO")

KINDS = {
    "exact": 0.36, "noisy_reference": 0.10, "no_reference": 0.07, "amount_only": 0.04, "multi_remittance": 0.08,
    "multi_text": 0.05, "multi_no_reference": 0.04, "short_with_reason": 0.05, "short_without_reason": 0.03,
    "within_tolerance": 0.04, "overpayment": 0.04, "other_name": 0.06, "unidentifiable": 0.04,
    "recurring_amount": 0.02,
}


@dataclass
class Customer:
    customer_id: str
    name: str


@dataclass
class Invoice:
    invoice_id: str
    invoice_number: str
    customer_id: str
    amount: Decimal
    due_date: date


@dataclass
class Receipt:
    receipt_id: str
    kind: str
    amount: Decimal
    payer_name: str
    text: str = ""
    lines: list[tuple[str, Decimal, str]] = field(default_factory=list)  # remittance: (reference, paid, reason)
    truth: list[tuple[str, Decimal]] = field(default_factory=list)  # (invoice_id, amount applied)


@dataclass
class Portfolio:
    customers: list[Customer]
    invoices: list[Invoice]
    receipts: list[Receipt]
    value_date: date

    def csv(self) -> str:
        """The receipts as a lockbox/bank CSV in Ledgerline's default column mapping."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["receipt_id", "value_date", "amount", "currency", "payer_name", "invoice_reference",
                         "reason_code", "text"])
        day = self.value_date.isoformat()
        for r in self.receipts:
            if r.lines:
                for reference, paid, reason in r.lines:
                    writer.writerow([r.receipt_id, day, f"{paid:.2f}", "USD", r.payer_name, reference, reason, ""])
            else:
                writer.writerow([r.receipt_id, day, f"{r.amount:.2f}", "USD", r.payer_name, "", "", r.text])
        return out.getvalue()


def _company_names(rng: random.Random, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        names.add(f"{rng.choice(_WORDS_A)} {rng.choice(_WORDS_B)} {rng.choice(_WORDS_C)}")
    ordered = sorted(names)
    rng.shuffle(ordered)
    return [f"{name} {rng.choice(_LEGAL)}" for name in ordered]


def _payer_variant(rng: random.Random, name: str) -> str:
    """How a bank shows the customer's name: case, legal form, punctuation, sometimes a typo."""
    base = name.rsplit(" ", 1)[0]
    choice = rng.random()
    if choice < 0.3:
        return name.upper()
    if choice < 0.55:
        return f"{base} {rng.choice(_LEGAL)}.".upper()
    if choice < 0.75:
        return base.replace(" ", ", ", 1)
    if choice < 0.9:
        i = rng.randrange(1, len(base) - 1)
        return (base[:i] + base[i + 1:]).upper()  # a dropped letter
    return base


def _noisy(rng: random.Random, number: str) -> str:
    digits = number.split("-", 1)[1]
    choice = rng.randrange(8)
    if choice == 0:  # substitution
        i = rng.randrange(len(digits))
        return "INV-" + digits[:i] + str((int(digits[i]) + rng.randrange(1, 10)) % 10) + digits[i + 1:]
    if choice == 1:  # transposition
        i = rng.randrange(len(digits) - 1)
        return "INV-" + digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]
    if choice == 2:  # deletion
        i = rng.randrange(1, len(digits))
        return "INV" + digits[:i] + digits[i + 1:]
    if choice == 3:  # insertion
        i = rng.randrange(len(digits))
        return digits[:i] + str(rng.randrange(10)) + digits[i:]
    return rng.choice([f"INV{digits}/1", f"#{digits.lstrip('0')}", f"inv {digits.lstrip('0')}.", f"{digits}X",
                       f"Invoice No. {digits}"])


def generate(seed: int = 7, invoices: int = 50_000, receipts: int = 10_000, customers: int | None = None) -> Portfolio:
    rng = random.Random(seed)
    customers = customers or max(20, invoices // 20)
    names = _company_names(rng, customers)
    people = [Customer(f"C{n:05d}", names[n]) for n in range(customers)]
    today = date(2024, 6, 30)
    all_invoices: list[Invoice] = []
    fees = {c.customer_id: Decimal(rng.randrange(5000, 500000)).scaleb(-2) for c in people[::10]}
    by_customer: dict[str, list[Invoice]] = {c.customer_id: [] for c in people}
    seq = 100000
    for n in range(invoices):
        customer = people[n % customers] if n < customers else rng.choice(people)
        seq += 1
        amount = Decimal(int(10 ** rng.uniform(3.7, 6.4))).scaleb(-2)  # 50.12 .. 25,118.86
        if customer.customer_id in fees and rng.random() < 0.5:
            amount = fees[customer.customer_id]
        invoice = Invoice(f"inv-{seq}", f"INV-{seq:07d}", customer.customer_id, amount,
                          today - timedelta(days=rng.randrange(0, 120)))
        all_invoices.append(invoice)
        by_customer[customer.customer_id].append(invoice)
    for items in by_customer.values():
        items.sort(key=lambda i: (i.due_date, i.invoice_id))
    # Customers whose receipts carry no reference are kept apart, so the oldest-first and
    # amount answers are not disturbed by other receipts of the same customer.
    order = list(people)
    rng.shuffle(order)
    fee_customers = [c for c in order if c.customer_id in fees]
    no_ref_customers = [c for c in order[: customers // 4] if c.customer_id not in fees]
    ref_customers = order[customers // 4:]
    used: set[str] = set()
    name_of = {c.customer_id: c.name for c in people}
    out: list[Receipt] = []
    kinds = list(KINDS)
    weights = [KINDS[k] for k in kinds]

    def unused(customer: Customer, k: int = 1) -> list[Invoice] | None:
        free = [i for i in by_customer[customer.customer_id] if i.invoice_id not in used]
        if len(free) < k:
            return None
        picked = rng.sample(free, k)
        used.update(i.invoice_id for i in picked)
        return picked

    def payer(customer_id: str) -> str:
        return _payer_variant(rng, name_of[customer_id]) if rng.random() < 0.6 else name_of[customer_id]

    no_ref_cursor = fee_cursor = 0
    while len(out) < receipts:
        kind = rng.choices(kinds, weights)[0]
        rid = f"R{len(out) + 1:06d}"
        if kind == "recurring_amount":
            if fee_cursor >= len(fee_customers):
                continue
            customer = fee_customers[fee_cursor]
            fee_cursor += 1
            fee = fees[customer.customer_id]
            same = [i for i in by_customer[customer.customer_id] if i.amount == fee and i.invoice_id not in used]
            if len(same) < 2:
                continue
            used.add(same[0].invoice_id)
            out.append(Receipt(rid, kind, fee, payer(customer.customer_id), text="MONTHLY FEE",
                               truth=[(same[0].invoice_id, fee)]))
            continue
        if kind in ("no_reference", "amount_only", "multi_no_reference"):
            if no_ref_cursor >= len(no_ref_customers):
                continue
            customer = no_ref_customers[no_ref_cursor]
            no_ref_cursor += 1
            invoices_of = by_customer[customer.customer_id]
            if kind == "multi_no_reference":
                k = rng.randrange(2, 4)
                if len(invoices_of) < k:
                    continue
                chosen = invoices_of[:k]
            else:
                if not invoices_of:
                    continue
                chosen = [rng.choice(invoices_of)]
                if sum(1 for i in invoices_of if i.amount == chosen[0].amount) > 1:
                    continue
            used.update(i.invoice_id for i in chosen)
            total = sum((i.amount for i in chosen), Decimal(0))
            text = rng.choice(["PAYMENT THANK YOU", "ACH CREDIT", "REMITTANCE", ""]) if kind != "amount_only" else ""
            name = _payer_variant(rng, customer.name) if kind == "amount_only" else payer(customer.customer_id)
            out.append(Receipt(rid, kind, total, name, text=text, truth=[(i.invoice_id, i.amount) for i in chosen]))
            continue
        if kind == "unidentifiable":
            amount = Decimal(rng.randrange(1000, 500000)).scaleb(-2)
            out.append(Receipt(rid, kind, amount, f"Unknown Payer {rng.randrange(10**6)}",
                               text=rng.choice(["", "PAYMENT", "TRANSFER REF 77"])))
            continue
        customer = rng.choice(ref_customers)
        if kind in ("multi_remittance", "multi_text"):
            picked = unused(customer, rng.randrange(2, 5))
            if picked is None:
                continue
            total = sum((i.amount for i in picked), Decimal(0))
            if kind == "multi_remittance":
                out.append(Receipt(rid, kind, total, payer(customer.customer_id),
                                   lines=[(i.invoice_number if rng.random() < 0.7 else i.invoice_number.replace("-", ""),
                                           i.amount, "") for i in picked],
                                   truth=[(i.invoice_id, i.amount) for i in picked]))
            else:
                text = " ".join(i.invoice_number if rng.random() < 0.8 else i.invoice_number.replace("INV-", "")
                                for i in picked)
                out.append(Receipt(rid, kind, total, payer(customer.customer_id), text=f"INVOICES {text}",
                                   truth=[(i.invoice_id, i.amount) for i in picked]))
            continue
        picked = unused(customer)
        if picked is None:
            continue
        invoice = picked[0]
        name = payer(customer.customer_id)
        if kind == "exact":
            out.append(Receipt(rid, kind, invoice.amount, name, text=invoice.invoice_number,
                               truth=[(invoice.invoice_id, invoice.amount)]))
        elif kind == "noisy_reference":
            out.append(Receipt(rid, kind, invoice.amount, name, text=_noisy(rng, invoice.invoice_number),
                               truth=[(invoice.invoice_id, invoice.amount)]))
        elif kind == "short_with_reason":
            short = max(Decimal("10.00"), (invoice.amount * Decimal(rng.uniform(0.03, 0.3))).quantize(Decimal("0.01")))
            if short >= invoice.amount:
                continue
            paid = invoice.amount - short
            out.append(Receipt(rid, kind, paid, name, lines=[(invoice.invoice_number, paid, rng.choice(_REASONS))],
                               truth=[(invoice.invoice_id, paid)]))
        elif kind == "short_without_reason":
            short = max(Decimal("10.00"), (invoice.amount * Decimal(rng.uniform(0.03, 0.3))).quantize(Decimal("0.01")))
            if short >= invoice.amount:
                continue
            paid = invoice.amount - short
            out.append(Receipt(rid, kind, paid, name, text=invoice.invoice_number, truth=[(invoice.invoice_id, paid)]))
        elif kind == "within_tolerance":
            fee = min(Decimal(rng.randrange(1, 500)).scaleb(-2), (invoice.amount / 100).quantize(Decimal("0.01")))
            if fee <= 0:
                continue
            paid = invoice.amount - fee
            out.append(Receipt(rid, kind, paid, name, text=invoice.invoice_number, truth=[(invoice.invoice_id, paid)]))
        elif kind == "overpayment":
            extra = Decimal(rng.randrange(100, 50000)).scaleb(-2)
            out.append(Receipt(rid, kind, invoice.amount + extra, name, text=invoice.invoice_number,
                               truth=[(invoice.invoice_id, invoice.amount)]))
        elif kind == "other_name":
            out.append(Receipt(rid, kind, invoice.amount, rng.choice(_OTHER_PAYERS),
                               text=f"ON BEHALF OF CLIENT {invoice.invoice_number}",
                               truth=[(invoice.invoice_id, invoice.amount)]))
    return Portfolio(people, all_invoices, out, today)


@dataclass
class Score:
    receipts: int
    truth_pairs: int
    applied_pairs: int
    correct_pairs: int
    envelopes: int
    envelopes_correct: int
    by_kind: dict[str, tuple[int, int]]  # kind -> (truth pairs, correctly auto-applied)

    @property
    def invoice_rate(self) -> float:
        return self.correct_pairs / self.truth_pairs if self.truth_pairs else 0.0

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.applied_pairs if self.applied_pairs else 1.0

    @property
    def envelope_rate(self) -> float:
        return self.envelopes_correct / self.envelopes if self.envelopes else 0.0


def score(receipts: list[Receipt], applied: list[list[tuple[str, Decimal]]]) -> Score:
    """Compare what was auto-applied per receipt with the truth. An application is correct when
    it names a true invoice with the true amount; a receipt (envelope) is right when all its
    applications are and none is missing (an unidentifiable one: when nothing was applied)."""
    truth_pairs = applied_pairs = correct = envelopes_correct = 0
    by_kind: dict[str, list[int]] = {}
    for receipt, made in zip(receipts, applied):
        truth = set(receipt.truth)
        made_set = set(made)
        hits = len(truth & made_set)
        truth_pairs += len(truth)
        applied_pairs += len(made)
        correct += hits
        counts = by_kind.setdefault(receipt.kind, [0, 0])
        counts[0] += len(truth)
        counts[1] += hits
        if made_set == truth:
            envelopes_correct += 1
    return Score(len(receipts), truth_pairs, applied_pairs, correct, len(receipts), envelopes_correct,
                 {k: (v[0], v[1]) for k, v in by_kind.items()})
