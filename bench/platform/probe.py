"""What the benchmark watches while the load runs: when each invoice becomes visible in each read
model that uses it, the read models' totals, and every service process's memory.

Visibility is read from the read models' own tables in their own databases (the rows their GET
endpoints answer from), not through HTTP: one range query per read model every `interval`
covers every invoice in flight, where polling GET /v1/open-items/{id} for each invoice would add
hundreds of requests per second to the load being measured. The query's snapshot is taken when
it starts, so an invoice first returned by a poll became visible at or before that poll's start:
the figure overstates the lag by at most one interval (25 ms by default)."""
from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_left

import asyncpg

# The read models fed by InvoiceIssued (services/*/projections): table, and the condition that
# makes the invoice complete there (cash application keeps a row for a credit memo that arrives
# before its invoice, with total_amount NULL).
READ_MODELS: dict[str, tuple[str, str, str]] = {
    # context: (table, amount column, extra condition)
    "cash_application": ("open_items", "total_amount", "total_amount IS NOT NULL"),
    "collections": ("invoices", "total_amount", "true"),
    "disputes": ("invoice_references", "total_amount", "true"),
    "reporting": ("invoices", "amount", "true"),
}


class VisibilityProbe:
    """First-seen time (time.monotonic) of each of `ids` in each read model. `ids` must sort the
    same in Python and in PostgreSQL (one prefix, fixed-width numbers)."""

    def __init__(self, conns: dict[str, asyncpg.Connection], ids: list[str], interval: float = 0.025) -> None:
        self.conns = conns
        self.ids = sorted(ids)
        self.interval = interval
        self.seen: dict[str, dict[str, float]] = {c: {} for c in conns}
        self._low = {c: 0 for c in conns}
        self._skip: set[str] = set()
        self.polls = 0

    def give_up_on(self, ids: set[str]) -> None:
        """Ids that will never appear (the request failed): stop waiting for them."""
        self._skip |= ids

    def _advance(self, context: str) -> None:
        seen = self.seen[context]
        low = self._low[context]
        while low < len(self.ids) and (self.ids[low] in seen or self.ids[low] in self._skip):
            low += 1
        self._low[context] = low

    def pending(self, context: str) -> bool:
        self._advance(context)
        return self._low[context] < len(self.ids)

    async def poll_once(self) -> None:
        self.polls += 1
        for context, conn in self.conns.items():
            if not self.pending(context):
                continue
            table, _, condition = READ_MODELS[context]
            began = time.monotonic()
            rows = await conn.fetch(f"SELECT invoice_id FROM {table} WHERE invoice_id BETWEEN $1 AND $2 AND {condition}",
                                    self.ids[self._low[context]], self.ids[-1])
            seen = self.seen[context]
            for row in rows:
                seen.setdefault(row[0], began)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            await self.poll_once()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def drain(self, timeout: float) -> bool:
        """Poll until every id not given up on is seen everywhere; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.poll_once()
            if not any(self.pending(c) for c in self.conns):
                return True
            await asyncio.sleep(self.interval)
        return False

    def lags(self, context: str, answered: dict[str, float]) -> list[float]:
        """Seconds from each 201 (answered: id -> time) to its first sighting in `context`."""
        seen = self.seen[context]
        return [max(0.0, seen[i] - t) for i, t in answered.items() if i in seen]

    def missing(self, context: str, answered: dict[str, float]) -> int:
        return sum(1 for i in answered if i not in self.seen[context])


def in_range(ids: list[str], low: str, high: str) -> list[str]:
    return ids[bisect_left(ids, low):bisect_left(ids, high)]


async def read_model_totals(conns: dict[str, asyncpg.Connection]) -> dict[str, dict[str, tuple[int, str]]]:
    """Per read model: currency -> (invoice count, sum of totals as a decimal string)."""
    out: dict[str, dict[str, tuple[int, str]]] = {}
    for context, conn in conns.items():
        table, amount, condition = READ_MODELS[context]
        rows = await conn.fetch(f"SELECT trim(currency) AS currency, count(*) AS n, sum({amount}) AS total FROM {table}"
                                f" WHERE {condition} GROUP BY 1 ORDER BY 1")
        out[context] = {r["currency"]: (r["n"], f"{r['total']:.2f}") for r in rows}
    return out


# ---------------------------------------------------------------------------------------- memory

def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS from /proc/PID/status), in MB (2^20 bytes)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and every process under it (a parse worker, say), summed."""
    return sum(rss for _, rss in tree_rss_parts(pid))


