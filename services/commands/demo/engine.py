"""The interface engine an Epic-like demo tenant has: a small MLLP receiver that answers every
message AA and counts what it received (per MSH-10), standing in for Epic Bridges, Rhapsody or
Mirth on the results side. It runs in a thread of the demo process, with its own event loop, for
as long as the pipeline is up, so hl7out can deliver whenever triage decides.

Framing is python-hl7's (``hl7.mllp``), as in ``services.core.hl7wire``; the acknowledgement is
an original-mode ACK (MSA-1 AA, MSA-2 the message's MSH-10) whose fields go through
``hl7wire.escape``. Nothing received is logged: results carry patient identifiers and quotes.
"""
from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from hl7.mllp import start_hl7_server

from services.core import hl7wire

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Delivered:
    control_id: str      # MSH-10
    message_type: str    # MSH-9, e.g. ORU^R01^ORU_R01
    sender: str          # MSH-3
    facility: str        # MSH-6 (the receiving facility the sender named)
    at: datetime         # when it was acknowledged


def _fields(block: str) -> list[str]:
    msh = block.replace("\r\n", "\r").replace("\n", "\r").split("\r", 1)[0]
    if not msh.startswith("MSH") or len(msh) < 8:
        raise ValueError("no MSH segment")
    sep = msh[3]
    return ["MSH", sep] + msh[4:].split(sep)  # index n is MSH-n


def ack(fields: list[str], code: str = "AA") -> str:
    """An original-mode ACK to a message whose MSH fields are ``fields`` (MSH-n at index n)."""
    def f(n: int) -> str:
        return fields[n] if len(fields) > n else ""
    trigger = f(9).split("^")[1] if "^" in f(9) else ""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    e = hl7wire.escape
    return "\r".join([
        f"MSH|^~\\&|{e(f(5)) or 'ENGINE'}|{e(f(6))}|{e(f(3))}|{e(f(4))}|{stamp}||ACK^{e(trigger)}^ACK|"
        f"A{e(f(10))[:19]}|P|2.5.1",
        f"MSA|{code}|{e(f(10))}"]) + "\r"


class InterfaceEngine:
    """``start()`` (blocking until listening), ``received`` (in order), ``accepted()``, ``stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._received: list[Delivered] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- what it received --------------------------------------------------------------------
    @property
    def received(self) -> list[Delivered]:
        with self._lock:
            return list(self._received)

    def accepted(self) -> collections.Counter:
        """MSH-10 -> how many times it was acknowledged AA (a resend shows as 2)."""
        return collections.Counter(d.control_id for d in self.received)

    # -- up and down -------------------------------------------------------------------------
    def start(self) -> int:
        self._thread = threading.Thread(target=self._run, name="interface-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"the interface engine stand-in could not listen on {self.host}:{self.port}: "
                               f"{type(self._error).__name__ if self._error else 'timeout'}")
        return self.port

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                start_hl7_server(self._on_client, self.host, self.port, encoding=hl7wire.ENCODING))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _on_client(self, reader, writer) -> None:
        try:
            while True:
                try:
                    block = (await reader.readblock()).decode(hl7wire.ENCODING)
                except (asyncio.IncompleteReadError, ConnectionError, UnicodeDecodeError):
                    return
                try:
                    fields = _fields(block)
                except ValueError:
                    writer.writeblock(ack(["MSH", "|", "^~\\&"], "AR").encode(hl7wire.ENCODING))
                    await writer.drain()
                    continue
                with self._lock:
                    self._received.append(Delivered(fields[10] if len(fields) > 10 else "",
                                                    fields[9] if len(fields) > 9 else "", fields[3], fields[6],
                                                    datetime.now(timezone.utc)))
                writer.writeblock(ack(fields).encode(hl7wire.ENCODING))
                await writer.drain()
        finally:
            writer.close()

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or self._thread is None:
            return

        async def close() -> None:
            if server is not None:
                server.close()
                await server.wait_closed()
            loop.stop()
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), loop)
            self._thread.join(START_TIMEOUT_S)
        self._loop = self._thread = None

