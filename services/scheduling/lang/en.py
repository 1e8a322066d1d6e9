"""English: the pattern table and the text table."""
from __future__ import annotations

import re

from services.scheduling.lang.en_urgency import URGENCY  # noqa: F401 (the language's urgent-symptom table)

CODE = "en"
_I = re.IGNORECASE


def _any(*alternatives: str, start: bool = False) -> re.Pattern:
    return re.compile((r"^\s*" if start else r"\b") + "(" + "|".join(alternatives) + r")(?!\w)", _I)


PATTERNS: dict[str, re.Pattern] = {
    # asking for a person (urgent symptoms are the URGENCY table below)
    "staff": _any(r"(speak|talk) (to|with) (a |an |the |my )?(person|human|nurse|doctor|someone|somebody|staff|real person|oncologist)",
                  r"(nurse|doctor|someone|somebody|person|oncologist)( \w+)? (call|phone|ring|contact|text) me",
                  r"(have|get) (a|the|my) (nurse|doctor|someone) (to )?(call|phone|contact) me", r"call me back", r"(give|gives|giving) me a (call|ring|phone call)", r"(request|want|need|like|get|have|arrange) (a|an) (call ?back|phone call|call from)",
                  r"(want|need|like|can i|could i|may i) (to )?(speak|talk) (to|with) (a |an |the |my |some)?(one|body|nurse|doctor)",
                  r"need (a|to talk to a) (human|person|nurse)", r"real person"),
    # a yes: a weak affirmative opening the message, a strong one anywhere, or an explicit "book it"
    "yes": re.compile(r"^\s*((ah|oh|hm+|mm+|well)\W+)?(ok|okay|k|sure|got it|fine|great|perfect|correct|confirm|absolutely|definitely|of course|"
                      r"sounds good|that works|that('s| is) fine|go ahead|please do)\b|"
                      r"\b(yes|yeah|yep|yup|yess+)\b|"
                      r"\b(book (it|that|this|the|option|number|#|me)|please book|go ahead and book|i'?ll take (it|the|option))\b",
                      _I),
    "no": re.compile(r"^\s*(no|nope|nah|not really|neither|none|n)\b|\b(doesn'?t|does not|don'?t|won'?t) work\b|"
                     r"\bnone of (these|those|them)\b|\bnot yet\b|\b(don'?t|do not) (book|want)\b", _I),
    "hedge": _any(r"maybe", r"perhaps", r"probably", r"possibly", r"might", r"not sure", r"unsure", r"let me (think|check|see|ask)",
                  r"i('ll| will) (think|check|let you know|get back)", r"i need to (check|ask|think|talk|see)",
                  r"i have to (check|ask|think|talk|see)", r"(check|ask|talk) with my", r"think about it", r"get back to you",
                  r"hold on", r"not decided", r"i guess", r"depends", r"i suppose", r"i think so", r"we'?ll see", r"i'?ll see",
                  r"(let me|i need to|i have to|i'?ll) (confirm|double[- ]check|look|find out)", r"check (my|the) (calendar|schedule)",
                  r"hopefully", r"if i can", r"should be (ok|okay|fine)", r"tentative\w*", r"pencil (me|it) in",
                  r"not (certain|positive)", r"let you know", r"ask my \w+", r"need to ask", r"kind of", r"sort of",
                  r"(not|don'?t) know yet", r"(only |but only )?if (my|i|he|she|we|they|it|that|there|the)\b", r"as long as", r"provided (that )?", r"haven'?t decided", r"undecided", r"lemme (think|check|see|ask)", r"should work",
                  r"likely", r"i believe so", r"i hope so", r"fingers crossed", r"in theory"),
    # a pause, not an answer: "ok one sec", "hold on", "wait" (only "wait" on its own: "no wait, keep it" is a no)
    "pause": re.compile(r"\b(one|a|just a|half a|gimme a|give me a) (sec|second|minute|min|moment|mo)\b(?!\s*(appointment|visit|time|slot|one|option|opinion|infusion|day|late))|\bhang on\b|\bhold on\b|"
                        r"\bbrb\b|\bbe right back\b|\bone moment\b|"
                        r"^\W*((ok|okay|k|sure|yes|yeah|um+|uh+|er+|oh)\W+)?wait( up| please| a (sec|second|minute|moment|bit))?\W*$",
                        _I),
    "thanks": _any(r"thanks?( you)?", r"thanks+", r"thank u", r"thx+", r"ty", r"cheers", r"much appreciated", r"appreciate it",
                   r"great,? thanks", r"gracias"),
    "greeting": re.compile(r"^\s*(hi|hello|hey|good (morning|afternoon|evening))( there)?\W*$", _I),
    # a list of times, please (again, or new ones)
    "availability": _any(r"(what|which) (times|days|dates|slots|appointments)", r"times again", r"what do you have",
                         r"anything (on|for|next|this|else|earlier|later)", r"(?<!the )earliest(?! (one|option|slot|time)\b)", r"available", r"availability",
                         r"(a |an )?(new|another|different) (one|time|slot|appointment|day)", r"book again",
                         r"can i (book|get|have)", r"find me"),
    "goodbye": _any(r"bye", r"goodbye", r"see (you|u|ya)( then| soon| there)?", r"have a (good|nice) (day|one)"),
    "status": _any(r"when is my", r"what (day|time|date)( and (time|day|date))? is my", r"when'?s my", r"when'?s the (appointment|visit)", r"what time am i (coming|booked|due|seen|seeing)",
                   r"(can|could) you (confirm|check|tell me) (the (time|date|day) of )?my (appointment|visit)",
                   r"(confirm|check) (the (time|date|day) of )?my (appointment|visit)", r"(time|date|day) of my (appointment|visit)",
                   r"when (do|am) i (come|coming|have to come|go|need to come)( in)?\b", r"when('?s| is) my (next |upcoming )?(appt|appointment|visit)",
                   r"is my (appointment|visit|appt) (still )?(on|booked|confirmed)", r"do i (still )?have (my|the) (appointment|visit)",
                   r"what time is my", r"do i (still )?have (an?|anything)", r"my next (appointment|visit)",
                   r"when is it( now| again)?\b", r"what time is it (again|now)", r"(have|having) nothing booked",
                   r"anything booked", r"(did|has) (something|anything) change(d)? with my (appointment|visit)",
                   r"when('s| is) the (appointment|visit)", r"what day is my", r"remind me (when|of) my",
                   r"is my (appointment|visit) still", r"what is my appointment", r"when am i (booked|seeing|coming)",
                   r"what('?s| is) my (new |next |upcoming |updated )?(appointment|visit)( time| date)?\b",
                   r"when (am|do|should|must) i (supposed to |need to |have to )?(come|be there|arrive|show up|go)( in)?\b",
                   r"what (day|time|date) (was|is) (that|it)( again)?\b", r"what (time|day) do i (need|have) to (be|come|arrive|go)",
                   r"remind me (what|which) (day|time|date)", r"what('?s| is) the (new )?(time|date|day)\b(?! (slots?|options?))",
                   r"when (es|is) (la|the) (cita|appointment|appt)"),
    "cancel": _any(r"cancel", r"call off", r"can'?t (make|come)", r"won'?t be able to (make|come)", r"not coming",
                   r"(don'?t|do not) want (the|my|an|this) (appointment|visit)", r"drop (the|my) appointment"),
    "reschedule": _any(r"reschedule", r"re-schedule", r"move", r"change", r"switch", r"different (day|time|date)",
                       r"another (day|time|date)", r"instead", r"push (it )?back", r"postpone", r"earlier", r"later (time|date|day)"),
    "location": _any(r"where (is|are) (the|your) (clinic|office|hospital|building)", r"address", r"where do i go",
                     r"how do i get (there|to)", r"where (is|are) (you|it) located", r"which building", r"directions",
                     r"where is it"),
    "parking": _any(r"park(ing)?", r"car park", r"where do i leave (my|the) car"),
    "hours": _any(r"(what time|when) does (the clinic|the office|it|the hospital) open", r"opening hours",
                  r"(clinic|office) hours", r"when do you (open|close)"),
    "bring": _any(r"what (should|do|must) i bring", r"bring anything", r"need to bring", r"what to bring",
                  r"should i bring"),
    "question": re.compile(r"\?|^\s*(what|where|how|who|why|can|could|do|does|is|are|will|should)\b|"
                           r"\b(what time|what day|which day)\b", _I),
    "scheduling_words": _any(r"appointment", r"slot", r"book", r"time", r"visit", r"schedule", r"available",
                             r"availability", r"infusion", r"follow[- ]?up"),
}
#: A choice named inside a longer message ("yes, book the first one", "option 2 please").
PICK = re.compile(r"\b(?:the )?(first|second|third|last|1st|2nd|3rd)(?: one| option| time| slot)?\b|"
                  r"\bthe (earliest|soonest|middle|latest)\b|\b(earliest|soonest|middle|latest) (?:one|option|slot|time)\b|"
                  r"\b(?:option|number|no\.?|#|slot|time) ?([123]|one|two|three)\b|#([123])\b", _I)
