"""Assertion and attribution: is a mention a current irAE of this patient?

A mention is kept when it is asserted (not negated, uncertain, hypothetical, about family, or
historical without a cue that it is still current) and attributed:

- explicitly: its own wording is immune-qualified ("immune-mediated colitis", "ICI pneumonitis",
  "ipilimumab hypophysitis"), or its sentence holds an asserted attribution phrase
  ("felt to be immune-related", "secondary to pembrolizumab", "irAE");
- by context: the note is in an **ICI context** (it names a checkpoint inhibitor or
  immunotherapy anywhere outside a family-history statement, or states an attribution phrase),
  the term is a strong one (a CTCAE term or synonym, not a lab value or imaging finding), and no
  alternative cause for the category is asserted in the note (or, for a bare drug or
  circumstance such as irinotecan or IV contrast, in the mention's own sentence), and the note
  does not itself leave the cause open (an alternative cause named as uncertain:
  "rule out C. difficile", or an immune-qualified mention listed in a differential:
  "ICI colitis versus infectious colitis").

An asserted alternative cause in the mention's own sentence beats a sentence-level attribution
phrase (the note is then at best ambiguous); only a mention whose own wording is immune-qualified
survives it.
"""
from __future__ import annotations

from dataclasses import dataclass

from spacy.tokens import Doc, Span

from services.inference.rules.modifiers import DIFFERENTIAL_PHRASES, FAM, HIST, HYPO, NEG, ONGOING, POSS
from services.inference.rules.sections import SECTION_POLICY
from services.inference.rules.vocabulary import is_qualified

ALT_PREFIX = "ALT:"
ICI, IMMUNE = "ICI", "IMMUNE"


@dataclass(frozen=True)
class Assertion:
    """What ConText and the section say about one target span."""
    negated: bool
    uncertain: bool
    hypothetical: bool
    family: bool
    historical: bool
    ongoing: bool
    ignored: bool

    @property
    def current(self) -> bool:
        """Asserted as a present condition of this patient."""
        return not (self.ignored or self.negated or self.uncertain or self.hypothetical or self.family
                    or (self.historical and not self.ongoing))

    @property
    def affirmed(self) -> bool:
        """Asserted for this patient, now or in the past (used for chronic alternative causes)."""
        return not (self.ignored or self.negated or self.uncertain or self.hypothetical or self.family)


def assertion(ent: Span) -> Assertion:
    categories = {modifier.category for modifier in ent._.modifiers}
    policy = SECTION_POLICY.get(ent[0]._.section_category or "")
    return Assertion(
        negated=NEG in categories, uncertain=POSS in categories,
        hypothetical=HYPO in categories or policy == "hypothetical",
        family=FAM in categories or policy == "family",
        historical=HIST in categories or policy == "historical",
        ongoing=ONGOING in categories, ignored=policy == "ignored",
    )


@dataclass(frozen=True)
class NoteContext:
    """Note-wide facts the attribution of every mention depends on."""
    ici_context: bool
    #: categories with an asserted acute or chronic alternative cause anywhere in the note.
    alternatives: frozenset[str]
    #: sentence start token -> categories with an asserted alternative cause in that sentence.
    local_alternatives: dict[int, frozenset[str]]
    #: sentence start tokens whose sentence holds an asserted attribution phrase.
    attributed_sentences: frozenset[int]
    #: categories whose cause the note itself leaves open ("ICI colitis versus infectious colitis").
    in_doubt: frozenset[str] = frozenset()


def note_context(doc: Doc) -> NoteContext:
    ici = False
    alternatives: set[str] = set()
    local: dict[int, set[str]] = {}
    attributed: set[int] = set()
    doubt: set[str] = set()
    for ent in doc.ents:
        label = ent.label_
        state = assertion(ent)
        sentence = ent.sent.start
        if label == ICI:
            ici = ici or not (state.family or state.ignored)
        elif label == IMMUNE:
            if not state.ignored and not state.family:
                ici = True
            if state.current:
                attributed.add(sentence)
        elif label.startswith(ALT_PREFIX):
            category = label[len(ALT_PREFIX):]
            kind = _strength(ent)
            if state.uncertain and not state.negated:
                doubt.add(category)
            counts = state.affirmed if kind == "chronic" else state.current
            if not counts:
                continue
            local.setdefault(sentence, set()).add(category)
            if kind in ("acute", "chronic"):
                alternatives.add(category)
        elif label != ICI and is_qualified(ent.text) and _in_differential(doc, ent):
            doubt.add(label)
    return NoteContext(ici, frozenset(alternatives), {k: frozenset(v) for k, v in local.items()},
                       frozenset(attributed), frozenset(doubt))


@dataclass(frozen=True)
class Verdict:
    present: bool
    explicit: bool


def judge(ent: Span, context: NoteContext, state: Assertion | None = None) -> Verdict:
    """Whether the category mention ``ent`` is a current irAE, and whether it is explicitly attributed."""
    state = state or assertion(ent)
    if not state.current:
        return Verdict(False, False)
    category = ent.label_
    sentence = ent.sent.start
    qualified = is_qualified(ent.text)
    if qualified:
        return Verdict(True, True)
    if category in context.local_alternatives.get(sentence, frozenset()):
        return Verdict(False, False)
    if sentence in context.attributed_sentences:
        return Verdict(True, True)
    if (_strength(ent) != "strong" or not context.ici_context or category in context.alternatives
            or category in context.in_doubt):
        return Verdict(False, False)
    return Verdict(True, False)


def _in_differential(doc: Doc, ent: Span) -> bool:
    """The mention is one option of a differential ("ICI dermatitis vs drug eruption")."""
    return any(m.category == POSS and doc[m.modifier_span[0]:m.modifier_span[1]].text.lower() in DIFFERENTIAL_PHRASES
               for m in ent._.modifiers)


def _strength(ent: Span) -> str:
    """The strength recorded by the target rule that matched ``ent``."""
    rule = ent._.target_rule
    return (rule.metadata or {}).get("strength", "strong") if rule is not None else "strong"
