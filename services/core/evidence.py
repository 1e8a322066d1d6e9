"""Evidence quotes on the bus: sealed with the tenant data key, opened by the stages that need them.

A quote is verbatim note text (PHI). Since version 2 of ``vigil.extraction.findings`` and
``vigil.triage.decision``, an event carries it as ``quoteSealed`` - base64 of
``crypto.seal`` under the tenant's data key, purpose ``event-quote`` - never as ``quote``,
so a record read from the broker without the tenant key (an unauthenticated embedded broker, a
misconfigured ACL, a copied topic) shows offsets, categories and references but no note text.
A batch run's ``vigil.ehr.resource-changed`` carries its whole note the same way
(``note.textSealed``, purpose ``event-note``: ``seal_note`` / ``open_note``).

    data = await seal_findings(keyring, tenant, data)     # before ctx.emit (extraction)
    data = await open_findings(keyring, tenant, data)     # on receipt (triage): "quote" back in memory
    data = await seal_decision(keyring, tenant, data)     # triage; open_decision in writeback

Opening accepts an event of version 1 (a plain ``quote``, e.g. an old dead letter replayed):
it is handled as before. Producing one is refused (``schemas.check_outgoing``: the schemas mark
the plain ``quote`` deprecated). A sealed quote that does not open for this tenant is a
``DecryptionError`` (fatal: the event goes to the dead-letter queue).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses

from services.core import contracts
from services.core.crypto import DecryptionError, Keyring
from services.core.events import Event

PURPOSE = "event-quote"
#: Purpose of quotes at rest: triage's decision ledger and cdshooks' read model (``cdshooks_findings``).
LEDGER_PURPOSE = "ledger-quote"
#: Purpose of a whole note's text on the bus (a batch run's events carry their notes: ``seal_note``).
NOTE_PURPOSE = "event-note"
#: A batch run's note up to this many characters travels sealed in its event; a longer one by
#: reference only (read through ``tools.GetNote``), well within the broker's record size.
CARRIED_NOTE_MAX_CHARS = 64_000


async def seal_text(keyring: Keyring, tenant: str, text: str, purpose: str = PURPOSE) -> str:
    return base64.b64encode(await keyring.encrypt(tenant, text.encode("utf-8"), purpose)).decode("ascii")


async def open_text(keyring: Keyring, tenant: str, sealed: str, purpose: str = PURPOSE) -> str:
    try:
        blob = base64.b64decode(sealed.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError):
        raise DecryptionError("sealed text is not base64") from None
    return (await keyring.decrypt(tenant, blob, purpose)).decode("utf-8")


async def seal_note(keyring: Keyring, tenant: str, text: str) -> str:
    """A note's whole text for its event (``vigil.ehr.resource-changed``'s ``note.textSealed``)."""
    return await seal_text(keyring, tenant, text, NOTE_PURPOSE)


async def open_note(keyring: Keyring, tenant: str, sealed: str) -> str:
    return await open_text(keyring, tenant, sealed, NOTE_PURPOSE)


async def _sealed(keyring: Keyring, tenant: str, item: dict) -> dict:
    if "quote" not in item:
        return item
    out = {k: v for k, v in item.items() if k != "quote"}
    out["quoteSealed"] = await seal_text(keyring, tenant, item["quote"])
    return out


async def _opened(keyring: Keyring, tenant: str, item: dict) -> dict:
    if "quoteSealed" not in item:
        return item  # version 1: the quote travelled in clear
    out = {k: v for k, v in item.items() if k != "quoteSealed"}
    out["quote"] = await open_text(keyring, tenant, item["quoteSealed"])
    return out


async def seal_findings(keyring: Keyring, tenant: str, data: dict) -> dict:
    """A findings payload whose every ``findings[].quote`` is replaced by ``quoteSealed``."""
    return {**data, "findings": [await _sealed(keyring, tenant, f) for f in data.get("findings") or []]}


async def open_findings(keyring: Keyring, tenant: str, data: dict) -> dict:
    """A findings payload (either version) with every ``findings[].quote`` in clear."""
    return {**data, "findings": [await _opened(keyring, tenant, f) for f in data.get("findings") or []]}


async def seal_decision(keyring: Keyring, tenant: str, data: dict) -> dict:
    """A decision payload whose ``finding.quote`` is replaced by ``finding.quoteSealed``."""
    finding = data.get("finding")
    return {**data, "finding": await _sealed(keyring, tenant, finding)} if isinstance(finding, dict) else data


async def open_decision(keyring: Keyring, tenant: str, data: dict) -> dict:
    """A decision payload (either version) with ``finding.quote`` in clear."""
    finding = data.get("finding")
    return {**data, "finding": await _opened(keyring, tenant, finding)} if isinstance(finding, dict) else data


#: Event type -> (seal, open) of its payload: the one table of event types that carry quotes.
BY_TYPE = {
    contracts.EXTRACTION_FINDINGS: (seal_findings, open_findings),
    contracts.TRIAGE_DECISION: (seal_decision, open_decision),
}


async def seal_event(keyring: Keyring, event: Event) -> Event:
    """The event with its quotes sealed (events of other types unchanged)."""
    pair = BY_TYPE.get(event.type)
    return event if pair is None else dataclasses.replace(event, data=await pair[0](keyring, event.tenant, event.data))


async def open_event(keyring: Keyring, event: Event) -> Event:
    """The event with its quotes in clear (events of other types unchanged)."""
    pair = BY_TYPE.get(event.type)
    return event if pair is None else dataclasses.replace(event, data=await pair[1](keyring, event.tenant, event.data))