PICKS = {"first": 0, "1st": 0, "1": 0, "one": 0, "second": 1, "2nd": 1, "2": 1, "two": 1, "third": 2, "3rd": 2, "3": 2,
         "three": 2, "last": -1, "earliest": 0, "soonest": 0, "middle": 1, "latest": -1}
#: A bare acknowledgement: read, not agreed ("ok" to "Shall I book ...? Please reply yes or no").
ACKS = frozenset({"ok", "okay", "okey", "k", "kk", "fine", "alright", "all right"})
ORDINALS = {"1": 0, "one": 0, "first": 0, "1st": 0, "2": 1, "two": 1, "second": 1, "2nd": 1,
            "3": 2, "three": 2, "third": 2, "3rd": 2, "last": -1}
ORDINAL = re.compile(r"^\s*(?:option\s*|number\s*|#\s*|slot\s*|the\s+)?(1st|2nd|3rd|1|2|3|one|two|three|first|second|third|last)"
                     r"(\s+(one|option|slot))?\s*[.!]?\s*(please)?\s*[.!]?\s*$", _I)

#: Words that mark a message as English (language detection).
MARKERS = frozenset("""
i im i'm me my you your we it is are was be the a an and or but to of in on at for with from this that these
those there what when where how why who which can could would will should do does did have has had not yes
yeah yep please thanks thank appointment visit time day week morning afternoon evening today tomorrow
book cancel change move need want like works work fine good great sure maybe just first second third one two
three monday tuesday wednesday thursday friday saturday sunday next any sorry hi hello pain feel feeling nurse
doctor call help get let think check daughter son wife husband park parking bring still again much really
""".split())

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WHEN_FORMAT = "{weekday} {day} {month} at {time}"

