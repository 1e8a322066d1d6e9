"""The scheduling model's system prompt (``system_prompt.md``, kept under a budget) and the
function definitions it may call. Clinic rules and availability come from tools, not the prompt."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PROMPT_FILE = Path(__file__).with_name("system_prompt.md")
#: Budget of the system prompt: 1,200 characters (~300 tokens at ~4 characters per token).
PROMPT_BUDGET_CHARS = 1200


@lru_cache(maxsize=1)
def system_prompt() -> str:
    text = PROMPT_FILE.read_text(encoding="utf-8").strip()
    if len(text) > PROMPT_BUDGET_CHARS:
        raise RuntimeError(f"{PROMPT_FILE.name} is {len(text)} characters; the budget is {PROMPT_BUDGET_CHARS}")
    return text


def prompt_hash() -> str:
    return hashlib.sha256(system_prompt().encode()).hexdigest()[:16]


def _fn(name: str, description: str, properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required or [], "additionalProperties": False}}}


TOOLS = [
    _fn("find_slots", "Free appointment times between two dates (clinic time zone).", {
        "date_from": {"type": "string", "description": "YYYY-MM-DD, first day"},
        "date_to": {"type": "string", "description": "YYYY-MM-DD, last day (inclusive)"},
        "weekdays": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6},
                     "description": "0=Monday .. 6=Sunday"},
        "part_of_day": {"type": "string", "enum": ["", "morning", "afternoon", "evening"]}}, ["date_from", "date_to"]),
    _fn("book_slot", "Book one slot for this patient after they agreed to it.",
        {"slot_id": {"type": "string"}}, ["slot_id"]),
    _fn("cancel_appointment", "Cancel one of this patient's appointments.",
        {"appointment_id": {"type": "string"}}, ["appointment_id"]),
    _fn("list_appointments", "This patient's upcoming appointments.", {}),
    _fn("escalate_to_staff", "Hand the conversation to clinic staff.",
        {"reason": {"type": "string", "enum": ["urgent-symptoms", "patient-request", "unparseable"]}}, ["reason"]),
]
