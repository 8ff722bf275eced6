"""What Kafka knows about a consumer group: used to refuse a rebuild while the group's
consumers are running (they would carry on from their in-memory positions and the replay
would never happen)."""
from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient

_NO_ERROR = 0
_GROUP_ID_NOT_FOUND = 69  # newer brokers answer this for a group that never existed


class GroupStateUnknown(RuntimeError):
    """Kafka could not be asked (unreachable, or it answered with an error)."""


async def active_members(bootstrap: str, group_id: str, timeout_seconds: float = 10.0) -> list[str]:
    """client_id@host of every member of the group right now; empty when nobody consumes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{group_id}-admin",
                                request_timeout_ms=int(timeout_seconds * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_seconds)
        responses = await asyncio.wait_for(admin.describe_consumer_groups([group_id]), timeout_seconds)
    except Exception as exc:  # any failure means we cannot vouch for the group being idle
        raise GroupStateUnknown(f"cannot describe consumer group {group_id} at {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()
    members: list[str] = []
    for response in responses:
        for group in response.to_object()["groups"]:
            if group["group"] != group_id:
                continue
            if group["error_code"] not in (_NO_ERROR, _GROUP_ID_NOT_FOUND):
                raise GroupStateUnknown(f"describing consumer group {group_id} failed with error {group['error_code']}")
            members += [f"{m['client_id']}@{m['client_host']}" for m in group["members"]]
    return members
