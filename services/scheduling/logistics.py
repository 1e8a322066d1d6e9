"""Answers to practical questions (where the clinic is, parking, what to bring, opening hours) from
the tenant's settings: ``clinic_location``, ``clinic_parking``, ``clinic_what_to_bring``,
``clinic_hours``, each optionally per
language (``clinic_parking_es``). A topic the tenant has not set is answered with "please call
the clinic", never invented."""
from __future__ import annotations

from services.scheduling import render

SETTINGS = {"location": "clinic_location", "parking": "clinic_parking", "bring": "clinic_what_to_bring",
            "hours": "clinic_hours"}


def answer(tenant, topics: list[str], language: str) -> str:
    lines, missing = [], False
    for topic in topics:
        name = SETTINGS[topic]
        value = tenant.setting(f"{name}_{language}") or tenant.setting(name)
        if value:
            lines.append(str(value).strip())
        else:
            missing = True
    if missing:
        lines.append(render.say("logistics_missing", language))
    return " ".join(lines)
