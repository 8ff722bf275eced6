"""The matching engine: which customer paid, which invoices a receipt pays, and how sure we are.

Pure code, no I/O: the caller hands in the open items, the customer master and the aliases
learned from manual decisions, and gets back a MatchResult per receipt. Every proposed
application names the rule that made it and a confidence (0-1); only results at or above the
policy's threshold are applied automatically, the rest go to the unapplied-cash queue with ranked
suggestions. Precision comes first: an ambiguous answer (two invoices one edit away, two
combinations that sum to the amount, a name close to two customers) is refused, not guessed.

Rules, strongest first (docs/cash-application.md has the table):
- creditor_reference: an ISO 11649 RF reference with valid check digits (printed in groups of
  four or compact, in a remittance line or free text) whose reference is an invoice number;
- remittance_exact: a structured remittance line names the invoice number exactly;
- reference_exact: the bank's free text or reference field holds the invoice number as printed;
- reference_normalised: a reference equals an invoice number once case, punctuation, prefixes
  (INV, INVOICE, NO, #) and leading zeros are set aside;
- reference_fuzzy: one edit (insertion, deletion, substitution, transposition) from exactly one
  open invoice of the identified customer, and the amount agrees;
- amount_exact: the identified customer has exactly one open invoice of the receipt's amount;
- combination: the customer's open invoices, oldest first, or a unique bounded subset of them,
  add up to the amount exactly.

Account hierarchies: a parent account pays for its children (a head office for its stores). A
receipt identified as the parent's is matched against the whole family's open invoices (the
parent's and every descendant's), and a reference naming a child's invoice counts as the
payer's own; each application names the invoice's customer.
"""
from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Iterable, Sequence

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

try:  # rapidfuzz's many-against-many scorer, without the numpy wrapper its public cdist adds
    from rapidfuzz.process_cpp_impl import UINT8 as _UINT8, cdist as _cdist
except ImportError:  # pragma: no cover - a build without the C++ extension: names are scored one by one
    _cdist = None

from shared import creditor_reference
from shared.money import minor_unit

from services.cash_application.domain.receipts import RemittanceItem

RULE_CREDITOR_REFERENCE = "creditor_reference"
RULE_REMITTANCE_EXACT = "remittance_exact"
RULE_REFERENCE_EXACT = "reference_exact"
RULE_REFERENCE_NORMALISED = "reference_normalised"
RULE_REFERENCE_FUZZY = "reference_fuzzy"
RULE_AMOUNT_EXACT = "amount_exact"
RULE_COMBINATION = "combination"
RULE_MANUAL = "manual"

_PREFIXES = ("INVOICES", "INVOICE", "INVOIC", "INVNO", "INV", "NR", "NO", "RE")
_PREFIX_WORDS = {"INV", "INVOICE", "INVOICES", "NO", "NR", "NUMBER", "#", "INV#", "REF", "RE"}
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN_SPLIT = re.compile(r"[\s,;]+")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]")
_SCORE_BYTES = [bytes([n]) for n in range(256)]
_RF_HEAD = re.compile(r"^RF\d{2}[0-9A-Z]")
_DIGIT = re.compile(r"[0-9]")
_AMOUNT_LIKE = re.compile(r"^[-+]?\d{1,3}([.,]\d{3})*[.,]\d{2}$|^\d+[.,]\d{2}$")
_DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}$")
_LEGAL_SUFFIXES = {"INC", "LLC", "LTD", "LIMITED", "CORP", "CORPORATION", "CO", "COMPANY", "GMBH", "SA", "AG",
                   "PLC", "BV", "NV", "SARL", "SAS", "SPA", "SRL", "AB", "AS", "OY", "KG", "PTY", "THE", "AND"}


@functools.lru_cache(maxsize=1 << 15)  # pure; one receipt's references are normalised in several passes
def normalise_reference(reference: str) -> str:
    """The comparable form of an invoice reference: upper case, letters and digits only, a
    leading INV/INVOICE/NO/# prefix dropped, leading zeros of a number dropped.

    "INV-001001", "inv 1001", "#1001" and "Invoice No. 1001" all become "1001". Only ASCII
    letters are upper-cased (others are dropped as punctuation is), so PostgreSQL computes the same
    key (cash_reference_key, migration 0011) and open items can be found by it through an index."""
    key = _NOT_ALNUM.sub("", reference.translate(_ASCII_UPPER))
    if _RF_HEAD.match(key):  # ISO 11649 creditor reference: RF, check digits, the reference
        key = key[4:]
    for _ in range(2):  # "Invoice No. 1001": two prefix words
        for prefix in _PREFIXES:
            if key.startswith(prefix) and _DIGIT.search(key, len(prefix)):  # the key is ASCII [0-9A-Z] here
                key = key[len(prefix):]
                break
    if key.isdigit():
        key = key.lstrip("0") or "0"
    return key


def normalise_name(name: str) -> str:
    """A payer or customer name without case, punctuation or legal-form words."""
    words = re.sub(r"[^0-9A-Z ]", " ", name.upper().replace("&", " AND ")).split()
    kept = [w for w in words if w not in _LEGAL_SUFFIXES]
    return " ".join(kept or words)


_RF_WORD = re.compile(r"^RF\d{2}", re.IGNORECASE)


def creditor_references(text: str) -> tuple[list[str], str]:
    """ISO 11649 references in free text, printed in groups of four or compact (the longest run
    of words after "RFnn" whose check digits hold), and the text without them."""
    words = (text or "").split()
    found: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(words):
        end = None
        if _RF_WORD.match(words[i]):
            candidate = ""
            for j in range(i, min(i + 7, len(words))):
                candidate += words[j].strip(".,;:()[]")
                if len(candidate) > 25:
                    break
                if creditor_reference.is_valid(candidate):
                    end, best = j, candidate.upper()
        if end is None:
            rest.append(words[i])
            i += 1
        else:
            found.append(best)
            i = end + 1
    return found, " ".join(rest)


