"""`vigil backfill run --source KIND PATH` reaches the real readers through the kinds table."""
from __future__ import annotations

import json

import pytest

from services.ingest.batch import kinds
from services.ingest.batch.source import BatchSourceError
from tests.fixtures import batch_notes


def test_the_omop_kind_opens_the_real_reader(tmp_path):
    batch_notes.write_omop_csv(tmp_path / "note.csv", 5)
    source = kinds.open_source("omop", tmp_path / "note.csv", {"tz": "UTC"})
    assert source.name == "omop:note.csv" and len(list(source.notes())) == 5
    with pytest.raises(BatchSourceError, match="IANA"):
        kinds.open_source("omop", tmp_path / "note.csv", {"tz": "Mars/Base"})


def test_bulk_export_kind_needs_a_finished_export(tmp_path):
    with pytest.raises(BatchSourceError, match="vigil backfill export"):
        kinds.open_source("bulk-export", tmp_path)
    (tmp_path / "export-state.json").write_text(json.dumps({"manifest": {"output": [
        {"type": "DocumentReference", "url": "http://x/DocumentReference.1.ndjson"}]}, "files": {}}))
    with pytest.raises(BatchSourceError, match="has not finished"):
        kinds.open_source("bulk-export", tmp_path)