TEXTS = {
    "safe_reply": "Thank you for your message. I could not complete that automatically; a member of our clinic team "
                  "will review your request and contact you.",
    "urgent_reply": "Some of what you describe may need urgent attention. If you have chest pain, trouble breathing or "
                    "feel very unwell, call 911 or go to the nearest emergency department now. I have notified our care "
                    "team and a nurse will contact you shortly. I will not schedule anything in this conversation.",
    "safety_handoff": "I have passed your message to a member of our clinic team, who will contact you. If you feel "
                      "very unwell, call 911 or go to the nearest emergency department.",
    "redirect": "I can only help with scheduling here. For other questions, please call the clinic or ask your care "
                "team at your visit.",
    "not_understood": "Sorry, I did not understand. Please reply with the number of an option, or a day and time "
                      "(for example \"next Tuesday afternoon\" or \"tomorrow at 3\").",
    "handoff": "I have asked a member of our clinic team to contact you to find a time.",
    "no_appointment": "I could not find an upcoming appointment for you.",
    "staff_requested": "I have asked a member of our clinic team to contact you. If you feel very unwell, call 911 or "
                       "go to the nearest emergency department.",
    "escalated": "A member of our care team has your messages and will contact you.",
    "open_intro": "Your care team would like to see you for a follow-up visit. These times are available:",
    "patient_intro": "These times are available:",
    "offers_outro": "Reply with the number of the time that suits you, or tell me another day or time.",
    "offers_again": "The times I can offer:",
    "offers_have": "The times I have:",
    "ask_confirm": "Shall I book {when} for you? Please reply yes or no.",
    "ask_cancel": "Do you want me to cancel your appointment on {when}? Please reply yes or no.",
    "keep_appointment": "All right, I will leave your appointment on {when} as it is.",
    "booked": "Your appointment is booked for {when}.",
    "replaced": " Your previous appointment on {when} is cancelled.",
    "cancelled": "Your appointment on {when} is cancelled.",
    "upcoming": "Your upcoming appointments: {list}.",
    "list_sep": "; ",
    "taken": "Sorry, that time was just taken by someone else.",
    "book_failed": "Sorry, I could not complete the booking. A member of our clinic team will check and contact you; "
                   "please do not rely on that time until they do.",
    "release_failed": "I could not release your previous appointment; our clinic team will sort it out.",
    "no_problem_offers": "No problem.",
    "acknowledged": "All right. If you need to book, change or cancel a visit, just send me a message.",
    "hello": "Hello!",
    "bye_close": "Take care! Message me here any time if you need to book, change or cancel a visit.",
    "no_problem_ask": "No problem. Which day or time would suit you better?",
    "which_one": "Which day or time would suit you? You can reply with the number of an option.",
    "find_time": "Would you like me to find you a time? Tell me a day or time that suits you.",
    "not_sure_date": "Sorry, I am not sure which date you mean ({why}). Could you tell me the weekday and the date, "
                     "for example \"Tuesday 14 March\"?",
    "no_free_time": "Sorry, I have no free time {what}.",
    "no_free_time_ask": "Sorry, I have no free time {what}. Which other day would suit you?",
    "in_the_next_days": "in the next days",
    "yes_to_book": "To book {when}, please reply yes. Or tell me another day or time.",
    "on_day": "on {weekday} {day} {month}",
    "on_weekday": "on {weekday}",
    "or": " or ",
    "part_morning": "in the morning",
    "part_afternoon": "in the afternoon",
    "part_evening": "in the evening",
    "at_time": "at {time}",
    "that_time": "at that time",
    "hedge_slot": "No rush. I have not made any booking yet: {when} stays on offer for now. Reply yes when you want me to book "
                  "it, or tell me another day or time.",
    "hedge_offers": "No rush. I have not made any booking yet, and the times I offered stay open for now. Reply with the number "
                    "of a time when you are ready, or tell me another day or time.",
    "hedge_cancel": "No rush. Your appointment on {when} stays as it is. Reply yes if you want me to cancel it.",
    "confirm_again": "Just to be sure: shall I book {when} for you? Please reply yes or no.",
    "confirm_cancel_again": "Just to be sure: do you want me to cancel your appointment on {when}? Please reply yes or no.",
    "kept_after_no": "All right, nothing has changed: your appointment on {when} stays as it is. If you want to cancel "
                     "or move it, just tell me.",
    "thanks_close": "You're welcome! Message me here any time if you need to book, change or cancel a visit. Take care.",
    "thanks_open": "You're welcome!",
    "staff_cancelled": "Update from the clinic: your appointment on {when} has been cancelled by the clinic.",
    "staff_moved": "Update from the clinic: your appointment on {old} has been moved by the clinic to {when}.",
    "staff_noshow": "Update from the clinic: our records show your appointment on {when} as missed.",
    "staff_removed": "Update from the clinic: your appointment is no longer in the clinic's records.",
    "declined": "All right, I have not made any booking. If you want a time later, just send me a message.",
    "offer_new_time": "If you would like a new time, tell me a day or time that suits you.",
    "status_prefix": "",
    "logistics_missing": "I do not have that information here; please call the clinic and the team will help.",
}


def to_english_dates(text: str) -> str:
    return text
