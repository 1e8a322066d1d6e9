"""The multi-turn conversation corpus played against the real agent (either engine), the EHR
sandbox, tools over gRPC, Redis and PostgreSQL, with every agent message checked against the EHR.

``tests/data/conversations/conversations.jsonl``: one conversation per line, ``{"id", "language",
"tags", "turns"}``; a turn is ``{"patient": text, "expect": [...]}`` or ``{"staff": action}`` with
action ``cancel_appointment`` | ``reschedule_appointment`` | ``mark_no_show`` (done directly in the
EHR, as a front desk would, then reported to the agent as the appointment subscription does).
The expectations (``behaviours.md``), checked on the EHR and the agent's messages of that turn:

- ``booked`` / ``not_booked``: a new booked Appointment of the patient appeared / did not;
- ``cancelled`` / ``not_cancelled``: an Appointment booked before the turn is cancelled / is not;
- ``escalated`` / ``not_escalated``: a staff Task was created this turn / was not;
- ``appointment_stated``: a reply states the time of an Appointment the EHR holds as booked;
- ``no_appointment_claimed``: no reply says the patient has an appointment;
- ``polite_close``: a courteous close (not "did not understand", not a redirect).

After every agent message (patient turns and subscription notices) the claim check reads the
EHR: a sentence that speaks of the patient's appointment at a time must match an Appointment of
that patient with that start (booked, or cancelled / no-show when it says so); a booking claim
without a time needs a booked Appointment; "no appointment" needs none. A booking is "without
consent" when the ledger holds no consent for that message and slot, or the corpus says the
message does not book. Each conversation gets its own patient and practitioner with a grid of
weekday slots, so conversations do not take each other's times.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from services.scheduling import lang
from services.tools.action_ledger import ActionLedger
from tests.fixtures.fake_llm import Reply, reply, tool_calls_reply
from tests.integration.scheduling.conftest import slot_time

DATA = Path(__file__).resolve().parents[2] / "data" / "conversations"
CORPUS = DATA / "conversations.jsonl"
#: The corpora by name: the first one (64), and a second author's tune2 / holdout2 (30 each).
CORPORA = {"conversations": CORPUS, "tune2": DATA / "tune2.jsonl", "holdout2": DATA / "holdout2.jsonl",
           "conversations3": DATA / "conversations3.jsonl"}
#: The fixed subset `make test` plays (both languages; staff changes, hedges, urgent symptoms,
#: undeclared languages, duplicates, rapid fire, change of mind, logistics, cancel, reschedule).
SUBSET = ("c002", "c006", "c013", "c019", "c026", "c029", "c045", "c050", "c051", "c060")
#: Per-conversation slot grid: weekdays 4..15 March 2030 at these hours (UTC; the tenant is UTC).
GRID_HOURS = (9, 10, 14, 15)
GRID_DAYS = range(4, 16)
#: The tenant's logistics answers (``services.scheduling.logistics``).
SETTINGS = {
    "clinic_location": "The clinic is at 200 Main Street, Building C, 3rd floor (oncology suite).",
    "clinic_location_es": "La clínica está en 200 Main Street, edificio C, 3.er piso (oncología).",
    "clinic_parking": "Parking is in garage B next to Building C; the clinic validates your ticket.",
    "clinic_parking_es": "Puede estacionar en el garaje B junto al edificio C; la clínica valida su tique.",
    "clinic_what_to_bring": "Please bring your photo ID, insurance card and a list of your medicines.",
    "clinic_what_to_bring_es": "Traiga su identificación con foto, su tarjeta del seguro y la lista de sus medicinas.",
    "clinic_hours": "The clinic is open Monday to Friday, 8:00 to 17:00.",
    "clinic_hours_es": "La clínica abre de lunes a viernes, de 8:00 a 17:00.",
}

_MONTHS = {m.lower(): i + 1 for code in ("en", "es") for i, m in enumerate(lang.get(code).months)}
_DAYS = "|".join(d.lower() for code in ("en", "es") for d in lang.get(code).weekdays)
_MONTH_RE = "|".join(_MONTHS)
#: "Monday 4 March at 09:00" | "lunes 4 de marzo a las 09:00"
TIME_MENTION = re.compile(rf"\b(?:{_DAYS}) (\d{{1,2}}) (?:de )?({_MONTH_RE}) (?:at|a las) (\d{{1,2}}):(\d{{2}})",
                          re.IGNORECASE)
APPOINTMENT_WORDS = re.compile(r"\b(your (previous |upcoming )?appointments?|is booked for|su cita|sus próximas citas|"
                               r"queda reservada)\b", re.IGNORECASE)
CANCEL_WORDS = re.compile(r"\b(cancell?ed|cancelad[ao]|anulad[ao])\b", re.IGNORECASE)
NOSHOW_WORDS = re.compile(r"\b(missed|no asistida)\b", re.IGNORECASE)
MOVE_WORDS = re.compile(r"\b(moved|ha cambiado)\b", re.IGNORECASE)
BOOKED_CLAIM = re.compile(r"\b(you'?re booked|you are booked|is booked|all set|is confirmed|queda reservada|"
                          r"está confirmada|ya tiene (su|la) cita)\b", re.IGNORECASE)
NONE_CLAIM = re.compile(r"(could not find an upcoming appointment|no encuentro ninguna cita)", re.IGNORECASE)
POLITE = re.compile(r"(you'?re welcome|take care|de nada|cuídese|igualmente)", re.IGNORECASE)
NOT_POLITE = re.compile(r"(did not understand|no le he entendido|I can only help with scheduling|"
                        r"solo puedo ayudarle)", re.IGNORECASE)
SENTENCE = re.compile(r"(?<=[.?!])\s+|\n")


def corpus_path(name: str) -> Path:
    """A corpus by name (``CORPORA``) or by the path of any JSONL file in the same format."""
    if name in CORPORA:
        return CORPORA[name]
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no conversation corpus named {name!r} (names: {sorted(CORPORA)}; or a JSONL file path)")
    return path


def load(ids: tuple[str, ...] | None = None, name: str = "conversations") -> list[dict]:
    rows = [json.loads(line) for line in corpus_path(name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if ids is None or r["id"] in ids]


def mentions(sentence: str) -> list[datetime]:
    return [datetime(2030, _MONTHS[m.group(2).lower()], int(m.group(1)), int(m.group(3)), int(m.group(4)),
                     tzinfo=timezone.utc) for m in TIME_MENTION.finditer(sentence)]


def start_of(appointment: dict) -> datetime:
    return datetime.fromisoformat(appointment["start"].replace("Z", "+00:00"))


@dataclass
class Claims:
    """What one agent message says about the patient's appointments."""
    false: list[str] = field(default_factory=list)      # why each false statement is false
    booked_times: list[datetime] = field(default_factory=list)   # times stated as booked
    claims_appointment: bool = False                     # says the patient has an appointment


