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

import functools
import re
from dataclasses import dataclass

from spacy.tokens import Doc, Span

from services.inference.rules.layout import Layout, education_sentence, negated_by_list
from services.inference.rules.pipeline import section_at
from services.inference.rules.modifiers import DIFFERENTIAL_PHRASES, FAM, HIST, HYPO, NEG, ONGOING, POSS
from services.inference.rules.sections import SECTION_POLICY
from services.inference.rules.sentences import sentence_of, sentence_text
from services.inference.rules.temporality import family_subject, first_year_near, predates, resolved_in
from services.inference.rules.vocabulary import GENERIC_IMMUNOTHERAPY, ICI_DRUGS, is_qualified, is_symptom

ALT_PREFIX = "ALT:"
ICI, IMMUNE, NON_ICI = "ICI", "IMMUNE", "NON_ICI"

#: Endocrine irAEs that need lifelong replacement: "history of" does not make them resolved.
REPLACEMENT_CATEGORIES = frozenset({"thyroiditis", "hypophysitis", "adrenal_insufficiency", "diabetes"})
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _is_mention(ent: Span) -> bool:
    return ent.label_ not in (ICI, IMMUNE, NON_ICI) and not ent.label_.startswith(ALT_PREFIX)


def text_of(doc: Doc) -> str:
    """The note text (spaCy rebuilds ``doc.text`` from its tokens on every access)."""
    text = doc.user_data.get("vigil_text")
    return text if text is not None else doc.text


def ents_of(doc: Doc) -> tuple[Span, ...]:
    """The target spans (spaCy rebuilds ``doc.ents`` on every access)."""
    ents = doc.user_data.get("vigil_ents")
    return ents if ents is not None else tuple(doc.ents)


def layout_of(doc: Doc) -> Layout | None:
    return doc.user_data.get("vigil_layout")


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

    def why_not(self) -> str:
        """The first reason the mention is not current (a ``REASONS`` key), or ""."""
        for reason, flag in (("ignored", self.ignored), ("negated", self.negated), ("family", self.family),
                             ("hypothetical", self.hypothetical), ("uncertain", self.uncertain),
                             ("historical", self.historical and not self.ongoing)):
            if flag:
                return reason
        return ""

    @property
    def affirmed(self) -> bool:
        """Asserted for this patient, now or in the past (used for chronic alternative causes)."""
        return not (self.ignored or self.negated or self.uncertain or self.hypothetical or self.family)


def _section_policy(ent: Span) -> str | None:
    """The policy of the mention's section, which reaches only to the first blank line after its
    header (a medication list or a family history does not swallow the note when the next
    header is missed)."""
    category, section_start = section_at(ent.doc, ent.start)
    policy = SECTION_POLICY.get(category or "")
    if policy is None:
        return None
    if section_start is not None and _PARAGRAPH_BREAK.search(text_of(ent.doc), section_start, ent.start_char):
        return None
    return policy


_ASSERTIONS = "vigil_assertions"


def assertion(ent: Span) -> Assertion:
    """What ConText, the section and the layout say about the span; worked out once per span of a
    parsed note (the note's attribution and then the decision on each mention ask again)."""
    cache = ent.doc.user_data.setdefault(_ASSERTIONS, {})
    key = (ent.start, ent.end, ent.label)
    state = cache.get(key)
    if state is None:
        state = cache[key] = _assertion(ent)
    return state


