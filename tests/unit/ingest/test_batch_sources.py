"""The batch sources on real files: 4,000 realistic notes as an OMOP NOTE table (CSV and Parquet) and as
Bulk Data NDJSON read as the same notes; resuming from any position yields exactly the rest; memory
stays far below the file size; bad rows are reported with file, line and column and skipped."""
from __future__ import annotations

import base64
import csv
import json
import tracemalloc
from pathlib import Path

import pytest

from services.ingest.batch.bulk_ndjson import BulkNdjsonSource
from services.ingest.batch.omop import NOTE_SYSTEM, PERSON_SYSTEM, OmopNoteSource, PersonMap
from services.ingest.batch.source import BatchSourceError
from tests.fixtures import batch_notes

COUNT = 4_000
ROW_GROUP = 400


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    return {"csv": batch_notes.write_omop_csv(root / "note.csv", COUNT, mapping=root / "person_mrn.csv"),
            "mapping": root / "person_mrn.csv",
            "parquet": batch_notes.write_omop_parquet(root / "note.parquet", COUNT, row_group_rows=ROW_GROUP),
            "bulk": batch_notes.write_bulk_ndjson(root / "bulk", COUNT)}


def _omop(files, fmt: str, **kwargs) -> OmopNoteSource:
    return OmopNoteSource(files[fmt], persons=PersonMap.from_csv(files["mapping"]), **kwargs)


def _key(note) -> tuple:
    return note.identifier_system, note.identifier_value, note.patient_identifier, note.note_time, note.text


def test_omop_csv_parquet_and_bulk_ndjson_yield_the_same_notes(files):
    expected = [(NOTE_SYSTEM, n.note_id, (batch_notes.MRN_SYSTEM, n.mrn), n.when, n.text)
                for n in batch_notes.notes(COUNT)]
    csv_notes = [_key(n) for n in _omop(files, "csv").notes()]
    parquet_notes = [_key(n) for n in _omop(files, "parquet").notes()]
    bulk = BulkNdjsonSource.from_directory(files["bulk"])
    bulk_notes = list(bulk.notes())
    assert csv_notes == expected
    assert parquet_notes == expected
    assert [_key(n) for n in bulk_notes] == expected
    assert bulk.rejected == 0 and sum(1 for n in bulk_notes if n.note_type == "11506-3") == COUNT // 4
    # a fifth of the Bulk notes had their text in a Binary of the export, resolved by the reader
    assert bulk.binaries and all(n.text for n in bulk_notes)
    assert {n.source for n in bulk_notes} == {"bulk-ndjson"}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "bulk"])
