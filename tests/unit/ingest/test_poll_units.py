"""Per-patient polling without servers: the upload format, the settings, the token bucket, the search."""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from services.core.config import ConfigError
from services.core.integration import parse as parse_profile
from services.core.tenancy import Tenant
from services.ingest.poll.bucket import TokenBucket
from services.ingest.poll.patient import low_water, search_params
from services.ingest.poll.runner import check_tenant
from services.ingest.poll.settings import PollSettings
from services.ingest.poll.watchlist import UploadError, parse_upload
from services.ingest.store.polling import Watched


def tenant(watch_list="uploaded", family="fhir-server", **settings) -> Tenant:
    profile = parse_profile("tpoll", {"family": family, "triggers": ["patient-poll"], "watch_list": watch_list,
                                      "note_sources": ["ehr-fhir"], "results": ["cds-hooks"]})
    return Tenant(id="tpoll", integration=profile, settings=settings)


def test_upload_formats():
    text = ("patient\n"
            "Patient/abc-1\n"
            "abc.2\n"
            "urn:oid:1.2|MRN1\n"
            "urn:oid:1.2,MRN2\n"
            "# a comment\n\n"
            '{"patient": "Patient/x3"}\n'
            '{"identifier": "urn:oid:1.2|MRN4"}\n'
            '{"system": "urn:oid:1.2", "value": "MRN5"}\n')
    entries = parse_upload(text)
    assert [(e.line, e.kind, e.patient_id or f"{e.system}|{e.value}") for e in entries] == [
        (2, "patient", "abc-1"), (3, "patient", "abc.2"), (4, "identifier", "urn:oid:1.2|MRN1"),
        (5, "identifier", "urn:oid:1.2|MRN2"), (8, "patient", "x3"), (9, "identifier", "urn:oid:1.2|MRN4"),
        (10, "identifier", "urn:oid:1.2|MRN5")]


def test_upload_errors_name_lines_not_contents():
    with pytest.raises(UploadError) as caught:
        parse_upload("Patient/ok\nnot an id!\n|MRN9\n{\"who\": \"x\"}\na,b,c\n")
    assert [line for line, _ in caught.value.problems] == [2, 3, 4, 5]
    assert "MRN9" not in str(caught.value) and "not an id!" not in str(caught.value)
    with pytest.raises(UploadError, match="no entries"):
        parse_upload("# nothing\n\n")


def test_settings_defaults_and_errors_name_the_setting():
    s = PollSettings.from_tenant(tenant())
    assert (s.interval_s, s.rate_per_s, s.burst, s.concurrency, s.last_updated, s.sort) == (300.0, 5.0, 5, 4, True, True)
    assert PollSettings.from_tenant(tenant(poll_rate_per_s=0.5)).burst == 1
    for key, value in (("poll_rate_per_s", 0), ("poll_interval_s", "fast"), ("poll_concurrency", 2.5),
                       ("poll_sort", "yes"), ("poll_burst", True)):
        with pytest.raises(ConfigError, match=f"settings.{key}="):
            PollSettings.from_tenant(tenant(**{key: value}))


def test_checkpoint_inhibitor_list_refused_where_medication_search_needs_a_patient():
    assert check_tenant(tenant("checkpoint-inhibitors", "fhir-server")).interval_s == 300.0
    assert check_tenant(tenant("uploaded", "epic-like")).rate_per_s == 5.0
    for family in ("epic-like", "oracle-like"):
        with pytest.raises(ConfigError, match="integration.watch_list = 'checkpoint-inhibitors'.*uploaded"):
            check_tenant(tenant("checkpoint-inhibitors", family))


def test_search_parameters_follow_the_settings():
    added = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    fresh = Watched("p1", added, None, "")
    s = PollSettings(lookback_h=2, overlap_s=5)
    assert low_water(fresh, s) == datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)
    polled = replace(fresh, cursor_updated=datetime(2026, 1, 2, 0, 0, 10, tzinfo=timezone.utc), cursor_id="d9")
    assert low_water(polled, s) == datetime(2026, 1, 2, 0, 0, 5, tzinfo=timezone.utc)
    assert search_params("p1", low_water(polled, s), s) == {
        "patient": "p1", "_count": "50", "_lastUpdated": "ge2026-01-02T00:00:05Z", "_sort": "_lastUpdated"}
    bare = PollSettings(last_updated=False, sort=False)
    assert search_params("p1", low_water(polled, bare), bare) == {"patient": "p1", "_count": "50"}


async def test_token_bucket_rate_and_hold():
    bucket = TokenBucket(20.0, 2)
    started = time.monotonic()
    stamps = []
    for _ in range(6):
        await bucket.acquire()
        stamps.append(time.monotonic() - started)
    assert stamps[1] < 0.02  # the burst
    assert stamps[-1] >= (6 - 2) / 20.0 - 0.01  # then 20/s
    bucket.hold(0.2)
    before = time.monotonic()
    await asyncio.wait_for(bucket.acquire(), 2)
    assert time.monotonic() - before >= 0.2


def test_upload_cli_refuses_before_contacting_anything(tmp_path):
    import os
    import subprocess
    import sys

    from services.core.tenancy import Registry

    registry = Registry(tmp_path / "tenants.toml", [tenant("checkpoint-inhibitors"),
                                                     replace(tenant("uploaded"), id="tupload")])
    registry.save()
    listing = tmp_path / "list.txt"
    listing.write_text("Patient/abc\nbad id!\n")
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(registry.path), "VIGIL_ENV": "test", "COLUMNS": "400"}

    def upload(tenant_id: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli", "poll", "watchlist", "upload", "--tenant",
                               tenant_id, str(listing)], env=env, capture_output=True, text=True, timeout=60)

    wrong_list = upload("tpoll")
    assert wrong_list.returncode == 2 and "integration.watch_list is 'checkpoint-inhibitors'" in wrong_list.stderr
    unknown = upload("tnobody")
    assert unknown.returncode == 2 and "unknown tenant" in unknown.stderr
    malformed = upload("tupload")
    assert malformed.returncode == 2 and "line 2" in malformed.stderr and "nothing was stored" in malformed.stderr
    assert "bad id!" not in malformed.stderr