def _role(pid: int) -> str:
    """What a process of a service's tree is: the service, a multiprocessing child (its worker or
    the resource tracker), or its command's first words."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return "gone"
    line = " ".join(a.decode(errors="replace") for a in args if a)
    if "resource_tracker" in line:
        return "resource tracker"
    if "multiprocessing" in line:
        return "worker process"
    if " serve" in line:
        return "service"
    return line[:40]


def tree_rss_parts(pid: int) -> list[tuple[str, float]]:
    """(role, RSS in MB) of a process and of every process under it."""
    parts, stack = [], [pid]
    while stack:
        p = stack.pop()
        parts.append((_role(p), rss_mb(p)))
        stack += _children(p)
    return parts


class MemorySampler:
    """Samples each named process tree's RSS every `interval` seconds; keeps the peak, and what
    made it up (the service process and any worker process under it)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.peak: dict[str, float] = {name: 0.0 for name in pids}
        self.peak_parts: dict[str, list[tuple[str, float]]] = {name: [] for name in pids}
        self.last: dict[str, float] = {name: 0.0 for name in pids}
        self.samples = 0

    def sample(self) -> None:
        self.samples += 1
        for name, pid in self.pids.items():
            parts = tree_rss_parts(pid)
            value = sum(rss for _, rss in parts)
            self.last[name] = value
            if value > self.peak[name]:
                self.peak[name], self.peak_parts[name] = value, parts

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass


# ------------------------------------------------------------------------------- CPU by process

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a process, None when it is gone."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _cmdline(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuAccount:
    """CPU seconds (user + system, from /proc) spent by each part of the platform between two
    snapshots: each service's process tree (its matching or parse workers included), each
    service's PostgreSQL sessions (by database), PostgreSQL's own processes, Kafka, and this
    benchmark with its load generator; anything else on the host apart. Processes that ended
    between the snapshots are not counted (the services' pooled sessions live throughout)."""

    def __init__(self, services: dict[str, int], databases: dict[str, str]) -> None:
        self.services = services                       # name (invoicing#1) -> pid
        self.databases = {db: context for context, db in databases.items()}
        self.bench = os.getpid()

    def _group(self, pid: str, parents: dict[str, int], cmd: str) -> str:
        if cmd.startswith("postgres: "):
            words = cmd.split()
            context = self.databases.get(words[2]) if len(words) > 2 else None
            return f"PostgreSQL sessions of {context}" if context else "PostgreSQL (its own processes, other sessions)"
        if "kafka" in cmd and "java" in cmd:
            return "Kafka"
        seen, p = 0, int(pid)
        while p > 1 and seen < 64:
            for name, service_pid in self.services.items():
                if p == service_pid:
                    return name
            if p == self.bench:
                return "the benchmark and its load generator"
            p = parents.get(str(p), 0)
            seen += 1
        return "other processes on the host"

    def snapshot(self) -> dict[tuple[str, str], float]:
        stats = {pid: _stat(pid) for pid in os.listdir("/proc") if pid.isdigit()}
        parents = {pid: s[0] for pid, s in stats.items() if s}
        out = {}
        for pid, s in stats.items():
            if s:
                out[(pid, self._group(pid, parents, _cmdline(pid)))] = s[1]
        return out

    @staticmethod
    def spent(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, float]:
        groups: dict[str, float] = {}
        for key, seconds in after.items():
            groups[key[1]] = groups.get(key[1], 0.0) + seconds - before.get(key, 0.0)
        return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


# ------------------------------------------------------------------------- database wait events

class WaitSampler:
    """What each service's database sessions are doing, sampled every `interval` from
    pg_stat_activity: per database, how often a non-idle session was seen in each state
    (active on CPU, waiting on a lock, on the client, on I/O, idle in a transaction). Tells
    whether a slow service waits on PostgreSQL or on itself."""

    def __init__(self, conn: asyncpg.Connection, databases: dict[str, str], interval: float = 0.5) -> None:
        self.conn = conn
        self.names = {db: context for context, db in databases.items()}
        self.interval = interval
        self.counts: dict[str, dict[str, int]] = {c: {} for c in databases}
        self.samples = 0

    async def sample(self) -> None:
        self.samples += 1
        rows = await self.conn.fetch(
            "SELECT datname, state, coalesce(wait_event_type || ':' || wait_event, 'CPU') AS what"
            " FROM pg_stat_activity WHERE datname = ANY($1::text[]) AND state <> 'idle' AND pid <> pg_backend_pid()",
            list(self.names))
        for row in rows:
            label = row["what"] if row["state"] == "active" else f"{row['state']} ({row['what']})"
            per = self.counts[self.names[row["datname"]]]
            per[label] = per.get(label, 0) + 1

    def top(self, context: str, n: int = 3) -> list[tuple[str, float]]:
        """The n most frequent states: (state, average sessions in it)."""
        per = self.counts[context]
        return [(k, v / max(1, self.samples)) for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:n]]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sample()
            except (asyncpg.PostgresError, OSError):
                pass
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
