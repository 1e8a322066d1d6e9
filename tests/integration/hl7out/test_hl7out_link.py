"""The MLLP link against the scripted receiver (loopback, no broker): what each answer becomes."""
from __future__ import annotations

import asyncio

import pytest

from services.core.errors import classify
from services.core.integration import Hl7Out
from services.hl7out.link import Hl7Refused, Hl7Undelivered, Link
from tests.fixtures.hl7_receiver import Hl7Receiver
from tests.fixtures.ports import free_port


def message(ctrl: str) -> str:
    return f"MSH|^~\\&|VIGIL|T|ENGINE|HOSP|20261120093000||ORU^R01^ORU_R01|{ctrl}|P|2.5.1\rPID|1||M1\r"


@pytest.fixture
async def receiver():
    r = Hl7Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_each_answer_and_failure(receiver):
    link = Link(Hl7Out(host="127.0.0.1", port=receiver.port, timeout_s=0.5))
    try:
        assert (await link.send(message("C1"), "C1")).code == "AA"
        receiver.script("AE", "AR", "hang", "close")
        for code in ("hl7_ae", "hl7_ar"):
            with pytest.raises(Hl7Refused) as err:
                await link.send(message("C2"), "C2")
            assert err.value.code == code and classify(err.value).retryable
        with pytest.raises(Hl7Undelivered) as err:
            await link.send(message("C3"), "C3")
        assert err.value.code == "ack_timeout"
        with pytest.raises(Hl7Undelivered) as err:
            await link.send(message("C4"), "C4")
        assert err.value.code == "connection_closed" and classify(err.value).retryable
        assert (await link.send(message("C5"), "C5")).code == "AA"
        # AE and AR kept the connection; the hang and the close each cost one: 3 opened in all
        assert link.opened == 3 and receiver.connections == 3
        with pytest.raises(Hl7Undelivered) as err:   # an ACK naming another message
            await link.send(message("C6"), "C-other")
        assert err.value.code == "ack_mismatch"
    finally:
        await link.close()


async def test_a_connection_the_engine_dropped_is_reopened_within_the_send(receiver):
    link = Link(Hl7Out(host="127.0.0.1", port=receiver.port, timeout_s=2.0))
    try:
        assert (await link.send(message("R1"), "R1")).code == "AA"
        await receiver.stop()   # drops the open connection
        await receiver.start()  # back on the same port before the next result
        assert (await link.send(message("R2"), "R2")).code == "AA"
        assert [r.control_id for r in receiver.received] == ["R1", "R2"] and link.opened == 2
    finally:
        await link.close()


async def test_nothing_listening_is_connect_failed():
    link = Link(Hl7Out(host="127.0.0.1", port=free_port(), timeout_s=1.0))
    with pytest.raises(Hl7Undelivered) as err:
        await link.send(message("D1"), "D1")
    assert err.value.code == "connect_failed"


async def test_a_cancelled_send_leaves_no_half_read_connection(receiver):
    link = Link(Hl7Out(host="127.0.0.1", port=receiver.port, timeout_s=5.0))
    try:
        receiver.script("hang")
        task = asyncio.create_task(link.send(message("X1"), "X1"))
        await receiver.wait(lambda r: r.received)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await link.send(message("X2"), "X2")).code == "AA" and link.opened == 2
    finally:
        await link.close()
