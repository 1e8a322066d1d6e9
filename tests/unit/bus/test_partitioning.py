"""Batched produce picks the partitions aiokafka's default partitioner picks (no servers)."""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from services.core.bus.publisher import partition_of


def test_keyed_records_go_where_the_default_partitioner_sends_them():
    default = DefaultPartitioner()
    for count in (1, 4, 12):
        partitions = list(range(count))
        for n in range(300):
            key = f"patient-{n}".encode()
            assert partition_of(key, count) == default(key, partitions, partitions)
    assert partition_of("é-ü".encode(), 7) == default("é-ü".encode(), list(range(7)), list(range(7)))


def test_keyless_records_spread_over_the_partitions():
    assert {partition_of(None, 4) for _ in range(400)} == {0, 1, 2, 3}
