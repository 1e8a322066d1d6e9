"""The MLLP listener (``hl7.mllp`` asyncio streams, UTF-8), optionally over TLS.

Each connection is served in order: read one framed block, hand it to the pipeline, write
the ACK, repeat. A block that is not MLLP-framed or is too large gets an AR and the
connection is closed (the stream can no longer be trusted to be in step).
"""
from __future__ import annotations

import asyncio
import ssl

from hl7.mllp import InvalidBlockError, start_hl7_server

from services.core.logging import get_logger
from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.errors import DATA_TYPE_ERROR, SEGMENT_SEQUENCE, reject

log = get_logger("ingest.mllp")
ENCODING = "utf-8"
MAX_BLOCK_BYTES = 2 * 1024 * 1024  # 2 MiB per framed message (notes are far smaller)
IDLE_TIMEOUT_S = 300.0  # a connection silent for 5 minutes is closed


class MllpServer:
    def __init__(self, pipeline, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None):
        self.pipeline, self.host, self.port, self.ssl_context = pipeline, host, port, ssl_context
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self._server = await start_hl7_server(self._on_client, self.host, self.port, encoding=ENCODING,
                                              limit=MAX_BLOCK_BYTES, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("mllp.listening", host=self.host, port=self.port, tls=self.ssl_context is not None)
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
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError, ssl.SSLError):
                pass

    async def _serve(self, reader, writer) -> None:
        while True:
            try:
                block = await asyncio.wait_for(reader.readblock(), IDLE_TIMEOUT_S)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, ssl.SSLError):
                return
            except InvalidBlockError:
                await self._refuse(writer, reject(SEGMENT_SEQUENCE, "block does not start with MLLP <VT>"))
                return
            except ValueError:
                await self._refuse(writer, reject(DATA_TYPE_ERROR, f"message larger than {MAX_BLOCK_BYTES} bytes"))
                return
            outcome = await self.pipeline.handle(block)
            writer.writeblock(outcome.ack.encode(ENCODING))
            try:
                await writer.drain()
            except (ConnectionError, ssl.SSLError):
                return

    async def _refuse(self, writer, err) -> None:
        log.info("mllp.bad_frame", error_code=err.code)
        writer.writeblock(build_ack(None, "AR", err).encode(ENCODING))
        try:
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
