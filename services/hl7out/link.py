"""One MLLP connection per tenant to its interface engine: reused, reopened when it breaks.

    link = Link(tenant, hl7_out_profile)
    ack = await link.send(text, control_id)      # returns only on AA / CA; raises otherwise
    await link.close()

MLLP is one message at a time per connection (send a block, wait for its ACK), so a link sends
under a lock; the stage's partitions for one tenant queue on it. Outcomes:

- AA (or CA, an enhanced-mode commit accept): delivered;
- AE / CE: ``Hl7Refused`` (retryable, code ``hl7_ae``), the connection is kept;
- AR / CR: ``Hl7Refused`` (retryable, code ``hl7_ar``); some engines answer AR while their
  downstream system is down, so it is retried, then dead-lettered for an operator;
- no ACK within ``timeout_s``: ``Hl7Undelivered`` (``ack_timeout``) and the connection is closed
  (a late ACK must never be read as the answer to the next message);
- refused / reset / closed connection, a TLS failure: ``Hl7Undelivered`` (``connect_failed`` /
  ``connection_closed``); a connection that was reused and turns out closed by the engine while
  idle is reopened and the message sent once more within the same call (same MSH-10);
- an ACK for another control id or one that cannot be read: ``Hl7Undelivered`` (``ack_mismatch`` /
  ``ack_unreadable``), connection closed.
Every failure is a ``RetryableError``: the stage runtime retries (quick tries, retry topics) and
then dead-letters; a resend carries the same MSH-10, so the receiver can drop what it has.

TLS (``tls = true``): server certificate and host name verified against ``ca_file`` (else the
system's trust store). Nothing here logs message content; errors carry codes, never PHI.
"""
from __future__ import annotations

import asyncio
import ssl

from hl7.mllp import InvalidBlockError, open_hl7_connection

from services.core.errors import FatalError, RetryableError
from services.core.hl7wire import ENCODING, Ack, AckError, parse_ack
from services.core.integration import Hl7Out
from services.core.tenantcache import TenantCache

#: An ACK is a few hundred bytes; anything past this is not an ACK.
MAX_ACK_BYTES = 64 * 1024
BROKEN = (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError, InvalidBlockError, ValueError)


class Hl7Undelivered(RetryableError):
    code = "hl7_undelivered"


class Hl7Refused(RetryableError):
    """The receiver answered AE or AR."""

    def __init__(self, ack: Ack):
        kind = "hl7_ae" if ack.code in ("AE", "CE") else "hl7_ar"
        super().__init__(f"the interface engine answered {ack.code}"
                         + (f" (error {ack.error_code})" if ack.error_code else ""), code=kind)
        self.ack = ack


def client_context(target: Hl7Out) -> ssl.SSLContext | None:
    """The TLS context of a profile (None without TLS). A ``ca_file`` that cannot be loaded is a
    FatalError naming the setting: the decision is dead-lettered (replay it once the file is fixed)."""
    if not target.tls:
        return None
    try:
        return ssl.create_default_context(cafile=target.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise FatalError(f"integration.hl7_out.ca_file={target.ca_file!r}: cannot load "
                         f"({getattr(exc, 'strerror', None) or type(exc).__name__})", code="bad_ca_file") from None


class Link:
    def __init__(self, target: Hl7Out):
        self.target = target
        self._context = client_context(target)
        self._lock = asyncio.Lock()
        self._reader = self._writer = None
        self.opened = 0            # connections opened (reuse shows as few opens for many messages)

    async def _open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(open_hl7_connection(
                self.target.host, self.target.port, encoding=ENCODING, limit=MAX_ACK_BYTES, ssl=self._context,
                server_hostname=self.target.host if self._context else None), self.target.timeout_s)
        except (TimeoutError, *BROKEN) as exc:
            self._reader = self._writer = None
            raise Hl7Undelivered(f"cannot connect to the interface engine ({type(exc).__name__})",
                                 code="connect_failed") from None
        self.opened += 1

    def _drop(self) -> None:
        """Forget the connection at once (no await): its next bytes may be an ACK nobody waits for."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except BROKEN:
                pass

    async def _exchange(self, block: bytes) -> bytes:
        self._writer.writeblock(block)
        await self._writer.drain()
        return await asyncio.wait_for(self._reader.readblock(), self.target.timeout_s)

    async def send(self, text: str, control_id: str) -> Ack:
        block = text.encode(ENCODING)
        async with self._lock:
            for _ in range(2):
                reused = self._writer is not None
                if not reused:
                    await self._open()
                try:
                    answer = await self._exchange(block)
                except asyncio.CancelledError:  # e.g. the handler's deadline: the ACK may still come
                    self._drop()
                    raise
                except TimeoutError:
                    await self.close()
                    raise Hl7Undelivered(f"no ACK within {self.target.timeout_s:g} s", code="ack_timeout") from None
                except BROKEN as exc:
                    await self.close()
                    if reused:  # closed by the engine while idle: reopen once
                        continue
                    raise Hl7Undelivered(f"the connection broke before the ACK ({type(exc).__name__})",
                                         code="connection_closed") from None
                break
            else:
                raise Hl7Undelivered("the connection broke twice before the ACK", code="connection_closed")
            try:
                ack = parse_ack(answer.decode(ENCODING, errors="replace"))
            except AckError:
                await self.close()
                raise Hl7Undelivered("the answer is not a readable ACK", code="ack_unreadable") from None
            if ack.control_id != control_id:
                await self.close()
                raise Hl7Undelivered("the ACK names another message", code="ack_mismatch")
        if not ack.accepted:
            raise Hl7Refused(ack)
        return ack


class Links:
    """The tenants' links, made when first used; a changed profile gets a new link."""

    def __init__(self):
        self._links: TenantCache[Link] = TenantCache(name="mllp")

    async def get(self, tenant: str, target: Hl7Out) -> Link:
        return await self._links.get(tenant, lambda: Link(target), ident=target)

    def _drop(self) -> None:
        """Forget the connection at once (no await): its next bytes may be an ACK nobody waits for."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        await self._links.close()
