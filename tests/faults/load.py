"""A bounded write load through the APIs, and the ledger of what the platform accepted.

N clients issue customers, invoices and payments (with remittance: full payments, and short
payments that disputes turns into deductions) against whatever instance the platform routes a
context to. Every request carries an Idempotency-Key; on a 5xx, a timeout or a connection error
the client retries the SAME request with the SAME key until it is accepted (a retry of a request
that did commit is answered from the stored response, so the ledger counts it once). Each client
owns its customers, so its view of their balances is exact. The ledger is what the read models
must equal, to the cent."""
from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import httpx

CENT = Decimal("0.01")
CURRENCY = "USD"
AS_OF = "2030-01-01"  # every invoice and payment is dated before this


@dataclass
class Invoice:
    invoice_id: str
    customer_id: str
    total: Decimal
    applied: Decimal = Decimal("0.00")
    short_paid: bool = False

    @property
    def open(self) -> Decimal:
        return self.total - self.applied


@dataclass
class Payment:
    payment_id: str
    customer_id: str
    amount: Decimal
    applied: Decimal
    unapplied: Decimal


@dataclass
class Attempt:
    """One HTTP request the load made: when, to which service, and how it ended."""
    started: float
    ended: float
    context: str
    op: str
    outcome: str  # "accepted", "replayed", "http 5xx", "connection error", "timeout", "rejected 4xx"
    status: int | None = None
    content_type: str | None = None


@dataclass
class Ledger:
    customers: dict[str, str] = field(default_factory=dict)  # customer_id -> client
    invoices: dict[str, Invoice] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    deductions: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (payment, invoice) -> shortfall

    def open_invoices(self) -> dict[str, Decimal]:
        return {i: inv.open for i, inv in self.invoices.items() if inv.open > 0}

    def customer_open(self) -> dict[str, Decimal]:
        totals = {c: Decimal("0.00") for c in self.customers}
        for inv in self.invoices.values():
            totals[inv.customer_id] += inv.open
        return totals

    def book_open(self) -> Decimal:
        return sum((inv.open for inv in self.invoices.values()), Decimal("0.00"))


class Rejected(Exception):
    """The platform refused a well-formed request (a 4xx): the load never sends bad input."""