def check_claims(text: str, appointments: list[dict]) -> Claims:
    out = Claims()
    by_status: dict[str, set[datetime]] = {}
    for a in appointments:
        by_status.setdefault(a["status"], set()).add(start_of(a))
    booked = by_status.get("booked", set())
    for sentence in SENTENCE.split(text):
        times = mentions(sentence)
        if times and APPOINTMENT_WORDS.search(sentence):
            if MOVE_WORDS.search(sentence):
                times = times[-1:]                      # "moved from <old> to <new>": the new one is booked
                status = "booked"
            elif NOSHOW_WORDS.search(sentence):
                status = "noshow"
            elif CANCEL_WORDS.search(sentence):
                status = "cancelled"
            else:
                status = "booked"
            for moment in times:
                if moment not in by_status.get(status, set()):
                    out.false.append(f"{status} at {moment:%d %b %H:%M} not in the EHR")
                if status == "booked":
                    out.booked_times.append(moment)
                    out.claims_appointment = True
        elif BOOKED_CLAIM.search(sentence):
            out.claims_appointment = True
            if not booked:
                out.false.append("booking claimed, nothing booked")
        if NONE_CLAIM.search(sentence) and booked:
            out.false.append("said no appointment, one is booked")
    return out


@dataclass
class Figures:
    engine: str
    conversations: int = 0
    patient_turns: int = 0
    agent_messages: int = 0
    false_claims: int = 0
    bookings: int = 0
    bookings_without_consent: int = 0
    expectations: int = 0
    urgent: dict = field(default_factory=dict)          # language -> [escalated, conversations]
    reply_seconds: list[float] = field(default_factory=list)
    model_claims: int = 0                               # LLM engine: the model's attempts to claim a booking
    blocked_claim_tasks: int = 0                        # ... that had nothing else to say: sent to staff
    failures: list[str] = field(default_factory=list)   # "<id> turn <n>: <expectation>: <detail>"
    transcript: list[str] = field(default_factory=list)   # every message, for reading a run

    @property
    def p95(self) -> float:
        times = sorted(self.reply_seconds)
        return times[max(0, math.ceil(0.95 * len(times)) - 1)] if times else 0.0

    def urgent_rate(self, language: str) -> float:
        done, total = self.urgent.get(language, [0, 0])
        return done / total if total else 1.0

    def summary(self) -> dict:
        return {"engine": self.engine, "conversations": self.conversations, "patient_turns": self.patient_turns,
                "agent_messages": self.agent_messages, "false_claims": self.false_claims,
                "false_claims_per_message": self.false_claims / max(1, self.agent_messages),
                "bookings": self.bookings, "bookings_without_consent": self.bookings_without_consent,
                "urgent_escalation": {k: f"{v[0]}/{v[1]}" for k, v in sorted(self.urgent.items())},
                "p95_reply_seconds": round(self.p95, 3), "expectations": self.expectations,
                "model_claims": self.model_claims, "blocked_claim_tasks": self.blocked_claim_tasks,
                "expectations_failed": len(self.failures), "failures": self.failures}

    def render(self) -> str:
        urgent = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(self.urgent.items())) or "none"
        lines = [f"engine {self.engine}: {self.conversations} conversations, {self.patient_turns} patient turns, "
                 f"{self.agent_messages} agent messages",
                 f"  false claims: {self.false_claims} ({self.false_claims / max(1, self.agent_messages):.3f} per message)",
                 f"  bookings: {self.bookings}, without consent: {self.bookings_without_consent}",
                 f"  urgent symptoms escalated: {urgent}",
                 f"  p95 reply time (server side): {self.p95 * 1000:.0f} ms",
                 f"  expectations: {self.expectations - len(self.failures)}/{self.expectations} met"]
        if self.engine == "llm":
            lines.insert(-1, f"  the model's booking claims: {self.model_claims} ({self.blocked_claim_tasks} with nothing "
                             f"else to say went to staff)")
        lines += [f"    FAILED {f}" for f in self.failures]
        return "\n".join(lines)