def test_resume_from_any_position_yields_exactly_the_rest(files, fmt):
    make = (lambda: BulkNdjsonSource.from_directory(files["bulk"])) if fmt == "bulk" else (lambda: _omop(files, fmt))
    everything = list(make().notes())
    ids = [n.identifier_value for n in everything]
    # the middle, a Parquet row-group boundary and the row just before it, the first and the last note
    for cut in (COUNT // 2 - 1, ROW_GROUP - 1, ROW_GROUP - 2, 0, COUNT - 1):
        rest = [n.identifier_value for n in make().notes(after=everything[cut].position)]
        assert rest == ids[cut + 1:], cut
    # resuming twice over, as a crashed-and-resumed-again job does
    first = make().notes(after=everything[99].position)
    taken = [next(first) for _ in range(50)]
    again = [n.identifier_value for n in make().notes(after=taken[-1].position)]
    assert [n.identifier_value for n in taken] + again == ids[100:]


def test_positions_are_checked(files):
    csv_notes = _omop(files, "csv").notes()
    position = next(csv_notes).position
    with pytest.raises(BatchSourceError, match="another file"):
        next(_omop(files, "csv").notes(after=position.replace(position.split(":")[2], "0" * 16)))
    with pytest.raises(BatchSourceError, match="not an OMOP CSV position"):
        next(_omop(files, "csv").notes(after="bulk-ndjson:1:x:0:0"))
    with pytest.raises(BatchSourceError, match="not among"):
        next(BulkNdjsonSource.from_directory(files["bulk"]).notes(after="bulk-ndjson:1:Other.ndjson:0:0"))


def test_memory_stays_far_below_the_file_size(files):
    size = files["csv"].stat().st_size
    assert size > 12_000_000  # 4,000 notes of about 3 KB
    # the first note of each reader fills one-time caches (compiled patterns, time zones): not per-note memory
    next(iter(_omop(files, "csv").notes()))
    next(iter(BulkNdjsonSource.from_directory(files["bulk"]).notes()))
    tracemalloc.start()
    try:
        count = sum(1 for _ in _omop(files, "csv").notes())
        _, csv_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        bulk = sum(1 for _ in BulkNdjsonSource.from_directory(files["bulk"]).notes())
        _, bulk_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == bulk == COUNT
    # one record at a time (plus the person map / patient index: one entry per patient); 230 KB when run
    # alone, up to about 0.8 MB in a worker that ran other tests first: far below the 14 MB file either way
    assert csv_peak < size / 10, csv_peak
    assert bulk_peak < size / 10, bulk_peak

    import pyarrow as pa
    import pyarrow.parquet as pq

    # Parquet: Arrow's memory (outside tracemalloc) is bounded by the row groups being decoded, not the file
    meta = pq.ParquetFile(files["parquet"]).metadata
    group = max(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    arrow_peak = 0
    for _ in _omop(files, "parquet").notes():
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
    assert meta.num_row_groups == COUNT // ROW_GROUP and arrow_peak < 4 * group < meta.num_row_groups * group / 2


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(batch_notes.OMOP_HEADER)
        writer.writerows(rows)
    return path


def test_bad_rows_are_reported_with_line_and_column_and_skipped(tmp_path):
    notes = list(batch_notes.notes(6))
    rows = [batch_notes.omop_row(n) for n in notes]
    rows[1][0] = ""                     # no note_id
    rows[3][2] = "2025-13-45"           # note_date not a date
    rows[3][3] = ""
    rows[4][1] = "999"                  # a person missing from the mapping
    path = _write_csv(tmp_path / "note.csv", rows)
    mapping = batch_notes.write_person_mapping(tmp_path / "map.csv", 6)
    # each text spans many lines: the line of a bad record is its first physical line
    starts, line = [], 2
    for n in notes:
        starts.append(line)
        line += n.text.count("\n") + 1
    reported = []
    source = OmopNoteSource(path, persons=PersonMap.from_csv(mapping), on_reject=reported.append)
    good = [n.identifier_value for n in source.notes()]
    assert good == [notes[i].note_id for i in (0, 2, 5)]
    assert source.rejected == 3 and [str(e) for e in source.errors] == [str(e) for e in reported]
    assert str(reported[0]) == f"note.csv line {starts[1]}, column note_id: empty (note_id is required)"
    assert str(reported[1]) == f"note.csv line {starts[3]}, column note_date: not a date (YYYY-MM-DD expected)"
    assert str(reported[2]) == f"note.csv line {starts[4]}, column person_id: the person is not in map.csv"
    assert "2025-13-45" not in str(reported[1]), "values are never echoed (PHI)"

    with pytest.raises(BatchSourceError, match=rf"note.csv line {starts[1]}, column note_id"):
        list(OmopNoteSource(path, persons=PersonMap.from_csv(mapping), strict=True).notes())


def test_structural_problems_stop_the_run(tmp_path):
    bad_header = tmp_path / "no_text.csv"
    bad_header.write_text("note_id,person_id,note_date\n1,2,2025-01-01\n")
    with pytest.raises(BatchSourceError, match="no_text.csv line 1: the NOTE table needs the columns note_text"):
        list(OmopNoteSource(bad_header).notes())
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"note_id,person_id,note_date,note_text\n1,2,2025-01-01,ok\n2,2,2025-01-01,caf\xe9\n")
    with pytest.raises(BatchSourceError, match="latin.csv line 3: not UTF-8"):
        list(OmopNoteSource(latin).notes())
    not_parquet = tmp_path / "note.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(BatchSourceError, match="not a readable Parquet file"):
        list(OmopNoteSource(not_parquet).notes())


def test_identifier_column_and_unmapped_default(tmp_path):
    path = tmp_path / "note.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["note_id", "person_id", "note_date", "note_datetime", "note_text", "mrn"])
        writer.writerow(["7", "42", "2025-02-03", "", "text\nover lines", "MRN42"])
        writer.writerow(["8", "43", "2025-02-04", "2025-02-04T10:11:12", "", ""])
    by_column = list(OmopNoteSource(path, identifier_column="mrn", identifier_system="urn:mrn").notes())
    assert [n.patient_identifier for n in by_column] == [("urn:mrn", "MRN42")]  # the second has no MRN: rejected
    plain = list(OmopNoteSource(path).notes())
    assert [n.patient_identifier for n in plain] == [(PERSON_SYSTEM, "42"), (PERSON_SYSTEM, "43")]
    assert plain[0].note_time.isoformat() == "2025-02-03T00:00:00+00:00" and plain[0].text == "text\nover lines"
    assert plain[1].note_time.isoformat() == "2025-02-04T10:11:12+00:00" and plain[1].text is None


def test_bulk_ndjson_bad_lines_binary_fetcher_and_no_text(tmp_path):
    notes = list(batch_notes.notes(4))
    doc = tmp_path / "DocumentReference.ndjson"
    lines = [json.dumps(batch_notes.document_resource(notes[0])),
             "{not json",
             json.dumps(batch_notes.document_resource(notes[1], binary_id="elsewhere")),
             json.dumps({**batch_notes.document_resource(notes[2]), "status": "entered-in-error"}),
             json.dumps({**batch_notes.document_resource(notes[3]),
                         "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0="}}]})]
    doc.write_text("\n".join(lines) + "\n")
    (tmp_path / "Patient.ndjson").write_text("".join(json.dumps(batch_notes.patient_resource(n)) + "\n"
                                                     for n in notes[:1]))
    asked = []

    def fetcher(url: str):
        asked.append(url)
        return "text/plain", notes[1].text.encode()

    source = BulkNdjsonSource.from_directory(tmp_path, fetcher=fetcher)
    got = list(source.notes())
    assert [n.identifier_value for n in got] == [notes[0].note_id, notes[1].note_id, notes[3].note_id]
    assert asked == ["Binary/elsewhere"] and got[1].text == notes[1].text
    assert got[2].text is None and got[2].content_type == "application/pdf"
    assert got[0].patient_identifier == (batch_notes.MRN_SYSTEM, notes[0].mrn)
    assert got[0].patient_id == notes[0].patient_fhir_id
    assert source.rejected == 1 and str(source.errors[0]) == "DocumentReference.ndjson line 2, field (line): not JSON"
    assert source.withdrawn == 1
    with pytest.raises(BatchSourceError, match="DocumentReference.ndjson line 2"):
        list(BulkNdjsonSource.from_directory(tmp_path, fetcher=fetcher, strict=True).notes())
    # a note whose base64 is broken is reported, not decoded into garbage
    broken = {**batch_notes.document_resource(notes[0]),
              "content": [{"attachment": {"contentType": "text/plain", "data": "%%%"}}]}
    doc.write_text(json.dumps(broken) + "\n")
    source = BulkNdjsonSource.from_directory(tmp_path)
    assert list(source.notes()) == [] and "content.attachment.data: not base64" in str(source.errors[0])
    assert base64.b64decode(batch_notes.document_resource(notes[0])["content"][0]["attachment"]["data"])


def test_parquet_bad_rows_name_the_row_group_row_and_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"note_id": pa.array([1, 2, None, 4], pa.int64()),
                      "person_id": pa.array([9, 9, 9, 9], pa.int64()),
                      "note_date": pa.array(["2025-01-01", "2025-01-02", "2025-01-03", "not a date"]),
                      "note_text": pa.array(["a", "b", "c", "d"])})
    path = tmp_path / "note.parquet"
    pq.write_table(table, path, row_group_size=2)
    source = OmopNoteSource(path)
    notes = list(source.notes())
    assert [n.identifier_value for n in notes] == ["1", "2"]
    assert [str(e) for e in source.errors] == [
        "note.parquet row group 1 row 1, column note_id: empty (note_id is required)",
        "note.parquet row group 1 row 2, column note_date: not a date (YYYY-MM-DD expected)"]
    assert notes[1].position.endswith(":1:0"), "the note after the last of a row group is the next group's first"
    assert list(OmopNoteSource(path).notes(after=notes[1].position)) == []