def _assertion(ent: Span) -> Assertion:
    categories = {modifier.category for modifier in ent._.modifiers}
    policy = _section_policy(ent)
    layout = layout_of(ent.doc)
    negated = NEG in categories
    hypothetical = HYPO in categories or policy == "hypothetical"
    family = FAM in categories or policy == "family"
    if layout is not None and ent.label_ not in (ICI, NON_ICI) and not ent.label_.startswith(ALT_PREFIX):
        negated = negated or layout.in_negative_list(ent.start_char) or negated_by_list(
            text_of(ent.doc), sentence_of(ent).start_char, ent.start_char)
        hypothetical = hypothetical or layout.in_education(ent.start_char) or education_sentence(sentence_text(ent))
        family = family or family_subject(text_of(ent.doc), sentence_of(ent).start_char, ent.start_char)
    historical = HIST in categories or policy == "historical"
    ongoing = ONGOING in categories
    if ent.label_ in REPLACEMENT_CATEGORIES and historical:
        ongoing = True
    if layout is not None and ent.label_ not in (ICI, IMMUNE, NON_ICI) and not ent.label_.startswith(ALT_PREFIX):
        limit = next((e.start_char for e in ents_of(ent.doc)
                      if e.start_char > ent.end_char and e.label_ not in (ICI, IMMUNE, NON_ICI)
                      and (e.label_ != ent.label_ or sentence_of(e).start != sentence_of(ent).start)
                      and not e.label_.startswith(ALT_PREFIX)), None)
        if resolved_in(text_of(ent.doc), ent.start_char, ent.end_char, sentence_of(ent).end_char, layout, limit):
            negated = True
    uncertain = POSS in categories or (_is_mention(ent) and (sentence_text(ent).rstrip().endswith("?") or bool(
        _QUESTIONED.search(text_of(ent.doc), max(0, ent.start_char - 20), ent.start_char))))
    if _is_mention(ent) and _CONSIDERED_REJECTED.match(text_of(ent.doc), ent.end_char, sentence_of(ent).end_char):
        negated = True
    if uncertain and _treated(sentence_text(ent)):
        uncertain = False  # a working diagnosis being treated (taxonomy notes, rule 10)
    if ent.label_ not in (ICI, NON_ICI) and not ent.label_.startswith(ALT_PREFIX) and _DIFFERENTIAL.search(sentence_text(ent)):
        uncertain = True
    return Assertion(
        negated=negated, uncertain=uncertain, hypothetical=hypothetical, family=family,
        historical=historical, ongoing=ongoing, ignored=policy in ("ignored", "review_of_systems"),
    )


#: A question mark put before the term ("RFC: diarrhea on nivolumab - ?immune colitis").
_QUESTIONED = re.compile(r"\?[ \t]*(?:[\w-]+[ \t]+){0,2}$")
#: A diagnosis considered and then rejected in its sentence ("ICI hepatitis was considered but is
#: not supported", "ICI myocarditis considered ..., but troponin explained by PE; not suspected").
_CONSIDERED_REJECTED = re.compile(
    r"[^.;\n]{0,40}?\b(?:was\s+|were\s+|is\s+|initially\s+|also\s+)*considered\b[^.\n]{0,200}?\b(?:but|however)\b"
    r"[^.\n]{0,200}?\b(?:not\s+(?:supported|favou?red|suspected|likely|consistent)|unlikely|less\s+likely|ruled\s+out"
    r"|excluded|explained\s+by)", re.IGNORECASE)


@dataclass(frozen=True)
class NoteContext:
    """Note-wide facts the attribution of every mention depends on."""
    ici_context: bool
    #: categories with an asserted acute or chronic alternative cause anywhere in the note.
    alternatives: frozenset[str]
    #: scope key (see ``scope``) or sentence start -> categories with an asserted alternative
    #: cause there (an attribution to another drug or a non-checkpoint immunotherapy reaches the
    #: whole item; a bare drug or circumstance only its sentence).
    local_alternatives: dict[int, frozenset[str]]
    #: scope keys of the items that hold an asserted attribution phrase.
    attributed_sentences: frozenset[int]
    #: sentence starts (characters) that hold one (what a weak term needs).
    attributed_own_sentences: frozenset[int] = frozenset()
    #: categories whose cause the note itself leaves open ("ICI colitis versus infectious colitis").
    in_doubt: frozenset[str] = frozenset()
    #: the note names only immunotherapies that are not checkpoint inhibitors (IL-2, CAR-T, BCG ...).
    non_ici_only: bool = False
    #: the note names a pituitary cause of adrenal insufficiency (hypophysitis, a secondary or
    #: central adrenal insufficiency): adrenal insufficiency not called primary is hypophysitis.
    pituitary_cause: bool = False
    #: where asserted attribution phrases start (characters).
    attribution_starts: tuple[int, ...] = ()
    #: the earliest year written next to a checkpoint-inhibitor mention (its start, at the latest).
    ici_year: int | None = None


def scope(ent: Span) -> int:
    """The key of the span an attribution or a named cause reaches: the mention's problem item
    (a numbered, hashed or labelled entry with its sub-lines) when it is in one, else its
    sentence (a bullet or a paragraph of prose is not one problem; keys are character offsets)."""
    layout = layout_of(ent.doc)
    if layout is None or not layout.is_problem(ent.start_char):
        return sentence_of(ent).start_char
    return layout.item(ent.start_char)[0]