# -- the scripted model for the LLM engine --------------------------------------------------------
_OFFERED = re.compile(r"slot_id=([A-Za-z0-9\-.]+): ([^;.]+)")
_PICK_WORDS = [(re.compile(r"\b(first|1st|primer[oa]?|option 1|opci[oó]n 1)\b", re.I), 0),
               (re.compile(r"\b(second|2nd|segund[oa]|option 2|opci[oó]n 2)\b", re.I), 1),
               (re.compile(r"\b(third|3rd|tercer[oa]?|option 3|opci[oó]n 3)\b", re.I), 2)]
_DAY_WORDS = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|thurs|week|tomorrow|morning|"
                        r"afternoon|lunes|martes|mi[eé]rcoles|jueves|viernes|s[aá]bado|semana|ma[ñn]ana|tarde|"
                        r"earliest|another|other|otra|new|nueva|move|change|reschedule|cambiar|cambiarla|mover|"
                        r"again|available|times|horarios|hora)\b", re.I)
_AGREE = re.compile(r"^\s*(yes|yeah|ok|okay|sure|s[ií]|vale|bueno|perfect|great)\b", re.I)


class ClaimingModel:
    """A model that does the job with tools but tries to tell the patient they are booked: after a
    booking tool call, and whenever the patient sounds agreeable. ``claims``: how often it tried."""

    def __init__(self):
        self.claims = 0

    def __call__(self, body: dict) -> Reply:
        answer = claiming_model(body)
        content = ((answer.body.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        self.claims += bool(BOOKED_CLAIM.search(content))
        return answer


def claiming_model(body: dict) -> Reply:
    messages = body["messages"]
    last = messages[-1]
    context = next((m["content"] for m in messages[1:3] if m["role"] == "system"), "")
    offered = _OFFERED.findall(context)
    if last["role"] == "tool":
        result = json.loads(last["content"])
        if "slots" in result:
            times = ", ".join(s["time"] for s in result["slots"]) or "nothing"
            return reply(f"I have {times}. Which one would you like?")
        if result.get("status") in ("awaiting_patient_yes", "booked"):
            return reply("Perfect, you're booked! See you then.")
        return reply("Sorry, that did not work. Shall I look for other times?")
    text = last.get("content") or ""
    for pattern, index in _PICK_WORDS:
        if pattern.search(text) and index < len(offered):
            return tool_calls_reply(("book_slot", {"slot_id": offered[index][0]}))
    if _DAY_WORDS.search(text):
        return tool_calls_reply(("find_slots", {"date_from": "2030-03-04", "date_to": "2030-03-15"}))
    if _AGREE.search(text):
        return reply("Great, you're all set and booked!")
    return reply("I can help you find a time. Which day suits you?")


# -- staff actions in the EHR --------------------------------------------------------------------
async def staff_action(sched, patient: str, action: str, free_slots: list[str]) -> dict | None:
    """Change the patient's booked Appointment as the front desk does; the changed Appointment."""
    client = sched.ehr.client
    booked = [a for a in await sched.appointments(patient) if a["status"] == "booked"]
    if not booked:
        return None
    appointment = sorted(booked, key=start_of)[0]
    version = (appointment.get("meta") or {}).get("versionId")
    old_slot = appointment["slot"][0]["reference"].split("/", 1)[1]
    if action in ("cancel_appointment", "mark_no_show"):
        status = "cancelled" if action == "cancel_appointment" else "noshow"
        changed = {**appointment, "status": status}
        if status == "cancelled":
            changed["cancelationReason"] = {"text": "clinic"}
        written = await client.update(changed, if_match=version)
        await _set_slot(client, old_slot, "free")
        return written.resource
    if action == "reschedule_appointment":
        new_slot = None
        while free_slots:
            candidate = free_slots.pop(0)
            if (await client.read("Slot", candidate))["status"] == "free":
                new_slot = candidate
                break
        if new_slot is None:
            return None
        slot = await client.read("Slot", new_slot)
        written = await client.update({**appointment, "start": slot["start"], "end": slot["end"],
                                       "slot": [{"reference": f"Slot/{new_slot}"}]}, if_match=version)
        await _set_slot(client, new_slot, "busy")
        await _set_slot(client, old_slot, "free")
        return written.resource
    raise ValueError(f"unknown staff action {action!r}")


async def _set_slot(client, slot_id: str, status: str) -> None:
    slot = await client.read("Slot", slot_id)
    await client.update({**slot, "status": status}, if_match=(slot.get("meta") or {}).get("versionId"))


# -- playing ---------------------------------------------------------------------------------------
async def _snapshot(sched, patient: str) -> tuple[dict[str, dict], int]:
    appointments = {a["id"]: a for a in await sched.appointments(patient)}
    return appointments, len(await sched.tasks(patient))


def _record_messages(figures: Figures, where: str, texts: list[str], appointments: list[dict]) -> list[Claims]:
    out = []
    for text in texts:
        figures.transcript.append(f"{where}   agent: {text}")
        figures.agent_messages += 1
        claims = check_claims(text, appointments)
        if claims.false:
            figures.false_claims += 1
            figures.failures.append(f"{where}: false claim: {'; '.join(claims.false)} | {text[:160]!r}")
        out.append(claims)
    return out


async def play(sched, agent, conversation: dict, figures: Figures, ledger: ActionLedger) -> None:
    cid, language = conversation["id"], conversation["language"]
    figures.conversations += 1
    owner = await sched.practitioner()
    grid = await sched.slots(owner, [slot_time(d, h) for d in GRID_DAYS for h in GRID_HOURS
                                     if slot_time(d, 0).weekday() < 5])
    reschedule_to = [grid[t] for t in sorted(grid) if t >= slot_time(13, 0)][::-1]
    patient = await sched.patient(f"Corpus{cid}")
    opened = await agent.start(sched.tenant, {"decisionId": f"d-{cid}", "patient": patient, "category": "colitis",
                                              "grade": 2, "withinDays": 14, "owner": f"Practitioner/{owner}"},
                               f"ev-{cid}-{figures.engine}")
    _record_messages(figures, f"{cid} opening", opened.texts, await sched.appointments(patient))
    urgent_done = False
    previous: tuple[str, str] | None = None
    for number, turn in enumerate(conversation["turns"], start=1):
        where = f"{cid} turn {number}"
        if "staff" in turn:
            figures.transcript.append(f"{where}   staff: {turn['staff']}")
            changed = await staff_action(sched, patient, turn["staff"], reschedule_to)
            if changed is None:
                figures.failures.append(f"{where}: staff {turn['staff']}: no booked appointment to change")
                continue
            notice = await agent.on_appointment(sched.tenant, changed["id"], str(changed["meta"]["versionId"]), patient)
            _record_messages(figures, f"{where} (staff {turn['staff']})", notice.texts, await sched.appointments(patient))
            continue
        figures.transcript.append(f"{where} patient: {turn['patient']}   (expect {' '.join(turn['expect'])})")
        before, tasks_before = await _snapshot(sched, patient)
        communication, version = await sched.write_message(patient, turn["patient"])
        result = await agent.on_message(sched.tenant, communication, version)
        figures.patient_turns += 1
        figures.reply_seconds.append(result.elapsed_s)
        if previous and previous[0] == turn["patient"] and "duplicate" in conversation["tags"]:
            again = await agent.on_message(sched.tenant, communication, version)      # the event redelivered
            if not again.duplicate or again.sent:
                figures.failures.append(f"{where}: a redelivered message was handled twice")
        previous = (turn["patient"], communication)
        after, tasks_after = await _snapshot(sched, patient)
        appointments = list(after.values())
        claims = _record_messages(figures, where, result.texts, appointments)
        new_booked = [a for i, a in after.items() if a["status"] == "booked" and
                      (i not in before or before[i]["status"] != "booked")]
        newly_cancelled = [a for i, a in after.items() if a["status"] == "cancelled" and
                           i in before and before[i]["status"] == "booked"]
        escalated = tasks_after > tasks_before
        figures.bookings += len(new_booked)
        for appointment in new_booked:
            consent = await ledger.get(sched.tenant, f"{result.conversation_id}:{communication}.{version}:consent")
            slot = appointment["slot"][0]["reference"].split("/", 1)[1]
            if consent is None or consent.get("slot_id") != slot or "not_booked" in turn["expect"]:
                figures.bookings_without_consent += 1
                why = "no ledger record" if consent is None else "corpus: not a yes"
                figures.failures.append(f"{where}: booking without consent ({why})")
        if urgent_symptoms(conversation) and not urgent_done and escalated:
            urgent_done = any(t.get("priority") == "urgent" and (t.get("businessStatus") or {}).get("text") ==
                              "urgent-symptoms" for t in await sched.tasks(patient))
        reply_text = "\n".join(result.texts)
        stated = {m for c in claims for m in c.booked_times}
        booked_starts = {start_of(a) for a in appointments if a["status"] == "booked"}
        checks = {
            "booked": (bool(new_booked), "no new booked appointment"),
            "not_booked": (not new_booked, f"{len(new_booked)} booked"),
            "cancelled": (bool(newly_cancelled), "nothing cancelled"),
            "not_cancelled": (not newly_cancelled, f"{len(newly_cancelled)} cancelled"),
            "escalated": (escalated, "no staff Task"),
            "not_escalated": (not escalated, "a staff Task was created"),
            "appointment_stated": (bool(stated & booked_starts), "no booked time stated"),
            "no_appointment_claimed": (not any(c.claims_appointment for c in claims), "an appointment was claimed"),
            "polite_close": (bool(POLITE.search(reply_text)) and not NOT_POLITE.search(reply_text), "not a polite close"),
        }
        for expectation in turn["expect"]:
            figures.expectations += 1
            ok, why = checks.get(expectation, (False, f"unknown expectation {expectation!r}"))
            if not ok:
                figures.failures.append(f"{where}: {expectation}: {why} | {turn['patient'][:60]!r} -> {reply_text[:160]!r}")
    figures.blocked_claim_tasks += sum((t.get("businessStatus") or {}).get("text") == "blocked-claim"
                                       for t in await sched.tasks(patient))
    if urgent_symptoms(conversation):
        done, total = figures.urgent.get(language, [0, 0])
        figures.urgent[language] = [done + int(urgent_done), total + 1]


def urgent_symptoms(conversation: dict) -> bool:
    """A conversation with an urgent symptom: tagged ``urgent`` or ``urgent_<how>`` ("urgent_played_down",
    "urgent_third_person", as the third author tags them)."""
    return any(tag == "urgent" or tag.startswith("urgent_") for tag in conversation["tags"])


async def run(sched, engine: str, conversations: list[dict], fake_llm=None) -> Figures:
    settings = dict(SETTINGS)
    model = ClaimingModel()
    if engine == "llm":
        fake_llm.serve(model)
        await sched.start_inference()
        settings |= {"scheduling_engine": "llm", "scheduling_llm_base_url": fake_llm.base_url,
                     "scheduling_llm_model": "fake-model"}
    sched.registry(**settings)
    agent = sched.new_agent()
    figures = Figures(engine)
    ledger = ActionLedger(sched.pools)
    for conversation in conversations:
        await play(sched, agent, conversation, figures, ledger)
    figures.model_claims = model.claims
    return figures

