"""``split_lanes``: a batch's records into lanes (by partition; by key within an input partition)."""
from __future__ import annotations

from collections import namedtuple

from aiokafka import TopicPartition

from services.core.bus.batch import split_lanes

Record = namedtuple("Record", "key offset")
INPUT, RETRY = "vigil.t.ehr-events", "vigil.t.stage.retry.1"


def _batch(spec: dict[TopicPartition, list[str]]):
    batch = {tp: [Record(k.encode(), i) for i, k in enumerate(keys)] for tp, keys in spec.items()}
    return batch, {tp: [("row", r.offset) for r in records] for tp, records in batch.items()}


def _keys(lane) -> list[tuple[str, int, str, int]]:
    return [(tp.topic, tp.partition, m.key.decode(), m.offset) for tp, records, _ in lane for m in records]


def test_one_key_lane_is_one_lane_per_partition_retries_first():
    batch, rows = _batch({TopicPartition(INPUT, 0): ["a", "b"], TopicPartition(RETRY, 0): ["a"],
                          TopicPartition(INPUT, 1): ["c"]})
    lanes = split_lanes(batch, rows, INPUT, 1)
    assert [_keys(lane) for lane in lanes] == [
        [(RETRY, 0, "a", 0), (INPUT, 0, "a", 0), (INPUT, 0, "b", 1)], [(INPUT, 1, "c", 0)]]


def test_an_input_partition_splits_by_key_and_keeps_each_keys_order():
    keys = [f"p{i % 7}" for i in range(70)]
    batch, rows = _batch({TopicPartition(INPUT, 0): keys})
    lanes = split_lanes(batch, rows, INPUT, 4)
    assert 1 < len(lanes) <= 4
    seen = {}
    for lane in lanes:
        (tp, records, lane_rows), = lane  # one partition per lane
        assert [r[1] for r in lane_rows] == [m.offset for m in records]  # rows travel with their records
        offsets = [m.offset for m in records]
        assert offsets == sorted(offsets)
        for m in records:
            assert seen.setdefault(m.key, lanes.index(lane)) == lanes.index(lane)  # a key in one lane only
    assert sorted(m.offset for lane in lanes for _, records, _ in lane for m in records) == list(range(70))


def test_a_partition_with_retry_records_is_not_split():
    batch, rows = _batch({TopicPartition(INPUT, 0): ["a", "b", "c", "d"], TopicPartition(RETRY, 0): ["e"],
                          TopicPartition(INPUT, 1): ["a", "b", "c", "d", "e", "f", "g", "h"]})
    lanes = split_lanes(batch, rows, INPUT, 4)
    whole = [lane for lane in lanes if lane[0][0].partition == 0]
    assert len(whole) == 1 and [tp.topic for tp, _, _ in whole[0]] == [RETRY, INPUT]
    assert len([lane for lane in lanes if lane[0][0].partition == 1]) > 1