def note_context(doc: Doc) -> NoteContext:
    named = generic = non_ici = False
    alternatives: set[str] = set()
    local: dict[int, set[str]] = {}
    attributed: set[int] = set()
    own: set[int] = set()
    starts: list[int] = []
    doubt: set[str] = set()
    pituitary = False
    from services.inference.findings import CATEGORIES

    for ent in ents_of(doc):
        label = ent.label_
        state = assertion(ent)
        where = scope(ent)
        if label == ICI:
            if not (state.family or state.ignored or _planned(ent)):
                if _strength(ent) == "generic":
                    generic = True
                else:
                    named = True
        elif label == NON_ICI:
            if state.current:
                non_ici = True
                local.setdefault(where, set()).update(CATEGORIES)
        elif label == IMMUNE:
            if not state.ignored and not state.family:
                named = True
            if state.affirmed:  # a past condition's cause is still its cause
                attributed.add(where)
                own.add(sentence_of(ent).start_char)
                starts.append(ent.start_char)
        elif label.startswith(ALT_PREFIX):
            for category, kind in alternative_kinds(ent.text, label[len(ALT_PREFIX):], _strength(ent)):
                if kind == "test":
                    continue
                if state.uncertain and not state.negated:
                    doubt.add(category)
                counts = state.affirmed if kind == "chronic" else state.current
                if not counts:
                    continue
                local.setdefault(where if kind == "drug" else sentence_of(ent).start_char, set()).add(category)
                if kind in ("acute", "chronic"):
                    alternatives.add(category)
        else:
            if is_qualified(ent.text) and _in_differential(doc, ent):
                doubt.add(label)
            if label == "hypophysitis" and state.affirmed:
                pituitary = True
    ici = named or (generic and not non_ici)
    ici_year = first_year_near(text_of(doc), [(e.start_char, e.end_char) for e in ents_of(doc)
                                          if e.label_ == ICI and _strength(e) == "named"])
    if non_ici and not named:
        attributed, own = set(), set()
    return NoteContext(ici, frozenset(alternatives), {k: frozenset(v) for k, v in local.items()},
                       frozenset(attributed), frozenset(own), frozenset(doubt), non_ici_only=non_ici and not named,
                       pituitary_cause=pituitary, attribution_starts=tuple(starts), ici_year=ici_year)


@dataclass(frozen=True)
class Verdict:
    present: bool
    explicit: bool
    #: The rule that decided, a short machine code (no note text): see ``REASONS``.
    reason: str = ""


#: Why a mention was kept or dropped (shown by ``vigil eval --errors``).
REASONS = {
    "negated": "negated or resolved", "uncertain": "uncertain or an open question",
    "hypothetical": "hypothetical, education or plan to monitor", "family": "about someone else",
    "historical": "historical and not current", "ignored": "in a list section (medications, allergies)",
    "qualified": "its own wording is immune-related", "local_alternative": "alternative cause in the same item",
    "attributed": "its item attributes it to a checkpoint inhibitor", "weak_term": "weak term without attribution",
    "no_ici_context": "no checkpoint inhibitor in the note", "alternative": "alternative cause named in the note",
    "in_doubt": "the note leaves the cause open", "context": "strong term in a checkpoint-inhibitor context",
    "named_cause": "its clause states a cause that is not the checkpoint inhibitor",
    "context_symptom": "symptom in a checkpoint-inhibitor context, cause not stated (review, not alert)",
    "non_ici": "the note's immunotherapy is not a checkpoint inhibitor",
    "predates_ici": "the condition predates the checkpoint inhibitor",
    "secondary_ai": "secondary adrenal insufficiency of a pituitary cause (hypophysitis)",
    "assessment": "the assessment of the same category decides otherwise",
    "stale_problem_list": "only a problem-list entry, and the note says the condition resolved",
}


