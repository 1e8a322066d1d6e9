"""A synthetic clinic day: oncology notes and patient messages for the demo patients.

Everything here is invented. The notes cover several irAE categories at several CTCAE grades,
negatives (no irAE, or one explicitly ruled out), and a second note for the same patient (an
episode: the second note updates the first note's Task instead of opening another). Each note
says in ``expect`` whether the rules engine should find something, which the summary does not
use: the summary counts what the pipeline actually wrote.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

DRUGS = ("pembrolizumab", "nivolumab", "ipilimumab", "atezolizumab", "durvalumab")
FAMILY = ("Alvarez", "Bjork", "Chen", "Dubois", "Eze", "Fischer", "Garcia", "Hale", "Iqbal", "Jensen", "Kaur",
          "Larsen", "Mensah", "Novak", "Ortiz", "Petrov", "Quinn", "Rossi", "Sato", "Tanaka", "Umar", "Varga")
GIVEN = ("Ana", "Ben", "Carla", "Dev", "Elif", "Femi", "Grace", "Hugo", "Ines", "Jon", "Kiri", "Luis", "Mira",
         "Nils", "Olga", "Pau", "Rosa", "Sami", "Tove", "Ugo", "Vera", "Wen")

#: (category or None, template). ``{drug}`` is the patient's checkpoint inhibitor.
FINDING_NOTES: list[tuple[str, str]] = [
    ("colitis", "Oncology follow-up. On {drug} cycle 4. Reports 6-7 watery stools per day over baseline for "
                "3 days, mild cramping, no blood. Afebrile. Grade 2 diarrhea, likely immune-mediated colitis. "
                "Plan: stool studies, start loperamide, hold next dose pending review."),
    ("colitis", "Urgent call. Patient on {drug} with 10 stools per day, abdominal pain and nocturnal stools. "
                "Grade 3 colitis attributed to immunotherapy. Admit for IV methylprednisolone."),
    ("dermatitis", "Telephone note. Patient on {drug} describes a new itchy maculopapular rash on trunk and "
                   "arms, roughly 20% body surface area. Grade 1 rash. No mucosal involvement. Topical steroid "
                   "prescribed; photo review tomorrow."),
    ("thyroiditis", "Lab review. TSH 14.2 mIU/L (ref 0.4-4.0), free T4 low at 0.6 ng/dL. Fatigue and cold "
                    "intolerance since starting {drug}. Consistent with immune-related hypothyroidism, grade 2; "
                    "start levothyroxine."),
    ("pneumonitis", "Clinic visit. New dry cough and exertional dyspnea for one week while on {drug}. SpO2 93% "
                    "on room air. CT chest shows new ground-glass opacities. Assessment: grade 2 immune-related "
                    "pneumonitis. Holding immunotherapy, start prednisone."),
    ("hepatitis", "Lab review. ALT 210 U/L and AST 185 U/L (about 5x upper limit of normal) on {drug}. "
                  "Bilirubin normal. Grade 3 immune-mediated hepatitis. Hold treatment, start prednisone, "
                  "repeat LFTs in 3 days."),
]
NEGATIVE_NOTES: list[str] = [
    "Infusion visit. Tolerating {drug} well. No diarrhea, rash, cough or fatigue reported. ECOG 0. "
    "Proceed with cycle as planned.",
    "Survivorship visit. Completed {drug} six months ago. Denies rash, diarrhea or shortness of breath. "
    "Thyroid function normal. Continue surveillance imaging.",
    "Nursing note. Port flushed without difficulty. Patient on {drug} reports good appetite and energy. "
    "Vitals stable. Next infusion in three weeks.",
]
#: The second note of an episode (same patient and category as an earlier finding note).
FOLLOW_UP_NOTE = ("Follow-up call. Still on hold from {drug}. Diarrhea improving, now 4 stools per day over "
                  "baseline, grade 2 colitis persists. Continue loperamide, recheck in 2 days.")
MESSAGES: list[str] = [
    "Hi, can I move my follow-up appointment to next week? Mornings work best.",
    "I have had loose stools since yesterday, should I come in earlier?",
    "Please book me a visit with my oncologist, the rash on my arms is itchy.",
]


@dataclass(frozen=True)
class DemoPatient:
    key: str            # stable within the run: "p03"
    family: str
    given: str
    drug: str
    oncologist: str     # seed practitioner key (onc-1 ...)


@dataclass(frozen=True)
class PlannedNote:
    patient: str        # DemoPatient.key
    text: str
    expect: str | None  # category the note is written to show, None for a negative


@dataclass(frozen=True)
class PlannedMessage:
    patient: str
    text: str


@dataclass(frozen=True)
class ClinicDay:
    patients: list[DemoPatient]
    notes: list[PlannedNote]
    messages: list[PlannedMessage]


def clinic_day(n_notes: int, seed: int, oncologists: tuple[str, ...] = ("onc-1", "onc-2", "onc-3"),
               n_messages: int = 2) -> ClinicDay:
    """``n_notes`` notes (about two thirds with a finding, one episode follow-up when n >= 3)."""
    rng = random.Random(seed)
    n_patients = max(1, n_notes - (1 if n_notes >= 3 else 0))
    patients = [DemoPatient(f"p{i:02d}", rng.choice(FAMILY), rng.choice(GIVEN), rng.choice(DRUGS),
                            oncologists[(i // 2) % len(oncologists)]) for i in range(n_patients)]
    notes: list[PlannedNote] = []
    for i, patient in enumerate(patients):
        if i % 3 == 2:
            text, expect = NEGATIVE_NOTES[(i // 3) % len(NEGATIVE_NOTES)], None
        elif i == 0:
            text, expect = FINDING_NOTES[0][1], "colitis"  # patient 0 opens the colitis episode
        else:
            expect, text = FINDING_NOTES[(i - (i // 3)) % len(FINDING_NOTES)]
        notes.append(PlannedNote(patient.key, text.format(drug=patient.drug), expect))
    if n_notes >= 3:  # the same patient again: the episode's second note, after a few others
        at = min(len(notes), 3)
        notes.insert(at, PlannedNote(patients[0].key, FOLLOW_UP_NOTE.format(drug=patients[0].drug), "colitis"))
    messages = [PlannedMessage(patients[i % len(patients)].key, MESSAGES[i % len(MESSAGES)])
                for i in range(n_messages)]
    return ClinicDay(patients, notes[:n_notes], messages)
