"""What a patient's message asks for, by rules (deterministic, offline). Urgent symptoms first:
a message that mentions one goes to a human, whatever else it says."""
from __future__ import annotations

import re

#: Symptoms that must reach a human now (irAE red flags and general emergencies).
URGENT = re.compile(r"\b(" + "|".join([
    r"chest (pain|pressure|tightness)", r"short(ness)? of breath", r"can'?t breathe", r"cannot breathe",
    r"(trouble|difficulty|hard) breathing", r"struggling to breathe",
    r"severe (diarrh?oea|diarrhea|abdominal pain|stomach pain|belly pain|headache|rash|pain|vomiting)",
    r"(bloody|black) (stool|stools|diarrhea)", r"blood in (my )?(stool|poo|urine)", r"coughing (up )?blood",
    r"passed out", r"faint(ed|ing)", r"seizure", r"confus(ed|ion)", r"suicid\w*", r"vision loss", r"can'?t see",
    r"yellow (skin|eyes)", r"jaundice", r"fever of (39|40|41|10[2-5])", r"high fever", r"(diarrh?oea|diarrhea) \d+ times",
    r"heart racing", r"palpitations", r"severe weakness", r"can'?t (walk|stand)",
]) + r")\b", re.IGNORECASE)
YES = re.compile(r"^\s*(yes|yeah|yep|yup|sure|ok|okay|confirm|please do|please book|book it|sounds good|that works|"
                 r"perfect|great|fine|correct|go ahead|y)\b", re.IGNORECASE)
NO = re.compile(r"^\s*(no|nope|nah|not really|neither|none|n)\b|\b(doesn'?t|does not|don'?t|won'?t) work\b|"
                r"\bnone of (these|those|them)\b", re.IGNORECASE)
CANCEL = re.compile(r"\b(cancel|call off|can'?t (make|come)|won'?t be able to (make|come)|not coming)\b",
                    re.IGNORECASE)
RESCHEDULE = re.compile(r"\b(reschedule|re-schedule|move|change|switch|different (day|time|date)|"
                        r"another (day|time|date)|instead|push (it )?back|postpone)\b", re.IGNORECASE)
STAFF = re.compile(r"\b(speak|talk) (to|with) (a |an |the )?(person|human|nurse|doctor|someone|staff|real person)\b",
                   re.IGNORECASE)
STATUS = re.compile(r"\b(when is my|what time is my|do i have an?|my next) (appointment|visit|infusion)\b",
                    re.IGNORECASE)
ORDINALS = {"1": 0, "one": 0, "first": 0, "1st": 0, "2": 1, "two": 1, "second": 1, "2nd": 1,
            "3": 2, "three": 2, "third": 2, "3rd": 2, "last": -1}
ORDINAL = re.compile(r"^\s*(?:option\s*|number\s*|#\s*|the\s+)?(1st|2nd|3rd|1|2|3|one|two|three|first|second|third|last)"
                     r"(\s+(one|option|slot))?\s*[.!]?\s*(please)?\s*[.!]?\s*$", re.IGNORECASE)
QUESTION = re.compile(r"\?|^\s*(what|where|how|who|why|can|could|do|does|is|are|will|should)\b", re.IGNORECASE)
SCHEDULING_WORDS = re.compile(r"\b(appointment|slot|book|time|visit|schedule|available|availability|infusion|"
                              r"follow[- ]?up)\b", re.IGNORECASE)


def urgent(text: str) -> bool:
    return bool(URGENT.search(text))


def ordinal(text: str) -> int | None:
    m = ORDINAL.match(text)
    return ORDINALS[m.group(1).lower()] if m else None


def is_question(text: str) -> bool:
    return bool(QUESTION.search(text))