def judge(ent: Span, context: NoteContext, state: Assertion | None = None) -> Verdict:
    """Whether the category mention ``ent`` is a current irAE, and whether it is explicitly attributed."""
    state = state or assertion(ent)
    if not state.current:
        return Verdict(False, False, state.why_not())
    category = ent.label_
    sentence = scope(ent)
    if context.non_ici_only:
        return Verdict(False, False, "non_ici")
    qualified = is_qualified(ent.text) or bool(_PAREN_DRUG.match(text_of(ent.doc), ent.end_char))
    if qualified:
        return Verdict(True, True, "qualified")
    if category in context.local_alternatives.get(sentence, frozenset()):
        return Verdict(False, False, "local_alternative")
    if named_other_cause(ent):
        return Verdict(False, False, "named_cause")
    if category in context.local_alternatives.get(sentence_of(ent).start_char, frozenset()):
        if not _directly_attributed(ent, context):
            return Verdict(False, False, "local_alternative")
    strong = _strength(ent) == "strong"
    if category == "adrenal_insufficiency" and (_pituitary_cause(ent) or (
            context.pituitary_cause and not _PRIMARY.search(text_of(ent.doc), max(0, ent.start_char - 12), ent.end_char))):
        return Verdict(False, False, "secondary_ai")
    if sentence_of(ent).start_char in context.attributed_own_sentences or (strong and sentence in context.attributed_sentences):
        return Verdict(True, True, "attributed")
    if not strong:
        return Verdict(False, False, "weak_term")
    if not context.ici_context:
        return Verdict(False, False, "no_ici_context")
    if category in context.alternatives:
        return Verdict(False, False, "alternative")
    if category in context.in_doubt:
        return Verdict(False, False, "in_doubt")
    if state.historical and category in REPLACEMENT_CATEGORIES:
        # a past endocrine condition counts as ongoing only when the note ties it to the
        # checkpoint inhibitor (taxonomy notes, rule 2); otherwise it may well predate it
        return Verdict(False, False, "historical")
    layout = layout_of(ent.doc)
    if layout is not None and predates(text_of(ent.doc), ent.start_char, ent.end_char, layout, context.ici_year):
        return Verdict(False, False, "predates_ici")
    if is_symptom(ent.text):
        return Verdict(True, False, "context_symptom")
    return Verdict(True, False, "context")


_SECONDARY = re.compile(r"(?:secondary|central|pituitary|acth[- ]deficient)\W*(?:\([^)]{0,20}\)\W*)?$", re.IGNORECASE)
_PRIMARY = re.compile(r"\bprimary\b", re.IGNORECASE)
_PITUITARY_CAUSE = re.compile(r"\b(?:hypophysitis|hypophisitis|hypopituitarism|pituitary|acth\s+deficiency|low\s+acth)\b",
                              re.IGNORECASE)


def _pituitary_cause(ent: Span) -> bool:
    """Adrenal insufficiency that is secondary (central) or named with a pituitary cause in its
    sentence is hypophysitis, not ``adrenal_insufficiency`` (taxonomy notes, rule 3)."""
    text = text_of(ent.doc)
    before = text[max(0, ent.start_char - 30):ent.start_char]
    return bool(_SECONDARY.search(before) or _PITUITARY_CAUSE.search(sentence_text(ent)))


#: A cause stated right after a mention in its sentence ("AKI due to dehydration", "rash
#: attributed to the new detergent"): its object is read, whatever it is.
_STATED_CAUSE = re.compile(
    r"\b(?:due\s+to|secondary\s+to|2/2|attributed\s+to|attributable\s+to|caused\s+by|induced\s+by|explained\s+by"
    r"|the\s+result\s+of|a\s+result\s+of)\s+(?P<object>[^.;:\n]{1,60})", re.IGNORECASE)
#: What a stated cause may be and still point to the checkpoint inhibitor (or to another irAE).
_IMMUNE_OBJECT = re.compile(
    rf"\b(?:{ICI_DRUGS}|{GENERIC_IMMUNOTHERAPY}|immune|auto-?immune|irae|ir-|checkpoint|hypophysitis|hypophisitis"
    rf"|colitis|enterocolitis|hepatitis|thyroiditis|nephritis|pneumonitis|myocarditis|dermatitis|adrenalitis|diabetes)\b",
    re.IGNORECASE)
#: Hedges that leave a stated cause open ("possibly due to", "less likely due to", "not due to").
_CAUSE_HEDGE = re.compile(
    r"\b(?:not|unlikely|less\s+likely|rather\s+than|possibly|possible|perhaps|may\s+be|might\s+be|could\s+be|vs\.?|versus"
    r"|or|rule\s+out|r/o|question(?:able)?|unclear\s+if|doubt)\W+(?:\w+\W+){0,2}$", re.IGNORECASE)


def named_other_cause(ent: Span) -> bool:
    """The mention's own clause states a cause that is not the checkpoint inhibitor (rule 12):
    the first causal phrase after it, before the next mention, unhedged, whose object names no
    checkpoint inhibitor, immunotherapy or irAE."""
    text = text_of(ent.doc)
    stop = sentence_of(ent).end_char
    following = next((e.start_char for e in ents_of(ent.doc) if e.start_char >= ent.end_char and _is_mention(e)), None)
    if following is not None:
        stop = min(stop, following)
    found = _STATED_CAUSE.search(text, ent.end_char, stop)
    if found is None or _CAUSE_HEDGE.search(text, ent.end_char, found.start()):
        return False
    return not _IMMUNE_OBJECT.search(found.group("object"))


