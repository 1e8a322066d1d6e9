"""Rows of the control tables <-> control.proto messages (one place for the mapping)."""
from __future__ import annotations

from services.control import store
from services.control.replay import Progress
from vigil.v1 import control_pb2 as pb


def filter_from(msg: pb.DeadLetterFilter, tenant: str) -> store.Filter:
    return store.Filter(tenant=tenant, stage=msg.stage, since_ms=msg.since_ms, until_ms=msg.until_ms,
                        error_class=msg.error_class, fingerprint=msg.fingerprint, event_type=msg.event_type,
                        patient_key=msg.patient_key, status=msg.status or "dead", ids=tuple(msg.ids))


def entry(row, replay_count: int = 0) -> pb.DeadLetter:
    return pb.DeadLetter(
        id=row["id"], tenant=row["tenant"], stage=row["stage"], event_id=row["event_id"] or "",
        event_type=row["event_type"] or "", original_topic=row["original_topic"],
        original_partition=row["original_partition"], original_offset=row["original_offset"],
        error_class=row["error_class"], error_code=row["error_code"], fingerprint=row["fingerprint"],
        message=row["message"], attempts=row["attempts"], first_failure_ms=store.ms(row["first_failure"]),
        last_failure_ms=store.ms(row["last_failure"]), status=row["status"], replay_count=replay_count,
        last_replay_job=row["last_replay_job"] or "", replayed_from_job=row["replayed_from_job"] or "")


def progress(p: Progress) -> pb.ReplayProgress:
    return pb.ReplayProgress(
        job_id=p.job_id, dry_run=p.dry_run, total=p.total, to_send=p.to_send, sent=p.sent,
        skipped_loop_guard=p.skipped_loop_guard, done=p.done, status=p.status, checkpoint=p.checkpoint,
        targets=[pb.TopicCount(topic=t, count=c) for t, c in sorted(p.targets.items())],
        sample=[pb.ReplayItem(dlq_id=s["dlq_id"], event_id=s["event_id"], event_type=s["event_type"],
                              target_topic=s["target_topic"], replay_count=s["replay_count"], action=s["action"],
                              headers=[pb.Header(key=k, value=v.decode()) for k, v in s["headers"]])
                for s in p.sample])


def mode_state(state) -> pb.ModeState:
    return pb.ModeState(tenant=state.tenant, agent=state.agent, mode=state.mode, source=state.source,
                        killed=state.killed, pilot_practitioners=list(state.pilot_practitioners))