def reference_tokens(text: str) -> list[str]:
    """Words of free remittance text that can be invoice references (a digit, not an amount or a
    date); a bare prefix word ("INV 1001", "No. 1001") is joined to the word after it."""
    tokens = [t.strip(".:()[]") for t in _TOKEN_SPLIT.split(text or "") if t.strip(".:()[]")]
    found: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if (token.upper().rstrip(".:#") in _PREFIX_WORDS and i + 1 < len(tokens)
                and tokens[i + 1][:1].isdigit() or token.upper().rstrip(".:#") in _PREFIX_WORDS and i + 1 < len(tokens)
                and tokens[i + 1][:1] == "#"):
            token = token + tokens[i + 1]
            i += 1
        i += 1
        if not any(ch.isdigit() for ch in token) or _AMOUNT_LIKE.match(token) or _DATE_LIKE.match(token):
            continue
        if len(normalise_reference(token)) >= 3:
            found.append(token)
    return found


@functools.lru_cache(maxsize=1 << 14)
def text_references(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The creditor references and then the other reference tokens of a receipt's free text.
    Pure, and cached: an import reads a receipt's references to cut its chunks, to find what it
    concerns, what it may need one edit away and to match it (a chunk's 5,000 receipts fit)."""
    rf_refs, rest = creditor_references(text)
    return tuple(rf_refs), tuple(reference_tokens(rest))


@dataclass(slots=True)
class OpenInvoice:
    invoice_id: str
    invoice_number: str
    customer_id: str
    currency: str
    open_balance: Decimal
    due_date: date
    # normalise_reference(invoice_number or invoice_id) when the caller has it already (PostgreSQL
    # stores it with the open item); empty: computed when indexed.
    key: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Receipt:
    amount: Decimal
    currency: str
    payer_name: str | None = None
    payer_account: str | None = None
    customer_hint: str | None = None
    text: str = ""
    remittance: tuple[RemittanceItem, ...] = ()
    customer_id: str | None = None  # known for certain (a payment posted for a customer by API)


@dataclass(frozen=True)
class MatchingPolicy:
    auto_apply_threshold: Decimal = Decimal("0.85")
    tolerance_absolute: Decimal = Decimal("5.00")
    tolerance_percent: Decimal = Decimal("1.0")  # of the invoice's open balance
    name_score_cutoff: float = 88.0
    name_score_margin: float = 4.0
    subset_max_invoices: int = 24  # the customer's oldest open invoices a combination is sought among
    subset_max_size: int = 6
    subset_node_budget: int = 40_000
    suggestions: int = 3

    def within_tolerance(self, difference: Decimal, open_balance: Decimal) -> bool:
        """Both limits hold: at most the absolute amount and at most the percentage of the balance."""
        return 0 < difference <= self.tolerance_absolute and difference * 100 <= self.tolerance_percent * open_balance


@dataclass(frozen=True)
class Allocation:
    invoice_id: str
    customer_id: str
    applied: Decimal
    open_balance: Decimal
    rule: str
    confidence: Decimal
    write_off: Decimal = Decimal(0)  # within tolerance: SmallBalanceWrittenOff
    short_pay: Decimal = Decimal(0)  # beyond tolerance: ShortPayDetected
    reason_code: str | None = None
    explanation: str = ""


@dataclass(frozen=True)
class Suggestion:
    invoice_ids: tuple[str, ...]
    customer_id: str
    amount: Decimal
    score: Decimal
    reason: str


@dataclass
class MatchResult:
    customer_id: str | None
    customer_rule: str | None
    customer_confidence: Decimal
    allocations: list[Allocation] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    reason: str = ""  # why (some of) the receipt stays unapplied

    @property
    def confidence(self) -> Decimal:
        return min((a.confidence for a in self.allocations), default=Decimal(0))

    @property
    def applied(self) -> Decimal:
        return sum((a.applied for a in self.allocations), Decimal(0))


@dataclass(frozen=True)
class _Identified:
    customer_id: str
    rule: str
    confidence: Decimal
    detail: str


def _conf(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


class Matcher:
    """Matches receipts against an in-memory set of open invoices.

    The caller commits a result with commit() once it is applied, so receipts of one file see
    each other's effect (two receipts never both close one invoice)."""

    def __init__(self, invoices: Iterable[OpenInvoice], customers: dict[str, str], *,
                 name_aliases: dict[str, str] | None = None, account_aliases: dict[str, str] | None = None,
                 policy: MatchingPolicy | None = None, parents: dict[str, str] | None = None) -> None:
        self.policy = policy or MatchingPolicy()
        # child -> parent account; a family is a customer and everyone below it.
        self._children: dict[str, list[str]] = {}
        for child, parent in sorted((parents or {}).items()):
            self._children.setdefault(parent, []).append(child)
        self._families: dict[str, frozenset[str]] = {}
        self.invoices: dict[str, OpenInvoice] = {}
        self.by_key: dict[str, list[str]] = {}
        self.by_number: dict[str, list[str]] = {}
        self.by_customer: dict[str, list[str]] = {}
        # deletion variant -> the normalised key(s) it comes from: a str while one key has it (most
        # variants), a set once several do, so 500,000 invoices do not cost millions of sets. Built
        # on the first one-edit search (most files never need one).
        self._deletions: dict[str, str | set[str]] | None = None
        self.add_invoices(invoices)
        self.customers = dict(customers)
        self._names: dict[str, list[str]] = {}
        for customer_id, name in customers.items():
            self._names.setdefault(normalise_name(name), []).append(customer_id)
        self._name_choices = list(self._names)
        # token_sort_ratio is ratio() of the token-sorted strings: the choices are sorted once
        # here, not again on every receipt (same scores, same order).
        self._sorted_choices = [" ".join(sorted(choice.split())) for choice in self._name_choices]
        self.name_aliases = {normalise_name(k): v for k, v in (name_aliases or {}).items()}
        self.account_aliases = {account_key(k): v for k, v in (account_aliases or {}).items()}
        self._name_cache: dict[str, _Identified | None | tuple] = {}

    # ------------------------------------------------------------------ the open-item index

    def add_invoices(self, invoices: Iterable[OpenInvoice]) -> None:
        """Index open invoices (one already held is kept as it is); each customer's stay oldest due first."""
        customers: set[str] = set()
        for invoice in invoices:
            if invoice.open_balance <= 0 or invoice.invoice_id in self.invoices:
                continue
            self.invoices[invoice.invoice_id] = invoice
            key = invoice.key or normalise_reference(invoice.invoice_number or invoice.invoice_id)
            self.by_key.setdefault(key, []).append(invoice.invoice_id)
            self.by_number.setdefault((invoice.invoice_number or "").upper(), []).append(invoice.invoice_id)
            self.by_customer.setdefault(invoice.customer_id, []).append(invoice.invoice_id)
            customers.add(invoice.customer_id)
            if self._deletions is not None:
                self._index_deletions(key)
        for customer_id in customers:
            self.by_customer[customer_id].sort(key=lambda i: (self.invoices[i].due_date, i))

    def _index_deletions(self, key: str) -> None:
        if len(key) < 4:
            return
        index = self._deletions
        for variant in _deletions(key) | {key}:
            held = index.get(variant)
            if held is None:
                index[variant] = key
            elif isinstance(held, str):
                if held != key:
                    index[variant] = {held, key}
            else:
                held.add(key)

    def with_invoices(self, invoices: Iterable[OpenInvoice]) -> "Matcher":
        """A matcher over these open invoices that shares this one's customer side (the customer
        master, aliases, hierarchy and the payer names already identified), so an import builds
        one per chunk of receipts over only the open items the chunk can concern."""
        other = copy.copy(self)
        other.invoices, other.by_key, other.by_number, other.by_customer = {}, {}, {}, {}
        other._deletions = None
        other.add_invoices(invoices)
        return other

    # ------------------------------------------------------------------ what a receipt can concern

    def references_of(self, receipt: Receipt) -> list[tuple[str, Decimal | None]]:
        """The references match() resolves for the receipt, each with the amount an invoice it
        names must agree with to be taken one edit away (None: no amount, so only the payer's own
        invoices can be)."""
        structured = [item for item in receipt.remittance if item.reference]
        if structured and all(item.paid_amount is not None for item in structured):
            return [(item.reference, item.paid_amount) for item in structured if item.paid_amount > 0]
        rf_refs, tokens = text_references(receipt.text or "")
        refs = [item.reference for item in structured] + [*rf_refs, *tokens]
        return [(reference, receipt.amount if len(refs) == 1 else None) for reference in refs]

    def concerns(self, receipt: Receipt) -> tuple[set[str], set[str]]:
        """What matching the receipt can read, found without any open item: the customers whose
        open invoices it can be matched against or suggested from (the payer identified, else the
        runners-up; and their families), and the normalised keys its references name."""
        customers = self.customers_concerned(receipt)
        keys: set[str] = set()
        for reference, _ in self.references_of(receipt):
            keys.add(normalise_reference(reference))
            if reference[:2].upper() == "RF" and (body := creditor_reference.reference_of(reference)):
                keys.add(normalise_reference(body))
        return customers, keys

    def customers_concerned(self, receipt: Receipt) -> set[str]:
        """The customers whose open invoices the receipt can be matched against or suggested from:
        the payer identified, else the runners-up; and their families (concerns() without the keys)."""
        identified, runners = self.identify(receipt)
        customers: set[str] = set()
        # The runners-up are suggested from only when no one is identified (match()).
        for customer_id in [identified.customer_id] if identified else [r[0] for r in runners]:
            customers |= self.family(customer_id)
        return customers

    def payer_group(self, receipt: Receipt) -> str:
        """A key that receipts reading the same customers' open items share: the smallest id among
        the customers the receipt concerns (the payer's family, else its runners-up'), "" when it
        concerns none. A large file's chunks are cut from receipts ordered by it, so each reads its
        customers' open items once rather than in every chunk one of their receipts falls in."""
        return min(self.customers_concerned(receipt), default="")

    def neighbours_needed(self, receipt: Receipt) -> set[tuple[str, Decimal]]:
        """Where matching the receipt may look one edit away (a typo) beyond the customers' and
        references' open items this matcher holds: (key, amount) for each reference with an amount
        that no held invoice it names agrees with (for the payer, when known). Only an invoice one
        edit from the key whose open balance is the amount, or above it within the tolerance, can
        then be taken (the payer's own are held already); the caller adds those, so the typo rules
        see every candidate they can take."""
        identified, _ = self.identify(receipt)
        family = self.family(identified.customer_id) if identified else None
        needed: set[tuple[str, Decimal]] = set()
        for reference, amount in self.references_of(receipt):
            key = normalise_reference(reference)
            if amount is None or len(key) < 4:
                continue  # no amount: only the payer's own invoices (held) can be taken one edit away
            if not any(inv.open_balance == amount and inv.currency == receipt.currency
                       and (family is None or inv.customer_id in family)
                       for i in self.by_key.get(key, ()) if (inv := self.invoices[i]).open_balance > 0):
                needed.add((key, amount))
        return needed

    def could_be_neighbour(self, invoice: OpenInvoice, needed: dict[str, list[Decimal]]) -> bool:
        """Whether the invoice is one that neighbours_needed asked for: its key shares a variant
        with a needed key, and its open balance is that reference's amount or above it within the
        absolute tolerance. `needed` maps each variant of the needed keys to their amounts."""
        key = normalise_reference(invoice.invoice_number or invoice.invoice_id)
        ceiling = self.policy.tolerance_absolute
        return any(amount <= invoice.open_balance <= amount + ceiling
                   for variant in reference_variants(key) for amount in needed.get(variant, ()))

    def commit(self, result: MatchResult) -> None:
        """Reduce the in-memory balances by what was applied, written off or left short."""
        for allocation in result.allocations:
            invoice = self.invoices.get(allocation.invoice_id)
            if invoice is not None:
                invoice.open_balance -= allocation.applied + allocation.write_off

    def set_balances(self, balances: dict[str, Decimal]) -> None:
        """Take these open balances (by invoice id) for the invoices held: those read under the
        locks, or a snapshot's to match again from. Others given are not held and are ignored."""
        for invoice_id, balance in balances.items():
            invoice = self.invoices.get(invoice_id)
            if invoice is not None:
                invoice.open_balance = balance

    def family(self, customer_id: str | None) -> frozenset[str]:
        """The customer and every customer below it in its account hierarchy."""
        if customer_id is None:
            return frozenset()
        found = self._families.get(customer_id)
        if found is None:
            members, todo = {customer_id}, [customer_id]
            while todo:
                for child in self._children.get(todo.pop(), ()):
                    if child not in members:  # a cycle is never stored; this guard keeps it finite anyway
                        members.add(child)
                        todo.append(child)
            found = self._families[customer_id] = frozenset(members)
        return found

    def open_invoices_of(self, customer_id: str, currency: str) -> list[OpenInvoice]:
        """The open invoices the customer pays for (its family's), oldest due date first."""
        members = self.family(customer_id)
        ids = (self.by_customer.get(customer_id, ()) if len(members) == 1 else
               sorted((i for m in members for i in self.by_customer.get(m, ())),
                      key=lambda i: (self.invoices[i].due_date, i)))
        return [inv for i in ids if (inv := self.invoices[i]).open_balance > 0 and inv.currency == currency]

    def learn_alias(self, *, payer_name: str | None, payer_account: str | None, customer_id: str) -> None:
        if payer_name:
            self.name_aliases[normalise_name(payer_name)] = customer_id
            self._name_cache.pop(normalise_name(payer_name), None)
        if payer_account:
            self.account_aliases[account_key(payer_account)] = customer_id

    # ------------------------------------------------------------------ customer identification

    def identify(self, receipt: Receipt) -> tuple[_Identified | None, list[tuple[str, Decimal, str]]]:
        """The paying customer, or None; and the runners-up as (customer, score, why)."""
        if receipt.customer_id:
            return _Identified(receipt.customer_id, "given", Decimal(1), "customer given with the payment"), []
        hint = (receipt.customer_hint or "").strip()
        if hint and hint in self.customers:
            return _Identified(hint, "remittance_customer", Decimal(1), f"remittance names customer {hint}"), []
        if hint and account_key(hint) in self.account_aliases:
            customer = self.account_aliases[account_key(hint)]
            return _Identified(customer, "remittance_account", _conf(0.99), f"remittance account {hint}"), []
        if receipt.payer_account and account_key(receipt.payer_account) in self.account_aliases:
            customer = self.account_aliases[account_key(receipt.payer_account)]
            return _Identified(customer, "bank_account", _conf(0.99),
                               f"payer account {receipt.payer_account} belongs to {customer}"), []
        if not receipt.payer_name:
            return None, []
        name = normalise_name(receipt.payer_name)
        if name in self.name_aliases:
            customer = self.name_aliases[name]
            return _Identified(customer, "payer_alias", _conf(0.98),
                               f"payer name {receipt.payer_name!r} learned for {customer}"), []
        cached = self._name_cache.get(name)
        if cached is None:
            cached = self._fuzzy_name(name, receipt.payer_name)
            self._name_cache[name] = cached
        return cached

    def _fuzzy_name(self, name: str, shown: str):
        exact = self._names.get(name, [])
        if len(exact) == 1:
            return _Identified(exact[0], "payer_name", _conf(0.97), f"payer name {shown!r} is the customer's"), []
        if len(exact) > 1:
            return None, [(c, _conf(0.6), f"payer name {shown!r} is shared by several customers") for c in exact]
        hits = [(self._name_choices[index], score, index) for _, score, index in process.extract(
            " ".join(sorted(name.split())), self._sorted_choices, scorer=fuzz.ratio, limit=3, score_cutoff=60)]
        return self._named(hits, shown)

    def identify_payer_names(self, payer_names: Iterable[str | None], batch: int = 256, workers: int = 1) -> int:
        """Score the payer names no alias, exact name or earlier receipt settles against the
        customer master all at once, and keep the outcomes identify() then finds (the same ones
        scoring each on its own gives: tests/unit/cash_application/test_payer_names.py). One
        receipt at a time, rapidfuzz compares a name with the 25,000 customers of the scale bench
        in about a millisecond; a batch of names against them shares the work across the names
        (SIMD), in one thread unless told `workers` (with every core, the platform's other services
        answered far worse during a 10,000-receipt import in make bench-platform; a large import,
        which matches its chunks in as many processes, scores its names with as many threads). A
        name keeps the spelling it first comes with (pass them in file order). Returns how many names were scored."""
        pending: dict[str, str] = {}
        for shown in payer_names:
            if not shown:
                continue
            name = normalise_name(shown)
            if name not in pending and name not in self._name_cache and name not in self.name_aliases \
                    and name not in self._names:
                pending[name] = shown
        if _cdist is None or not pending or not self._sorted_choices:
            return 0
        names = list(pending)
        width = len(self._sorted_choices)
        for start in range(0, len(names), batch):
            part = names[start:start + batch]
            queries = [" ".join(sorted(name.split())) for name in part]
            # Scores rounded to whole numbers, as a sieve: every choice at 59 or more is kept and
            # scored exactly below, so nothing process.extract would return at 60 is lost.
            matrix = memoryview(_cdist(queries, self._sorted_choices, scorer=fuzz.ratio, score_cutoff=59,
                                       dtype=_UINT8, workers=workers)).tobytes()
            for row, (name, query) in enumerate(zip(part, queries)):
                start, end = row * width, (row + 1) * width
                # Whole-number scores are within one of the exact ones: a choice below the third
                # best's whole score less one cannot be among (or tied with) the best three. The
                # row is searched a score at a time from the top (memchr), until below that.
                sieved: list[tuple[int, int]] = []
                third = None
                for whole in range(100, 58, -1):
                    if third is not None and whole < third - 1:
                        break
                    needle = _SCORE_BYTES[whole]
                    at = matrix.find(needle, start, end)
                    while at != -1:
                        sieved.append((whole, at - start))
                        at = matrix.find(needle, at + 1, end)
                    if third is None and len(sieved) >= 3:
                        third = sieved[2][0]
                scored = []
                for _, index in sieved:
                    score = fuzz.ratio(query, self._sorted_choices[index], score_cutoff=60)
                    if score:
                        scored.append((-score, index))
                scored.sort()
                hits = [(self._name_choices[index], -negative, index) for negative, index in scored[:3]]
                self._name_cache[name] = self._named(hits, pending[name])
        return len(names)

    def _named(self, hits: list[tuple[str, float, int]], shown: str):
        """The payer identified from the best-scoring customer names (choice, score, index), best
        first: the best one if it is good enough and clear of the second; and the runners-up."""
        runners = []
        for choice, score, _ in hits:
            for customer in self._names[choice]:
                runners.append((customer, _conf(score / 100), f"payer name {shown!r} ~ {self.customers[customer]!r}"
                                                              f" ({score:.0f}%)"))
        if not hits:
            return None, []
        best_choice, best, _ = hits[0]
        second = hits[1][1] if len(hits) > 1 else 0.0
        owners = self._names[best_choice]
        if best >= self.policy.name_score_cutoff and best - second >= self.policy.name_score_margin and len(owners) == 1:
            confidence = _conf(min(0.95, 0.5 + best / 200))
            return _Identified(owners[0], "payer_name_fuzzy", confidence,
                               f"payer name {shown!r} ~ {self.customers[owners[0]]!r} ({best:.0f}%)"), runners[1:]
        return None, runners

    # ------------------------------------------------------------------ references

    def resolve_reference(self, reference: str, customer_id: str | None, currency: str
                          ) -> tuple[list[OpenInvoice], str]:
        """Open invoices a reference names: exact number, normalised, or one edit away; and the
        rule. Several results mean the reference is ambiguous."""
        body = creditor_reference.reference_of(reference) if reference[:2].upper() == "RF" else None
        if body:
            # Check digits rule out a typo: the invoice whose number, letters and digits only, it is.
            named = [self.invoices[i] for i in self.by_key.get(normalise_reference(body), ())
                     if self.invoices[i].open_balance > 0 and self.invoices[i].currency == currency
                     and re.sub(r"[^0-9A-Z]", "", self.invoices[i].invoice_number.upper()) == body]
            if named:
                return _prefer_customer(named, self.family(customer_id)), RULE_CREDITOR_REFERENCE
        exact = [self.invoices[i] for i in self.by_number.get(reference.strip().upper(), ())
                 if self.invoices[i].open_balance > 0 and self.invoices[i].currency == currency]
        if exact:
            return _prefer_customer(exact, self.family(customer_id)), RULE_REMITTANCE_EXACT
        key = normalise_reference(reference)
        found = [self.invoices[i] for i in self.by_key.get(key, ())
                 if self.invoices[i].open_balance > 0 and self.invoices[i].currency == currency]
        if found:
            return _prefer_customer(found, self.family(customer_id)), RULE_REFERENCE_NORMALISED
        near = self.near_reference(key, currency)
        return near, RULE_REFERENCE_FUZZY if near else ""

    def near_reference(self, key: str, currency: str) -> list[OpenInvoice]:
        """Open invoices whose normalised number is exactly one edit from the key."""
        if len(key) < 4:
            return []
        if self._deletions is None:
            self._deletions = {}
            for indexed in self.by_key:
                self._index_deletions(indexed)
        keys: set[str] = set()
        for variant in _deletions(key) | {key}:
            held = self._deletions.get(variant)
            if isinstance(held, str):
                keys.add(held)
            elif held:
                keys |= held
        return [self.invoices[i] for k in sorted(keys) if k != key and OSA.distance(key, k) <= 1
                for i in self.by_key.get(k, ()) if self.invoices[i].open_balance > 0
                and self.invoices[i].currency == currency]

    def _typo_alternative(self, reference: str, found: OpenInvoice, customer_id: str | None, currency: str,
                          amount: Decimal | None) -> OpenInvoice | None:
        """A reference that names a real invoice of another customer, or of a different amount,
        may be a typo of the invoice really paid: the one invoice one edit away that belongs to
        the payer (when known) and has exactly the amount paid."""
        family = self.family(customer_id)
        names_payer = customer_id is None or found.customer_id in family
        if amount is None or (names_payer and found.open_balance == amount):
            return None  # the reference agrees with the payer and the amount: not a typo
        near = [i for i in self.near_reference(normalise_reference(reference), currency)
                if i.open_balance == amount and (customer_id is None or i.customer_id in family)]
        return near[0] if len(near) == 1 else None

    # ------------------------------------------------------------------ matching

    def match(self, receipt: Receipt) -> MatchResult:
        identified, runners = self.identify(receipt)
        customer_id = identified.customer_id if identified else None
        result = MatchResult(customer_id=customer_id, customer_rule=identified.rule if identified else None,
                             customer_confidence=identified.confidence if identified else Decimal(0))
        structured = [item for item in receipt.remittance if item.reference]
        rf_refs, tokens = text_references(receipt.text or "")
        text_refs = [*rf_refs, *tokens]
        if structured and all(item.paid_amount is not None for item in structured):
            self._match_remittance_lines(receipt, structured, identified, result)
        elif structured or text_refs:
            refs = [(item.reference, item) for item in structured] + [(t, None) for t in text_refs]
            if not self._match_references(receipt, refs, identified, result) and identified:
                self._match_amount(receipt, identified, result)
        elif identified:
            self._match_amount(receipt, identified, result)
        if not result.allocations and not result.suggestions and not identified:
            self._suggest_unidentified(receipt, runners, result)
        if not result.reason:
            unapplied = receipt.amount - result.applied
            if not result.allocations:
                result.reason = "unidentified receipt" if not identified else "no invoice matched"
            elif unapplied > 0:
                result.reason = "overpayment"
        return result

    def _match_remittance_lines(self, receipt: Receipt, items: list[RemittanceItem], identified: _Identified | None,
                                result: MatchResult) -> None:
        """Lines with amounts (EDI 820 RMR, lockbox rows, camt RfrdDocAmt): each pays its invoice."""
        customer_id = identified.customer_id if identified else None
        pending: dict[str, Decimal] = {}
        allocations: list[Allocation] = []
        unresolved: list[str] = []
        remaining = receipt.amount
        for item in items:
            if item.paid_amount is not None and item.paid_amount <= 0:
                unresolved.append(item.reference)  # a credit the payer netted: a person checks it
                continue
            invoices, rule = self.resolve_reference(item.reference, customer_id, receipt.currency)
            invoice = self._accept(invoices, rule, customer_id, item.paid_amount)
            if invoice is not None and rule not in (RULE_REFERENCE_FUZZY, RULE_CREDITOR_REFERENCE):
                alternative = self._typo_alternative(item.reference, invoice, customer_id, receipt.currency,
                                                     item.paid_amount)
                if alternative is not None:
                    invoice, rule = alternative, RULE_REFERENCE_FUZZY
            if invoice is None:
                unresolved.append(item.reference)
                self._suggest_for_reference(item.reference, invoices, item.paid_amount, result)
                continue
            open_balance = invoice.open_balance - pending.get(invoice.invoice_id, Decimal(0))
            # Never more than the receipt: remittance lines may net credits the payer took (a
            # negative line, a credit memo) that are not open items here.
            pays = min(item.paid_amount, remaining)
            confidence = self._rule_confidence(rule, identified, invoice, structured=True)
            if pays < item.paid_amount:
                confidence = min(confidence, _conf(0.8))
            allocation = self._allocate(invoice, pays, open_balance, rule, confidence, item.reason_code,
                                        f"remittance line {item.reference!r}")
            if allocation is not None:
                pending[invoice.invoice_id] = pending.get(invoice.invoice_id, Decimal(0)) + allocation.applied + allocation.write_off
                remaining -= allocation.applied
                allocations.append(allocation)
        self._settle(result, allocations, receipt, unresolved)

    def _match_references(self, receipt: Receipt, refs: list[tuple[str, RemittanceItem | None]],
                          identified: _Identified | None, result: MatchResult) -> bool:
        """References without per-invoice amounts: the named invoices share the receipt's amount."""
        customer_id = identified.customer_id if identified else None
        chosen: dict[str, tuple[OpenInvoice, str, RemittanceItem | None, str]] = {}
        unresolved: list[str] = []
        for reference, item in refs:
            invoices, rule = self.resolve_reference(reference, customer_id, receipt.currency)
            single_amount = receipt.amount if len(refs) == 1 else None
            invoice = self._accept(invoices, rule, customer_id, single_amount)
            if invoice is None and rule == RULE_REFERENCE_FUZZY and len(refs) > 1:
                invoice = self._accept(invoices, rule, customer_id, None, need_amount=False)
            if invoice is not None and rule not in (RULE_REFERENCE_FUZZY, RULE_CREDITOR_REFERENCE) and len(refs) == 1:
                alternative = self._typo_alternative(reference, invoice, customer_id, receipt.currency,
                                                     receipt.amount)
                if alternative is not None:
                    invoice, rule = alternative, RULE_REFERENCE_FUZZY
            if invoice is None:
                if item is not None or invoices:
                    unresolved.append(reference)
                self._suggest_for_reference(reference, invoices, receipt.amount, result)
                continue
            if rule == RULE_REMITTANCE_EXACT and item is None:
                rule = RULE_REFERENCE_EXACT  # the number as printed, but in free text, not a remittance line
            chosen.setdefault(invoice.invoice_id, (invoice, rule, item, reference))
        if not chosen:
            return False
        owners = {inv.customer_id for inv, _, _, _ in chosen.values()}
        if len(owners) > 1 and not owners <= self.family(customer_id):
            result.reason = "references name invoices of several customers"
            for inv, _, _, ref in chosen.values():
                result.suggestions.append(Suggestion((inv.invoice_id,), inv.customer_id, inv.open_balance,
                                                     _conf(0.5), f"reference {ref!r}"))
            return True
        ordered = sorted(chosen.values(), key=lambda c: (c[0].due_date, c[0].invoice_id))
        total_open = sum((inv.open_balance for inv, _, _, _ in ordered), Decimal(0))
        remaining = receipt.amount
        allocations: list[Allocation] = []
        fuzzy_without_amount = any(rule == RULE_REFERENCE_FUZZY for _, rule, _, _ in ordered) and receipt.amount != total_open
        for index, (invoice, rule, item, reference) in enumerate(ordered):
            last = index == len(ordered) - 1
            pays = remaining if last else min(remaining, invoice.open_balance)
            if pays <= 0:
                break
            confidence = self._rule_confidence(rule, identified, invoice, structured=item is not None)
            if identified is None and not self._amount_agrees(receipt.amount, total_open):
                # Nothing but the reference says who paid, and the amount disagrees with it: a typo
                # that hits another real invoice looks exactly like this.
                confidence = min(confidence, _conf(0.8))
            if receipt.amount * 2 < total_open or fuzzy_without_amount:
                confidence = min(confidence, _conf(0.7))  # paying less than half of what it names is suspect
            elif receipt.amount != total_open and len(ordered) > 1:
                confidence = min(confidence, _conf(0.9))
            reason_code = item.reason_code if item else None
            allocation = self._allocate(invoice, pays, invoice.open_balance, rule, confidence, reason_code,
                                        f"reference {reference!r}")
            if allocation is not None:
                allocations.append(allocation)
                remaining -= allocation.applied
        self._settle(result, allocations, receipt, unresolved)
        return True

    def _amount_agrees(self, paid: Decimal, open_total: Decimal) -> bool:
        return paid == open_total or self.policy.within_tolerance(open_total - paid, open_total)

    def _accept(self, invoices: list[OpenInvoice], rule: str, customer_id: str | None, amount: Decimal | None,
                need_amount: bool = True) -> OpenInvoice | None:
        if not invoices:
            return None
        family = self.family(customer_id)
        if rule != RULE_REFERENCE_FUZZY:
            if customer_id:
                own = [i for i in invoices if i.customer_id in family]
                invoices = own or invoices
            return invoices[0] if len(invoices) == 1 else None
        # One edit away: only when a single invoice of the identified customer is that close, and
        # the amount agrees with it (within tolerance) — sequential numbering puts other real
        # invoices one edit away from almost every number.
        candidates = [i for i in invoices if customer_id is None or i.customer_id in family]
        if need_amount and amount is not None:
            candidates = [i for i in candidates if i.open_balance == amount
                          or self.policy.within_tolerance(i.open_balance - amount, i.open_balance)]
        elif need_amount:
            return None
        if customer_id is None and need_amount is False:
            return None
        return candidates[0] if len(candidates) == 1 else None

    def _rule_confidence(self, rule: str, identified: _Identified | None, invoice: OpenInvoice,
                         structured: bool) -> Decimal:
        base = {RULE_CREDITOR_REFERENCE: Decimal("1.00"), RULE_REMITTANCE_EXACT: Decimal("1.00"), RULE_REFERENCE_EXACT: Decimal("0.98"),
                RULE_REFERENCE_NORMALISED: Decimal("0.97"), RULE_REFERENCE_FUZZY: Decimal("0.90")}[rule]
        if identified and invoice.customer_id not in self.family(identified.customer_id):
            # The payer looks like another customer: a third party paying, or a wrong reference.
            return min(base, _conf(0.8) if identified.rule.startswith("payer_name") else _conf(0.6))
        return base

    def _allocate(self, invoice: OpenInvoice, pays: Decimal, open_balance: Decimal, rule: str,
                  confidence: Decimal, reason_code: str | None, why: str) -> Allocation | None:
        if open_balance <= 0 or pays <= 0:
            return None
        applied = min(pays, open_balance)
        difference = open_balance - applied
        write_off = short = Decimal(0)
        if difference > 0 and self.policy.within_tolerance(difference, open_balance):
            write_off = difference
        elif difference > 0:
            short = difference
        return Allocation(invoice_id=invoice.invoice_id, customer_id=invoice.customer_id, applied=applied,
                          open_balance=open_balance, rule=rule, confidence=confidence, write_off=write_off,
                          short_pay=short, reason_code=reason_code,
                          explanation=f"{why} -> {invoice.invoice_number} ({rule})")

    def _settle(self, result: MatchResult, allocations: list[Allocation], receipt: Receipt,
                unresolved: list[str]) -> None:
        if allocations and result.customer_id is None:
            result.customer_id = allocations[0].customer_id
            result.customer_rule = "invoice_reference"
            result.customer_confidence = min(a.confidence for a in allocations)
        result.allocations = allocations
        if unresolved:
            result.reason = f"reference(s) not matched: {', '.join(unresolved)}"
        elif receipt.amount > sum((a.applied for a in allocations), Decimal(0)):
            result.reason = "overpayment"

    def _match_amount(self, receipt: Receipt, identified: _Identified, result: MatchResult) -> None:
        """No usable reference: the amount against the identified customer's open invoices."""
        invoices = self.open_invoices_of(identified.customer_id, receipt.currency)
        if not invoices:
            result.reason = f"customer {identified.customer_id} has no open invoice in {receipt.currency}"
            return
        same = [i for i in invoices if i.open_balance == receipt.amount]
        ceiling = min(identified.confidence, _conf(0.95))
        if len(same) == 1:
            result.allocations = [Allocation(same[0].invoice_id, same[0].customer_id, receipt.amount,
                                             same[0].open_balance, RULE_AMOUNT_EXACT, ceiling,
                                             explanation=f"{identified.detail}; the only open invoice of"
                                                         f" {receipt.amount}")]
            return
        if len(same) > 1:
            result.reason = f"{len(same)} open invoices of {receipt.amount}"
            for invoice in same[: self.policy.suggestions]:
                result.suggestions.append(Suggestion((invoice.invoice_id,), invoice.customer_id, invoice.open_balance,
                                                     _conf(0.6), f"same amount; due {invoice.due_date}"))
            return
        prefix = _oldest_first(invoices, receipt.amount)
        solutions, exhausted = ([prefix], False) if prefix else _subsets(
            invoices[: self.policy.subset_max_invoices], receipt.amount, self.policy.subset_max_size,
            self.policy.subset_node_budget)
        if len(solutions) == 1 and not exhausted:
            chosen = solutions[0]
            confidence = min(ceiling, _conf(0.92) if prefix else _conf(0.9))
            how = "oldest open invoices" if prefix else "the only combination of open invoices"
            result.allocations = [Allocation(i.invoice_id, i.customer_id, i.open_balance, i.open_balance,
                                             RULE_COMBINATION, confidence,
                                             explanation=f"{identified.detail}; {how} summing to {receipt.amount}")
                                  for i in chosen]
            return
        for chosen in solutions[: self.policy.suggestions]:
            result.suggestions.append(Suggestion(tuple(i.invoice_id for i in chosen), identified.customer_id,
                                                 receipt.amount, _conf(0.5), "one of several combinations"
                                                                             " summing to the amount"))
        near = sorted(invoices, key=lambda i: (abs(i.open_balance - receipt.amount), i.due_date))
        for invoice in near[: self.policy.suggestions]:
            if len(result.suggestions) >= self.policy.suggestions * 2:
                break
            gap = abs(invoice.open_balance - receipt.amount)
            score = _conf(max(Decimal("0.1"), Decimal("0.8") - gap / max(invoice.open_balance, Decimal(1))))
            result.suggestions.append(Suggestion((invoice.invoice_id,), invoice.customer_id, invoice.open_balance,
                                                 score, f"closest open balance ({gap} apart)"))
        if exhausted:
            result.reason = "too many combinations of open invoices to tell whether one is the only answer"
        elif solutions:
            result.reason = "several combinations of open invoices sum to the amount"
        else:
            result.reason = "no open invoice or combination matches the amount"

    def _suggest_for_reference(self, reference: str, invoices: list[OpenInvoice], amount: Decimal | None,
                               result: MatchResult) -> None:
        for invoice in invoices[: self.policy.suggestions]:
            agrees = amount is not None and invoice.open_balance == amount
            result.suggestions.append(Suggestion((invoice.invoice_id,), invoice.customer_id, invoice.open_balance,
                                                 _conf(0.7 if agrees else 0.5),
                                                 f"reference {reference!r} ~ {invoice.invoice_number}"))

    def _suggest_unidentified(self, receipt: Receipt, runners: list[tuple[str, Decimal, str]],
                              result: MatchResult) -> None:
        for customer_id, score, why in runners[: self.policy.suggestions]:
            for invoice in self.open_invoices_of(customer_id, receipt.currency):
                if invoice.open_balance == receipt.amount:
                    result.suggestions.append(Suggestion((invoice.invoice_id,), customer_id, invoice.open_balance,
                                                         _conf(score * Decimal("0.8")), f"{why}; same amount"))
                    break
            else:
                result.suggestions.append(Suggestion((), customer_id, receipt.amount, _conf(score * Decimal("0.5")), why))
        result.suggestions.sort(key=lambda s: s.score, reverse=True)


def _prefer_customer(invoices: list[OpenInvoice], family: frozenset[str]) -> list[OpenInvoice]:
    """The payer's own invoices (its family's) when the reference names some, else all it names."""
    own = [i for i in invoices if i.customer_id in family]
    return own or invoices


def _deletions(key: str) -> set[str]:
    return {key[:i] + key[i + 1:] for i in range(len(key))}


def reference_variants(key: str) -> set[str]:
    """A normalised key and, from four characters on, its forms with one character deleted (as
    cash_reference_variants in PostgreSQL): keys one edit apart share one of them."""
    return _deletions(key) | {key} if len(key) >= 4 else {key}


def account_key(account: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", account.upper())


def _oldest_first(invoices: Sequence[OpenInvoice], amount: Decimal) -> list[OpenInvoice] | None:
    """The oldest invoices, in due-date order, when they add up to the amount exactly (2 or more)."""
    total = Decimal(0)
    for n, invoice in enumerate(invoices, start=1):
        total += invoice.open_balance
        if total == amount:
            return list(invoices[:n]) if n > 1 else None
        if total > amount:
            return None
    return None


def _subsets(invoices: Sequence[OpenInvoice], amount: Decimal, max_size: int,
             budget: int) -> tuple[list[list[OpenInvoice]], bool]:
    """Combinations (2..max_size invoices) adding up to the amount, and whether the search ran out
    of budget before it could tell. It stops at two: two already make the answer ambiguous.
    Sums are exact integers in the currency's own minor unit (a KWD, BHD or JOD amount keeps its
    third decimal; a JPY amount has none)."""
    scale = 10 ** minor_unit(invoices[0].currency) if invoices else 100
    units = [i.open_balance * scale for i in invoices]
    if any(u != u.to_integral_value() for u in units) or amount * scale != (amount * scale).to_integral_value():
        return [], False  # an amount finer than the currency's unit cannot be matched exactly
    cents = [int(u) for u in units]
    target = int(amount * scale)
    order = sorted(range(len(invoices)), key=lambda i: -cents[i])
    suffix = [0] * (len(order) + 1)
    for pos in range(len(order) - 1, -1, -1):
        suffix[pos] = suffix[pos + 1] + cents[order[pos]]
    found: list[list[int]] = []
    nodes = 0
    exhausted = False

    def walk(pos: int, remaining: int, chosen: list[int]) -> None:
        nonlocal nodes, exhausted
        if len(found) >= 2 or exhausted:
            return
        if remaining == 0:
            if len(chosen) >= 2:
                found.append(list(chosen))
            return
        if pos == len(order) or len(chosen) == max_size or suffix[pos] < remaining:
            return
        nodes += 1
        if nodes > budget:
            exhausted = True
            return
        value = cents[order[pos]]
        if value <= remaining:
            chosen.append(order[pos])
            walk(pos + 1, remaining - value, chosen)
            chosen.pop()
        walk(pos + 1, remaining, chosen)

    walk(0, target, [])
    solutions = [sorted((invoices[i] for i in f), key=lambda inv: (inv.due_date, inv.invoice_id)) for f in found]
    return solutions, exhausted and len(found) < 2