#: A checkpoint inhibitor named in brackets right after the mention ("Hypophysitis (ipilimumab)").
_PAREN_DRUG = re.compile(rf"[ \t]*[,:-]?[ \t]*\([ \t]*(?:{ICI_DRUGS}|{GENERIC_IMMUNOTHERAPY})\b"
                         rf"|[ \t]*[,:-][ \t]*(?-i:ICI|irAE)\b", re.IGNORECASE)

#: How far after a mention an attribution phrase still belongs to it ("Diabetes, insulin-dependent,
#: due to pembrolizumab").
DIRECT_REACH = 40


def _directly_attributed(ent: Span, context: NoteContext) -> bool:
    """An attribution phrase follows the mention closely in its sentence: it beats a bare drug
    or circumstance named elsewhere in the sentence ("... as prednisone tapers")."""
    return any(0 <= start - ent.end_char <= DIRECT_REACH and start < sentence_of(ent).end_char
               for start in context.attribution_starts)


@functools.lru_cache(maxsize=1)
def _alternative_patterns() -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    from services.inference.rules.alternatives import ALTERNATIVE_CAUSES

    return tuple((category, kind, re.compile(rf"(?:{pattern})", re.IGNORECASE))
                 for category, entries in ALTERNATIVE_CAUSES.items() for kind, pattern in entries.items())


@functools.lru_cache(maxsize=4096)
def alternative_kinds(text: str, label: str, kind: str) -> tuple[tuple[str, str], ...]:
    """Every (category, kind) an alternative-cause span stands for: the matcher keeps one label
    per span, but "amiodarone" is a cause for hepatitis, thyroiditis and pneumonitis alike."""
    found = [(label, kind)]
    for category, other_kind, pattern in _alternative_patterns():
        if (category, other_kind) not in found and pattern.fullmatch(text):
            found.append((category, other_kind))
    return tuple(found)


#: The sentence treats the condition: a suspected irAE being treated is a working diagnosis.
_TREATED_AS = re.compile(
    r"\btreated\s+as\s+(?:such|an?\s+irae|immune|presumed|presumptive)|\bempiric(?:al(?:ly)?)?\s+(?:treatment|steroids|prednisone)"
    r"|\b(?:start|started|starting|initiate|initiated|begin|began|began)\s+(?:on\s+)?(?:high[- ]dose\s+|iv\s+)?"
    r"(?:prednisone|methylpred\w*|solu-?medrol|steroids|corticosteroids|infliximab|vedolizumab)\b", re.IGNORECASE)
_NOT_TREATED = re.compile(r"\b(?:no|not|without|hold|holding|defer|deferred|avoid|withhold|if)\b[^.;]{0,40}$", re.IGNORECASE)


def _treated(sentence: str) -> bool:
    return any(not _NOT_TREATED.search(sentence, 0, m.start()) for m in _TREATED_AS.finditer(sentence))


#: A checkpoint inhibitor that is only planned: before the drug starts nothing is an irAE (rule 5).
_PLANNED = re.compile(
    r"\b(?:plan(?:s|ned)?\s+(?:is\s+)?to\s+(?:start|begin|initiate)|will\s+(?:start|begin|initiate)|to\s+start\s+(?:on\s+)?"
    r"|(?:starting|start|begin|beginning)\s+(?:\w+\s+){0,3}(?:next|tomorrow|on\s+\d)|candidate\s+for|consent(?:ed)?\s+(?:for|to)"
    r"|recommend(?:ed)?\s+(?:starting|initiating)|(?:treatment|immunotherapy|ici)[- ]na[iï]ve|not\s+yet\s+(?:started|received)"
    r"|(?:c1d1|cycle\s+1)\s+(?:is\s+)?(?:planned|scheduled|tomorrow|next))", re.IGNORECASE)


def _planned(ent: Span) -> bool:
    return bool(_PLANNED.search(sentence_text(ent)))


_DIFFERENTIAL = re.compile(r"\b(?:differential|ddx)\b", re.IGNORECASE)


def _in_differential(doc: Doc, ent: Span) -> bool:
    """The mention is one option of a differential ("ICI dermatitis vs drug eruption")."""
    return any(m.category == POSS and doc[m.modifier_span[0]:m.modifier_span[1]].text.lower() in DIFFERENTIAL_PHRASES
               for m in ent._.modifiers)


def _strength(ent: Span) -> str:
    """The strength recorded by the target rule that matched ``ent``."""
    rule = ent._.target_rule
    return (rule.metadata or {}).get("strength", "strong") if rule is not None else "strong"
