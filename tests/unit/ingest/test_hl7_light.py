"""The listener's light view reads what the full parse reads (header, PID-3, the patient key)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from services.core.secrets import SecretSettings
from services.ingest.hl7.errors import Hl7Error
from services.ingest.hl7.light import parse_light
from services.ingest.hl7.mapping.common import first_identifier, patient_identifiers
from services.ingest.hl7.parse import parse
from services.ingest.hl7.patientkey import PatientKeys

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"
NAMES = sorted(p.name for p in SAMPLES.glob("*.hl7")) if SAMPLES.exists() else []
KEYS = PatientKeys(SecretSettings.from_env({"VIGIL_ENV": "test"}))
PID_FIELDS = [(3, rep, comp, sub) for rep in (1, 2, 3) for comp in (1, 4, 5) for sub in (1, 2, 3)]


def same_reading(text) -> None:
    try:
        full = parse(text)
    except Hl7Error as exc:
        with pytest.raises(Hl7Error) as light_exc:
            parse_light(text)
        assert light_exc.value.code == exc.code
        return
    light = parse_light(text)
    assert light.header == full.header
    assert light.body_digest() == full.body_digest()
    for field in PID_FIELDS:
        assert light.get("PID", *field) == full.get("PID", *field), field
    assert first_identifier(light) == first_identifier(full)
    ids = patient_identifiers(full)
    assert first_identifier(full) == ((ids[0]["system"], ids[0]["value"]) if ids else None)
    assert KEYS.of_message("t1", light) == KEYS.of_message("t1", full)


@pytest.mark.parametrize("name", NAMES)
def test_public_samples_read_the_same(name):
    same_reading((SAMPLES / name).read_bytes())


component = st.text(alphabet="ABCxyz019 .-&^~", max_size=8)


@settings(max_examples=300, deadline=None)
@given(msh=st.lists(component, min_size=10, max_size=12), pid3=component, pid5=component, extra=component)
def test_generated_messages_read_the_same(msh, pid3, pid5, extra):
    msh[6] = "ADT^A08" if not msh[6] else msh[6]
    text = "MSH|^~\\&|" + "|".join(msh) + f"\rPID|1||{pid3}||{pid5}\rNTE|1|{extra}\rPID|2||OTHER"
    same_reading(text)
