"""Section headers and what a section means for the mentions inside it.

Headers are recognised at the start of a line ("Family History:", "PMH:", "A/P:"), in any case.
Policy per section category:
- ``family_history``: every mention is about someone else.
- ``past_medical_history``: mentions are historical (a chronic alternative cause still counts).
- ``patient_education`` / ``patient_instructions``: mentions are hypothetical.
- ``allergies`` / ``medications``: lists, not assertions; mentions there are ignored.
- ``review_of_systems``: a checklist; it never makes a category present by itself (the HPI or
  the assessment does), so its mentions are ignored.
Every other section (HPI, exam, labs, assessment, plan, problem list) is neutral. A policy
reaches from the header to the first blank line only.
"""
from __future__ import annotations

SECTION_HEADERS: dict[str, tuple[str, ...]] = {
    "history_of_present_illness": ("history of present illness", "hpi", "interval history", "interval hx",
                                   "subjective", "s", "chief complaint", "cc", "reason for visit", "reason for consult",
                                   "hospital course", "brief hospital course", "events", "overnight events"),
    "past_medical_history": ("past medical history", "pmh", "pmhx", "past history", "medical history",
                             "past medical hx", "pmh/psh", "past surgical history", "psh", "oncologic history",
                             "oncology history", "cancer history", "treatment history", "prior treatment"),
    "family_history": ("family history", "family hx", "fh", "fhx", "family medical history"),
    "social_history": ("social history", "social hx", "sh", "shx"),
    "medications": ("medications", "meds", "current medications", "home medications", "outpatient medications",
                    "medication list", "discharge medications", "active medications"),
    "allergies": ("allergies", "allergy", "drug allergies", "adverse reactions"),
    "review_of_systems": ("review of systems", "ros"),
    "physical_exam": ("physical exam", "physical examination", "exam", "pe", "objective", "o", "vitals"),
    "labs_and_studies": ("labs", "laboratory", "laboratory data", "results", "imaging", "studies", "data",
                         "pertinent results", "diagnostics", "radiology"),
    "problem_list": ("problem list", "active problems", "problems", "active problem list", "diagnoses",
                     "discharge diagnoses", "diagnosis"),
    "assessment_and_plan": ("assessment and plan", "assessment/plan", "assessment & plan", "a/p", "a&p",
                            "assessment", "impression", "plan", "impression and plan", "a", "p", "recommendations",
                            "recs", "summary", "disposition"),
    "patient_education": ("patient education", "education", "counseling", "patient instructions",
                          "discharge instructions", "instructions", "anticipatory guidance", "return precautions",
                          "consent"),
}

#: section category -> the assertion it imposes on every mention inside it (None: neutral).
SECTION_POLICY: dict[str, str | None] = {
    "family_history": "family",
    "past_medical_history": "historical",
    "patient_education": "hypothetical",
    "allergies": "ignored",
    "medications": "ignored",
    "review_of_systems": "ignored",
}


def section_rules() -> list[tuple[str, str]]:
    """``(category, header)`` pairs in a fixed order."""
    return [(category, header) for category, headers in SECTION_HEADERS.items() for header in headers]
