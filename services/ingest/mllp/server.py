"""The MLLP listener (``hl7.mllp`` asyncio streams, UTF-8), optionally over TLS.

Each connection is served in order: read one framed block, hand it to the pipeline, write
the ACK, repeat. Transport limits (``MllpLimits``, from ``IngestSettings``), each with a log
line and a count in ``vigil_ingest_mllp_closed_total{reason}``:

- a block that is not MLLP-framed (``bad_frame``) or larger than ``max_message_bytes``
  (``too_large``) gets an AR and the connection is closed (the stream can no longer be trusted
  to be in step);
- a connection silent for ``idle_timeout_s`` is closed (``idle``): interface engines reconnect;
- beyond ``max_connections`` open connections a new one is closed at once (``limit``) so one
  misbehaving sender cannot starve the others; the ones already open keep working.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from hl7.mllp import InvalidBlockError, start_hl7_server
from prometheus_client import Counter, Gauge

from services.core.hl7wire import ENCODING
from services.core.logging import get_logger
from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.errors import DATA_TYPE_ERROR, SEGMENT_SEQUENCE, reject

log = get_logger("ingest.mllp")
MAX_BLOCK_BYTES = 2 * 1024 * 1024  # 2 MiB per framed message (notes are far smaller)
IDLE_TIMEOUT_S = 300.0  # a connection silent for 5 minutes is closed
MAX_CONNECTIONS = 64  # interface engines hold a few long-lived connections per feed

OPEN = Gauge("vigil_ingest_mllp_connections", "Open MLLP connections")
CLOSED = Counter("vigil_ingest_mllp_closed_total", "MLLP connections closed by the listener, by reason", ("reason",))


@dataclass(frozen=True)
class MllpLimits:
    max_message_bytes: int = MAX_BLOCK_BYTES
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024 or self.idle_timeout_s <= 0 or self.max_connections < 1:
            raise ValueError("MLLP limits must be positive (max_message_bytes at least 1024)")


class MllpServer:
    def __init__(self, pipeline, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 limits: MllpLimits | None = None):
        self.pipeline, self.host, self.port, self.ssl_context = pipeline, host, port, ssl_context
        self.limits = limits or MllpLimits()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def connections(self) -> int:
        return len(self._tasks)

    async def start(self) -> int:
        self._server = await start_hl7_server(self._on_client, self.host, self.port, encoding=ENCODING,
                                              limit=self.limits.max_message_bytes, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("mllp.listening", host=self.host, port=self.port, tls=self.ssl_context is not None,
                 max_connections=self.limits.max_connections, idle_timeout_s=self.limits.idle_timeout_s,
                 max_message_bytes=self.limits.max_message_bytes)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _on_client(self, reader, writer) -> None:
        task = asyncio.current_task()
        if len(self._tasks) >= self.limits.max_connections:
            self._closed("limit", open_connections=len(self._tasks))
            await self._close(writer)
            return
        if task is not None:
            self._tasks.add(task)
        OPEN.set(len(self._tasks))
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)
            OPEN.set(len(self._tasks))
            await self._close(writer)

    @staticmethod
    async def _close(writer) -> None:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError, ssl.SSLError):
            pass

    @staticmethod
    def _closed(reason: str, **fields) -> None:
        CLOSED.labels(reason).inc()
        log.info("mllp.connection_closed", reason=reason, **fields)

    async def _serve(self, reader, writer) -> None:
        while True:
            try:
                block = await asyncio.wait_for(reader.readblock(), self.limits.idle_timeout_s)
            except asyncio.TimeoutError:
                self._closed("idle", idle_timeout_s=self.limits.idle_timeout_s)
                return
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return
            except InvalidBlockError:
                self._closed("bad_frame")
                await self._refuse(writer, reject(SEGMENT_SEQUENCE, "block does not start with MLLP <VT>"))
                return
            except ValueError:
                self._closed("too_large", max_message_bytes=self.limits.max_message_bytes)
                await self._refuse(writer, reject(DATA_TYPE_ERROR,
                                                  f"message larger than {self.limits.max_message_bytes} bytes"))
                return
            outcome = await self.pipeline.handle(block)
            writer.writeblock(outcome.ack.encode(ENCODING))
            try:
                await writer.drain()
            except (ConnectionError, ssl.SSLError):
                return

    async def _refuse(self, writer, err) -> None:
        writer.writeblock(build_ack(None, "AR", err).encode(ENCODING))
        try:
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
