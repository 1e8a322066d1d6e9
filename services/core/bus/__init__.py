"""The event bus: publish events, and run a stage (consume -> handle -> produce -> commit).

A stage is a handler plus a ``StageSpec``::

    from services.core.bus import StageSpec, run_stage
    from services.core.errors import RetryableError

    async def extract(event, ctx):                      # event: services.core.events.Event
        if event.data["resourceType"] != "DocumentReference":
            return                                      # nothing to do; still committed
        findings = await find_irae(event.data)          # may raise RetryableError / FatalError
        out = ctx.child("vigil.extraction.findings", findings)   # deterministic id, same key
        ctx.emit("findings", out)                       # produced (acks=all) before the commit

    SPEC = StageSpec(name="extraction", input_stream="ehr-events", handler=extract)

    async def main(settings, tenant_id, stop_event):
        await run_stage(settings, tenant_id, SPEC, stop_event)   # until stop_event is set

What the runtime guarantees:
- the input offset is committed only after the handler succeeded and every ``ctx.emit``-ed
  output was acknowledged by the broker; per-partition order, partitions in parallel;
- ``RetryableError`` (and timeouts, connection errors, 5xx, 429 - see ``core/errors.classify``)
  gets ``RetryPolicy.quick_attempts`` quick tries, then goes to ``vigil.<t>.<stage>.retry.<n>``
  with the ``RetryPolicy.retry_backoff_s`` schedule, then to ``vigil.<t>.dlq``; while a
  patient's event waits in retry, that patient's later events are parked behind it;
- ``FatalError``, ``ValidationError``, unknown exceptions and malformed or schema-invalid
  input go straight to the DLQ (bounded ``dlq-*`` headers, the stack and attempt history
  among them; no table: the control service indexes the dlq topic and serves it); the
  consumer never crashes on bad input;
- a redelivered event whose processing completed is skipped (Redis ledger, TTL); a database
  side effect is exactly-once when guarded by ``await ctx.claim(conn)`` in its transaction;
- ``StageRunner.health()["live"]`` turns false when the poll loop stops making progress.

Topics: ``await ensure_stage_topics(settings, tenant, [SPEC])`` creates the tenant's streams
and the stage's retry topics (tests call it before starting a stage).
"""
from services.core.bus.policy import ConsumerTuning, RetryPolicy
from services.core.bus.publisher import Publisher
from services.core.bus.runtime import Context, StageRunner, StageSpec, run_stage
from services.core.bus.topics import dlq_topic, ensure_stage_topics, retry_topic, stage_topics
from services.core.errors import FatalError, RetryableError, ValidationError

__all__ = ["ConsumerTuning", "Context", "FatalError", "Publisher", "RetryPolicy", "RetryableError", "StageRunner",
           "StageSpec", "ValidationError", "dlq_topic", "ensure_stage_topics", "retry_topic", "run_stage",
           "stage_topics"]
