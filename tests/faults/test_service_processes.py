"""Service processes under steady write load: each of the five SIGKILLed and restarted; and a
second instance of each started, then the first SIGKILLed (a rolling replacement). Nothing
accepted is lost or applied twice: consumers resume at the offsets their database stored, the
outbox relay re-sends from its checkpoint, and a retried request with the same Idempotency-Key
answers the first response, whichever instance it reaches."""
from __future__ import annotations

import pytest

from tests.support.platform import CONTEXTS

STEADY_S = 5
DOWN_S = 3


@pytest.mark.parametrize("context", CONTEXTS)
async def test_service_sigkilled_and_restarted(faults, context):
    platform = faults.platform
    async with faults.experiment(f"sigkill-{context}", convergence_bound=90,
                                 description=f"{context} SIGKILLed under load, restarted {DOWN_S} s later") as exp:
        await exp.hold(STEADY_S)
        victim = platform.instances[context][0]
        exp.mark("fault_start")
        victim.kill()
        await exp.hold(DOWN_S)
        exp.mark("fault_end")
        replacement = await platform.restart(victim)
        exp.figures["restart_to_ready_s"] = round(exp.mark("replacement_ready") - exp.marks["fault_end"], 2)
        await exp.hold(STEADY_S)
        await exp.converge()

        # The killed process answered nothing while it was dead; the replacement says ready.
        dead = exp.probe.of(victim.name, exp.marks["fault_start"] + 0.5, exp.marks["fault_end"])
        assert all(s.status is None for s in dead), f"{victim.name} answered while killed: {dead}"
        ready = exp.probe.of(replacement.name, exp.marks["replacement_ready"])
        assert ready and ready[-1].ready, f"{replacement.name} not ready after convergence: {ready[-1:]}"


@pytest.mark.parametrize("context", CONTEXTS)
async def test_second_instance_started_then_first_killed(faults, context):
    platform = faults.platform
    async with faults.experiment(f"second-instance-{context}", convergence_bound=90,
                                 description=f"a second {context} instance started under load, then the first SIGKILLed") as exp:
        await exp.hold(STEADY_S)
        first = platform.instances[context][0]
        exp.mark("fault_start")
        second = await platform.start(context)
        exp.figures["second_ready_s"] = round(exp.mark("second_ready") - exp.marks["fault_start"], 2)
        await exp.hold(STEADY_S)  # two instances side by side: consumers share partitions, one relay leads
        platform.make_primary(second)  # the load balancer sends new requests to the second
        first.kill()
        platform.forget(first)
        exp.mark("fault_end")
        await exp.hold(STEADY_S)
        await exp.converge()

        # The second said ready beside the first (platform.start waited for it), and is ready
        # after the first is gone and everything converged.
        after = exp.probe.of(second.name, exp.marks["fault_end"])
        assert after and after[-1].ready, f"{second.name} not ready after the first was killed: {after[-1:]}"