class LoadGenerator:
    """`clients` concurrent clients, each pausing `think` seconds between operations. start()
    and stop() bracket a window of load; the ledger carries over from window to window."""

    def __init__(self, urls: Callable[[], dict[str, str]], clients: int = 8, think: float = 0.25,
                 request_timeout: float = 10.0, give_up_after: float = 240.0, seed: int = 13) -> None:
        self.urls = urls
        self.clients = clients
        self.think = think
        self.request_timeout = request_timeout
        self.give_up_after = give_up_after
        self.ledger = Ledger()
        self.attempts: list[Attempt] = []
        self.rejections: list[str] = []
        self.abandoned: list[str] = []
        self.run = uuid.uuid4().hex[:6]
        self._random = random.Random(seed)
        self._seq = 0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._client_customers: dict[int, list[str]] = {k: [] for k in range(clients)}
        self._http: httpx.AsyncClient | None = None
        self.clock = time.monotonic

    def _next(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self.run}-{self._seq:06d}"

    # ------------------------------------------------------------------ window of load

    def start(self) -> None:
        assert not self._tasks, "load already running"
        self._stopping.clear()
        self._http = httpx.AsyncClient(timeout=self.request_timeout,
                                       limits=httpx.Limits(max_connections=self.clients * 2))
        self._tasks = [asyncio.create_task(self._client(k), name=f"load-client-{k}") for k in range(self.clients)]

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def abort(self) -> None:
        """Cancel the clients where they are (after a failed experiment)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def stop(self, timeout: float = 300.0) -> float:
        """Ask every client to stop after the operation it is on (retried until accepted);
        returns how long that took."""
        started = self.clock()
        self._stopping.set()
        done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if pending:
            raise AssertionError(f"{len(pending)} load clients still retrying after {timeout}s")
        return self.clock() - started

    # ------------------------------------------------------------------ one client

    async def _client(self, k: int) -> None:
        rnd = random.Random(self._random.random())
        while not self._stopping.is_set():
            mine = self._client_customers[k]
            open_mine = [inv for inv in self.ledger.invoices.values()
                         if inv.customer_id in mine and inv.open > 0]
            roll = rnd.random()
            if not mine or (len(mine) < 6 and roll < 0.04):
                await self._register_customer(k, rnd)
            elif roll < 0.55 or not open_mine:
                await self._issue_invoice(rnd.choice(mine[-3:]), rnd)
            else:
                await self._pay(rnd.choice(open_mine), rnd)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.think * (0.5 + rnd.random()))
            except asyncio.TimeoutError:
                pass

    async def _register_customer(self, k: int, rnd: random.Random) -> None:
        customer_id = self._next(f"cus{k}")
        body = {"customer_id": customer_id, "name": f"Fault Customer {customer_id}", "currency": CURRENCY,
                "payment_terms": "NET30"}  # no credit limit: the load must never be refused for credit
        await self._post("invoicing", "/v1/customers", body, "customer")
        self.ledger.customers[customer_id] = f"client-{k}"
        self._client_customers[k].append(customer_id)

    async def _issue_invoice(self, customer_id: str, rnd: random.Random) -> None:
        invoice_id = self._next("inv")
        lines = [{"description": f"Item {n}", "quantity": str(rnd.randint(1, 5)),
                  "unit_price": str(Decimal(rnd.randint(1000, 90000)) / 100)} for n in range(rnd.randint(1, 2))]
        total = sum((Decimal(line["quantity"]) * Decimal(line["unit_price"]) for line in lines), Decimal("0.00"))
        body = {"customer_id": customer_id, "invoice_id": invoice_id, "invoice_number": invoice_id,
                "issue_date": f"2024-{rnd.randint(1, 9):02d}-{rnd.randint(1, 28):02d}", "lines": lines}
        answer = await self._post("invoicing", "/v1/invoices", body, "invoice")
        accepted_total = Decimal(answer["total_amount"])
        assert accepted_total == total.quantize(CENT), f"invoice {invoice_id}: total {accepted_total} != {total}"
        self.ledger.invoices[invoice_id] = Invoice(invoice_id, customer_id, accepted_total)

    async def _pay(self, invoice: Invoice, rnd: random.Random) -> None:
        payment_id = self._next("pay")
        line: dict[str, Any] = {"invoice_id": invoice.invoice_id}
        if not invoice.short_paid and rnd.random() < 0.5:
            amount = max(CENT, (invoice.open * Decimal(rnd.randint(20, 80)) / 100).quantize(CENT))
            line["reason_code"] = "PRICING"
        else:
            amount = invoice.open
        line["amount"] = str(amount)
        body = {"payment_id": payment_id, "customer_id": invoice.customer_id, "amount": str(amount),
                "currency": CURRENCY, "value_date": f"2024-12-{rnd.randint(1, 28):02d}", "method": "wire",
                "reference": payment_id, "remittance": [line]}
        answer = await self._post("cash_application", "/v1/payments", body, "payment")
        applied = Decimal(answer["applied_amount"])
        for application in answer["applications"]:
            target = self.ledger.invoices[application["invoice_id"]]
            target.applied += Decimal(application["amount"])
        for short in answer["short_pays"]:
            self.ledger.invoices[short["invoice_id"]].short_paid = True
            self.ledger.deductions[(payment_id, short["invoice_id"])] = Decimal(short["shortfall"])
        self.ledger.payments[payment_id] = Payment(payment_id, invoice.customer_id, amount, applied,
                                                   Decimal(answer["unapplied_amount"]))

    # ------------------------------------------------------------------ retrying POST

    async def _post(self, context: str, path: str, body: dict[str, Any], op: str) -> dict[str, Any]:
        """POST until accepted, the same Idempotency-Key every time; returns the answer."""
        key = str(uuid.uuid4())
        first = self.clock()
        delay = 0.2
        assert self._http is not None
        while True:
            started = self.clock()
            url = self.urls()[context] + path
            try:
                r = await self._http.post(url, json=body, headers={"Idempotency-Key": key})
            except httpx.TimeoutException:
                self.attempts.append(Attempt(started, self.clock(), context, op, "timeout"))
            except httpx.TransportError:
                self.attempts.append(Attempt(started, self.clock(), context, op, "connection error"))
            else:
                ctype = r.headers.get("content-type")
                if r.status_code < 300:
                    replayed = r.headers.get("Idempotent-Replayed") == "true"
                    self.attempts.append(Attempt(started, self.clock(), context, op,
                                                 "replayed" if replayed else "accepted", r.status_code, ctype))
                    return r.json()
                if r.status_code >= 500:
                    self.attempts.append(Attempt(started, self.clock(), context, op, f"http {r.status_code}",
                                                 r.status_code, ctype))
                else:
                    self.attempts.append(Attempt(started, self.clock(), context, op, f"rejected {r.status_code}",
                                                 r.status_code, ctype))
                    self.rejections.append(f"{op} {body.get('invoice_id') or body.get('payment_id') or body.get('customer_id')}:"
                                           f" {r.status_code} {r.text[:300]}")
                    raise Rejected(self.rejections[-1])
            if self.clock() - first > self.give_up_after:
                self.abandoned.append(f"{op} {body}")
                raise AssertionError(f"{op} not accepted within {self.give_up_after}s of retries")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------------ figures

    def summary(self, since: float, until: float | None = None) -> dict[str, Any]:
        """Requests in [since, until): final answers by outcome, per context."""
        until = until if until is not None else float("inf")
        out: dict[str, Any] = {}
        for a in self.attempts:
            if since <= a.ended < until:
                per = out.setdefault(a.context, {})
                per[a.outcome] = per.get(a.outcome, 0) + 1
        return out
