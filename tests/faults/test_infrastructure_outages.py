"""Kafka stopped for 60 s and PostgreSQL for 15 s under steady write load.

Kafka down: the APIs keep accepting writes (the events table is the outbox), readiness shows the
relays cannot publish, the broker CAN be started again (its ports lie outside the ephemeral
range), and every read model converges to exactly what was accepted.
PostgreSQL down: writes fail and are retried with the same Idempotency-Key, every instance says
it is not ready while the database is away and ready again after, and nothing accepted is lost
or applied twice."""
from __future__ import annotations

from tests.support.platform import PUBLISHERS

KAFKA_DOWN_S = 60
PG_DOWN_S = 15
STEADY_S = 8


def _reports_broker_trouble(body: dict | None) -> bool:
    """The readiness answer admits the relay cannot publish (an error, not leader, not ready)."""
    if not isinstance(body, dict):
        return False
    if body.get("status") != "ready":
        return True
    relay = (body.get("checks") or {}).get("relay")
    return isinstance(relay, dict) and bool(relay.get("last_error") or relay.get("error")
                                            or relay.get("healthy") is False or relay.get("publishing") is False)


async def test_kafka_stopped_60s_then_restarted(faults):
    async with faults.experiment("kafka-stopped-60s", convergence_bound=180,
                                 description=f"Kafka broker stopped {KAFKA_DOWN_S} s under load, then restarted") as exp:
        await exp.hold(STEADY_S)
        exp.mark("fault_start")
        exp.figures["kafka_stop_s"] = round(await faults.infra.run("kafka.sh", "down"), 2)
        await exp.hold(KAFKA_DOWN_S)
        exp.mark("restart_begin")
        # The broker must come back: the bind of its ports cannot fail (ports below 32768).
        exp.figures["kafka_restart_s"] = round(await faults.infra.run("kafka.sh", "up", timeout=180), 2)
        exp.mark("fault_end")
        await exp.hold(STEADY_S)
        recovery = await exp.converge()

        during = faults.load.summary(exp.marks["fault_start"], exp.marks["fault_end"])
        for context in ("invoicing", "cash_application"):
            accepted = during.get(context, {}).get("accepted", 0)
            assert accepted > 0, f"{context} accepted no write while Kafka was down: {during}"
        # Readiness, 45 s into the outage (past the 30 s after which a consumer without an
        # answered fetch, or a relay failing to publish, stops saying ready): every answer of
        # every publishing instance admits it cannot publish; after recovery all are ready again.
        window = (exp.marks["fault_start"] + 45, exp.marks["restart_begin"])
        for context in PUBLISHERS:
            name = faults.platform.instances[context][0].name
            samples = exp.probe.of(name, *window)
            assert samples, f"no readiness sample of {name} during the outage"
            honest = [s for s in samples if _reports_broker_trouble(s.body) or s.status is None]
            exp.figures.setdefault("readiness_admits_broker_outage", {})[name] = f"{len(honest)}/{len(samples)}"
            assert len(honest) == len(samples), \
                f"{name} claimed all was well while Kafka was down: {[s.body for s in samples if s not in honest][:2]}"
        await _all_ready_again(exp, faults)
        assert recovery <= exp.convergence_bound


async def test_postgresql_stopped_15s_then_restarted(faults):
    async with faults.experiment("postgresql-stopped-15s", convergence_bound=120,
                                 description=f"PostgreSQL stopped {PG_DOWN_S} s (fast shutdown) under load, then restarted") as exp:
        await exp.hold(STEADY_S)
        exp.mark("fault_start")
        exp.figures["pg_stop_s"] = round(await faults.infra.run("pg.sh", "down"), 2)
        exp.mark("pg_stopped")
        await exp.hold(PG_DOWN_S)
        exp.mark("restart_begin")
        exp.figures["pg_restart_s"] = round(await faults.infra.run("pg.sh", "up", timeout=120), 2)
        exp.mark("fault_end")
        await exp.hold(STEADY_S)
        recovery = await exp.converge()

        # While the database was away (from the stop's end to the restart), no instance said ready.
        window = (exp.marks["pg_stopped"] + 1, exp.marks["restart_begin"])
        for instances in faults.platform.instances.values():
            for instance in instances:
                samples = exp.probe.of(instance.name, *window)
                assert samples, f"no readiness sample of {instance.name} during the outage"
                claimed = [s for s in samples if s.ready]
                assert not claimed, f"{instance.name} said ready while PostgreSQL was down: {claimed[0].body}"
        failures = faults.load.summary(exp.marks["pg_stopped"], exp.marks["restart_begin"])
        exp.figures["answers_while_db_down"] = failures
        # A database outage is answered 503 application/problem+json (retry later), never a bare 500.
        answered = [a for a in faults.load.attempts
                    if exp.marks["pg_stopped"] <= a.ended < exp.marks["restart_begin"] and a.status and a.status >= 500]
        wrong = [(a.context, a.status, a.content_type) for a in answered
                 if a.status != 503 or not (a.content_type or "").startswith("application/problem+json")]
        assert not wrong, f"{len(wrong)} of {len(answered)} 5xx answers during the outage were not 503 problem+json: {wrong[:5]}"
        await _all_ready_again(exp, faults)
        assert recovery <= exp.convergence_bound


async def _all_ready_again(exp, faults, bound: float = 60) -> None:
    async def all_ready():
        latest = {}
        for s in exp.probe.samples:
            latest[s.instance] = s
        live = [i.name for instances in faults.platform.instances.values() for i in instances]
        return all(n in latest and latest[n].ready and latest[n].t > exp.marks["fault_end"] for n in live)
    _, took = await exp.wait_for("every instance ready again", all_ready, bound)
    exp.figures["ready_again_after_convergence_s"] = round(took, 2)
