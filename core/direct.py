"""The wire of direct calls (a model's `transport`): the gateway calling a replica's methods on
the replica's own gRPC port, beside Serve's handle path. Both ends import this module;
`services.direct` serves, `gateway.direct` calls.

- Discovery: every replica writes one entry into Ray's cluster key-value store (namespace
  `NAMESPACE`, key `<model>/<replica id>`, an `Endpoint` as JSON) when its port is up and
  deletes it when it drains; the gateway lists the entries with the model's status.
- Calls: two generic gRPC methods, `CALL` (unary) and `STREAM` (server streaming), whose
  request is the pickled `(method name, args, kwargs)` and whose messages are pickled
  `(ok, value)` pairs: a result or stream item, or the exception the method raised (our
  domain errors keep their class, so the gateway's status table reads them as it reads them
  through Serve). The standard library's pickle on both ends, as on the Serve handles: both
  import the domain types (core.types).
- Trust: the entry carries a random token the replica made; a call without it is refused
  before anything is unpickled. Only members of the Ray cluster can read the store, and Ray
  clusters must run on trusted networks anyway (Ray's own security guidance).
- Draining: a replica that is shutting down refuses new calls with `DRAINING` before doing
  anything, so the gateway sends that call through Serve instead, and finishes what it has.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from typing import Any

NAMESPACE = "aigc_direct"
SERVICE = "aigc.direct.Replica"
CALL_METHOD, STREAM_METHOD = "Call", "Stream"
CALL = f"/{SERVICE}/{CALL_METHOD}"
STREAM = f"/{SERVICE}/{STREAM_METHOD}"
TOKEN_HEADER = "x-aigc-direct-token"
# The details of the FAILED_PRECONDITION a draining replica answers before starting anything.
DRAINING = "replica is draining"
# Where replicas bind: "lo-hi" (a range a NetworkPolicy can open), or unset for any free port.
PORTS_ENV = "AIGC_DIRECT_PORTS"
# Messages of any size the model sends (images, audio, video chunks), as the gateway allows.
MESSAGE_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]
# While a call is open the gateway pings every 10 s and gives up on a connection silent for
# 10 s more: a node that vanished without closing its sockets ends the call as a lost replica
# (Ray's own heartbeats do this on Serve's path), not at TCP's timeouts.
CLIENT_OPTIONS = [
    *MESSAGE_OPTIONS,
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging through a long silent call
]
SERVER_OPTIONS = [
    *MESSAGE_OPTIONS,
    ("grpc.so_reuseport", 0),  # grpc's default would let two replicas bind one port
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


@dataclass(frozen=True)
class Endpoint:
    """One replica's direct port, as it registers it."""

    model: str
    replica: str  # Serve's replica id
    address: str  # host:port
    token: str
    actor: str  # the replica's Ray actor name (namespace "serve"): is it still alive?

    @property
    def key(self) -> str:
        return f"{self.model}/{self.replica}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Endpoint:
        return cls(**json.loads(raw))


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(raw: bytes) -> Any:
    return pickle.loads(raw)  # from our own cluster's replicas and gateway (see Trust)


def port_range(spec: str | None) -> range:
    """The ports `PORTS_ENV` names ("10200-10299"); range(0, 1) (any free port) when unset."""
    if not spec:
        return range(0, 1)
    lo, _, hi = spec.partition("-")
    first, last = int(lo), int(hi or lo)
    if not 0 < first <= last < 65536:
        raise ValueError(f"{PORTS_ENV}={spec!r}: want 'first-last' ports, first <= last")
    return range(first, last + 1)
