"""``kind: tcp`` with ``protocol:``: just enough of a protocol to know the service answers.

One module per protocol, each an ``async def talk(wire) -> Observation`` that never
sends credentials, reads within ``max_read_bytes`` and raises ProbeFailure for a peer
that does not speak the protocol. An answer that proves the server alive but refuses
this client (Redis NOAUTH, MySQL "host not allowed") is up, with the refusal in details.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from probes.base import Observation
from probes.tcp_protocols import amqp, mysql, postgres, redis, smtp, ssh
from probes.tcp_protocols.wire import Wire

Talk = Callable[[Wire], Awaitable[Observation]]

CONVERSATIONS: dict[str, Talk] = {
    "amqp": amqp.talk,
    "mysql": mysql.talk,
    "postgres": postgres.talk,
    "redis": redis.talk,
    "smtp": smtp.talk,
    "ssh": ssh.talk,
}

__all__ = ["CONVERSATIONS", "Talk", "Wire"]
