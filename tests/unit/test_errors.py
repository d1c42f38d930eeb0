"""The one exception -> status table, and errors that survive pickling across Ray."""

from __future__ import annotations

import contextlib
import pickle

import grpc
import pytest
from google.rpc import error_details_pb2

from core import errors
from gateway.errors import classify
from gateway.grpc_api.status import to_rpc_status


@pytest.mark.parametrize(
    ("exc", "code", "http"),
    [
        (errors.InvalidArgument("bad", field="x"), grpc.StatusCode.INVALID_ARGUMENT, 400),
        (errors.ModelNotFound("no"), grpc.StatusCode.NOT_FOUND, 404),
        (errors.Overloaded("full"), grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (errors.Unavailable("down"), grpc.StatusCode.UNAVAILABLE, 503),
        (errors.DeadlineExceeded("late"), grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED, 401),
        (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (KeyError("boom"), grpc.StatusCode.INTERNAL, 500),
        (TypeError("server bug"), grpc.StatusCode.INTERNAL, 500),  # never blamed on the client
    ],
)
def test_table(exc, code, http):
    failure = classify(exc)
    assert grpc.StatusCode[failure.code] == code
    assert failure.http_status == http and failure.http_status != 409


def test_ray_errors_map_to_retriable_or_overload():
    from ray.exceptions import ActorDiedError
    from ray.serve.exceptions import BackPressureError

    bp = BackPressureError(num_queued_requests=3, max_queued_requests=2)
    assert classify(bp).code == "RESOURCE_EXHAUSTED" and classify(bp).retry_after_s
    assert classify(ActorDiedError()).code == "UNAVAILABLE"


def test_errors_pickle_with_their_fields():
    exc = errors.Overloaded("queue full", field=None, retry_after_s=2.5)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.Overloaded and back.details == {"retry_after_s": 2.5}
    bad = pickle.loads(pickle.dumps(errors.InvalidArgument("x", field="prompt")))
    assert bad.field == "prompt" and str(bad) == "x"


def test_status_details_carry_field_and_retry_info():
    code, status = to_rpc_status(errors.InvalidArgument("too long", field="prompt"), "r1")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and status.message == "too long"
    br = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(br) and br.field_violations[0].field == "prompt"
    _, status = to_rpc_status(errors.Overloaded("full", retry_after_s=2.5), "r2")
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (2, 500_000_000)


def test_internal_errors_hide_the_exception_and_name_the_request():
    _, status = to_rpc_status(ValueError("secret path /etc/key"), "req-42")
    assert status.message == "internal error (request id req-42)"
    assert "secret" not in str(status)


class _BrokenStream:
    """A Serve streaming response whose replica is lost after `items` chunks."""

    def __init__(self, items: int, exc: BaseException) -> None:
        self.items, self.exc, self.cancelled = items, exc, False

    def __aiter__(self) -> _BrokenStream:
        return self

    async def __anext__(self) -> int:
        if self.items == 0:
            raise self.exc
        self.items -= 1
        return self.items

    def cancel(self) -> None:
        self.cancelled = True


def test_a_stream_whose_replica_is_lost_ends_unavailable_saying_so():
    import asyncio

    from ray.exceptions import ActorDiedError, ActorUnavailableError

    from gateway.calls import Call, relay_stream

    async def drain(stream: _BrokenStream) -> list[int]:
        return [x async for x in relay_stream(stream, Call("grpc", "m", None, "r", None))]

    for lost in (ActorUnavailableError("node gone", None), ActorDiedError()):
        stream = _BrokenStream(2, lost)
        with pytest.raises(errors.Unavailable, match=r"replica was lost .*\(2 chunks sent\)"):
            asyncio.run(drain(stream))
        assert stream.cancelled
        assert classify(errors.Unavailable("x")).code == "UNAVAILABLE"
    other = _BrokenStream(1, errors.InvalidArgument("bad"))  # not a lost replica: unchanged
    with pytest.raises(errors.InvalidArgument):
        asyncio.run(drain(other))


def test_a_cancellation_at_the_clients_deadline_is_counted_as_the_deadline():
    """gRPC sends the time remaining, so our copy of a deadline trails the client's by the
    request's transit time: the cancel a client sends when its deadline fires can arrive while
    ours shows a little time left. That is an expiry; a cancel well before it is not."""
    import asyncio
    import time

    from gateway.calls import DEADLINE_TRANSIT_SLACK_S, Call
    from gateway.dataplane import DataPlane

    def code_with(left: float | None) -> str:
        deadline = None if left is None else time.time() + left
        return DataPlane._code_of(asyncio.CancelledError(), Call("grpc", "m", None, "r", deadline))

    assert code_with(-0.01) == "DEADLINE_EXCEEDED"
    assert code_with(DEADLINE_TRANSIT_SLACK_S / 2) == "DEADLINE_EXCEEDED"
    assert code_with(DEADLINE_TRANSIT_SLACK_S + 5.0) == "CANCELLED"
    assert code_with(None) == "CANCELLED"
    # a stream closed at its yield (gRPC's aclose() of the handler) is the client leaving too
    gone = Call("grpc", "m", None, "r", None)
    assert DataPlane._code_of(GeneratorExit(), gone) == "CANCELLED"
    assert DataPlane._code_of(errors.DeadlineExceeded("x"), Call("grpc", "m", None, "r", None)) == (
        "DEADLINE_EXCEEDED"
    )


def test_a_request_cancelled_while_queued_at_its_deadline_counts_as_expired():
    """Queued at the gate when the client's deadline fires: the cancel that arrives is an
    expiry (the gate's own and the exported counter); one well before the deadline is not."""
    import asyncio
    import time

    from core.config import Modality
    from core.types import ImageRequest
    from gateway.calls import DEADLINE_TRANSIT_SLACK_S, Call
    from tests.standin import echo_config, standin_plane

    async def cancel_queued(left_when_cancelled: float) -> float:
        plane, _ = await standin_plane(echo_config())
        model = plane.config.by_name()["echo-image"]
        gate = plane.admission.gates[model.name]
        gate.learned.samples, gate.learned.rate_per_replica = 1, 1e6  # learned, fast: it queues
        gate.inflight, gate.max_queue_wait_s = gate.bound, 60.0  # full: the request queues
        call = Call("grpc", "Generate", Modality.IMAGE, "r", time.time() + 30)

        async def admitted() -> None:
            request = ImageRequest("r", model.name, count=1)
            async with plane.admission.admit(call, model, [request]):
                raise AssertionError("the gate was full; the request must still be queued")

        task = asyncio.create_task(admitted())
        for _ in range(20):  # let it reach the gate's queue (no time passes)
            await asyncio.sleep(0)
        assert gate.queued_requests() == 1
        call.deadline = time.time() + left_when_cancelled  # the client's deadline draws near
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        exported = plane.metrics.registry.get_sample_value(
            "aigc_admitted_expired_total", {"model": model.name, "tier": "interactive"}
        )
        return exported or 0.0  # counted once, where admission is counted

    assert asyncio.run(cancel_queued(DEADLINE_TRANSIT_SLACK_S / 2)) == 1.0
    assert asyncio.run(cancel_queued(20.0)) == 0.0
