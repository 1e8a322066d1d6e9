"""Deliver one ``vigil.triage.decision`` as an HL7 v2 results message (``deliver``).

Order of checks, as in writeback (one results agent, whatever the channel):

1. The tenant's integration profile delivers ``hl7v2`` and the decision is of a result kind
   (urgent-task, routine-task, review-task); otherwise nothing to do (committed).
2. Mode: the decision's own ``mode`` / ``write`` and the ``writeback`` agent's current mode and
   pilot list (``decisions.delivery_suppressed``): suppressed -> finished, nothing sent.
3. Kill switch (tenant-wide or ``writeback``), before the patient look-up and again right before
   sending: ``KillSwitchOn`` (retryable), so the decision waits in the retry topics, then the DLQ,
   and ``vigil dlq replay --stage hl7out`` sends it once the switch is off.
4. PID-3 from where the note came from (``patients``), the message (``message.build``: MSH-10 =
   ``message.control_id(tenant, decision id, 1)``, MSH-7 the decision event's time, so a resend
   is the same message), sent on the tenant's link; only AA / CA counts as delivered. AE, AR, no
   ACK, a closed connection raise a ``RetryableError`` (``link``): retries, then the DLQ.

Logs and metrics carry the decision id, the MSH-10 and codes, never identifiers or quotes.
"""
from __future__ import annotations

from prometheus_client import Counter

from services.core import contracts
from services.core import evidence
from services.core.delivery import delivery_suppressed
from services.core.errors import RetryableError
from services.hl7out import patients
from services.hl7out.deps import Deps
from services.hl7out.message import Target, build, control_id

STAGE = "hl7out"
#: Results channels share the results agent's mode and kill switch.
AGENT = "writeback"
DECISION_TYPE = contracts.TRIAGE_DECISION
RESULT_KINDS = ("urgent-task", "routine-task", "review-task")
CHANNEL = "hl7v2"
#: A decision's result message is version 1; a corrected result would be a later version (new MSH-10).
RESULT_VERSION = 1

MESSAGES = Counter("vigil_hl7out_messages_total", "HL7 results messages by tenant, message type and outcome "
                   "(delivered, or the error code of a failed send)", ("tenant", "message", "outcome"))


class KillSwitchOn(RetryableError):
    code = "kill_switch"


async def deliver(deps: Deps, event, ctx) -> None:
    d = event.data
    tenant = deps.directory.get(ctx.tenant)
    profile = tenant.integration
    if not profile.delivers(CHANNEL) or d["kind"] not in RESULT_KINDS:
        return
    d = await evidence.open_decision(deps.keyring, tenant.id, d)  # the quote arrives sealed (as in writeback)
    state = await deps.modes.state(tenant.id, AGENT)
    why_not = delivery_suppressed(d, state)
    if why_not:
        ctx.log.info("hl7out.suppressed", reason=why_not, decision=d["decisionId"])
        return
    if state.killed:
        raise KillSwitchOn("results are stopped by the kill switch")
    target = profile.hl7_out
    ids = await patients.identifiers(deps, tenant, d)
    ctrl = control_id(tenant.id, d["decisionId"], RESULT_VERSION)
    text = build(d, Target(target.message, target.receiving_application, target.receiving_facility, tenant.id),
                 ids, event.time, ctrl)
    link = await deps.links.get(tenant.id, target)
    if (await deps.modes.state(tenant.id, AGENT, fresh=True)).killed:
        raise KillSwitchOn("results are stopped by the kill switch")
    try:
        ack = await link.send(text, ctrl)
    except RetryableError as exc:
        MESSAGES.labels(tenant.id, target.message, exc.code).inc()
        ctx.log.warning("hl7out.not_delivered", error_code=exc.code, decision=d["decisionId"], control_id=ctrl)
        raise
    MESSAGES.labels(tenant.id, target.message, "delivered").inc()
    ctx.log.info("hl7out.delivered", ack=ack.code, message=target.message, decision=d["decisionId"],
                 control_id=ctrl)
