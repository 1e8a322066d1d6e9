"""Target vocabulary: what the rules engine looks for in a note.

Every entry is ``(label, strength, regex)``; patterns are matched case-insensitively over the
note text by medspaCy's TargetMatcher, and overlapping matches keep the longest span. Labels:

- a category of the taxonomy (``colitis`` ...): a mention of the condition. ``strong`` terms
  (the CTCAE terms and their synonyms) count in an immunotherapy context with no alternative
  cause; ``weak`` terms (lab values, imaging findings, unspecific symptoms) count only when
  the sentence attributes them to immunotherapy.
- ``ICI``: a checkpoint-inhibitor drug or class (``named``), or the generic word "immunotherapy"
  (``generic``); establishes the note's ICI context (the generic word only when the note names
  no other kind of immunotherapy).
- ``NON_ICI``: an immunotherapy that is not a checkpoint inhibitor (IL-2, interferon, CAR-T,
  BCG, TIL, vaccines, bispecific T-cell engagers); a condition attributed to it is not an irAE.
- ``IMMUNE``: an attribution phrase ("immune-related", "irAE", "due to pembrolizumab").
- ``ALT:<category>``: a named alternative cause for that category (see ``alternatives.py``).
"""
from __future__ import annotations

import re

#: Qualifier that makes a mention immune-related by its own wording.
IMMUNE_QUALIFIER = (
    r"(?:immune[- ]?(?:related|mediated|induced)|immunotherapy[- ](?:related|induced|associated|mediated)"
    r"|auto-?immune|ir-?aes?|(?:ici|icpi|cpi)(?:[- ]?(?:related|induced|associated|mediated))?"
    r"|io[- ](?:related|induced|associated|mediated)"
    r"|checkpoint[- ]inhibitor[- ]?(?:related|induced|associated|mediated)?"
    r"|(?:pembro(?:lizumab)?|nivo(?:lumab)?|ipi(?:limumab)?|ipi/nivo|atezo(?:lizumab)?|durva(?:lumab)?"
    r"|avelumab|cemiplimab|dostarlimab|tremelimumab|relatlimab)[- ](?:related|induced|associated|mediated))"
)

#: Immune checkpoint inhibitors by generic name, brand, abbreviation and class.
ICI_DRUGS = (
    r"pembrolizumab|pembro|keytruda|nivolumab|nivo|opdivo|opdualag|ipilimumab|ipi|yervoy|ipi\s*/\s*nivo"
    r"|ipi\s*\+\s*nivo|nivo\s*/\s*ipi|ipi-nivo|atezolizumab|atezo|tecentriq|durvalumab|durva|imfinzi"
    r"|avelumab|bavencio|cemiplimab|libtayo|dostarlimab|jemperli|tremelimumab|imjudo|relatlimab"
    r"|tislelizumab|toripalimab|retifanlimab"
    r"|immune\s+checkpoint\s+inhibitors?|checkpoint\s+inhibitors?|checkpoint\s+blockade|icis?|icpis?"
    r"|anti-?pd-?1|anti-?pd-?l1|anti-?ctla-?4|pd-?1\s+inhibitors?"
    r"|pd-?l1\s+inhibitors?|ctla-?4\s+inhibitors?"
)
#: The class words that name immunotherapy without saying which kind.
GENERIC_IMMUNOTHERAPY = r"immunotherapy|immuno-oncology|(?-i:IO)"
#: Immunotherapies that are not checkpoint inhibitors (taxonomy notes, rule 13).
NON_ICI_THERAPY = (
    r"(?:high[- ]dose\s+)?(?:il-?2|interleukin[- ]?2|aldesleukin|proleukin)|interferon(?:[- ]alfa|[- ]alpha)?|ifn[- ]?(?:alfa|alpha|a)"
    r"|peg-?interferon|car[- ]?t(?:[- ]cells?|\s+therapy|\s+infusion)?|axi-?cel|axicabtagene|tisagenlecleucel|tisa-?cel"
    r"|lisocabtagene|idecabtagene|ciltacabtagene|cytokine\s+release\s+syndrome|(?-i:CRS|ICANS)"
    r"|(?:intravesical\s+)?(?-i:BCG)(?:-?osis)?|bacillus\s+calmette[- ]gu[eé]rin|(?-i:TIL)(?:\s+therapy|\s+infusion)?"
    r"|tumou?r[- ]infiltrating\s+lymphocytes?|lifileucel|blinatumomab|teclistamab|talquetamab|elranatamab|epcoritamab"
    r"|glofitamab|tebentafusp|talimogene|t-?vec|sipuleucel(?:-t)?|cancer\s+vaccines?|(?:dendritic\s+cell|peptide)\s+vaccines?"
)

#: Causal phrases that tie a finding to a checkpoint inhibitor ("secondary to nivolumab").
_CAUSAL = (
    r"(?:due\s+to|secondary\s+to|2/2(?:\s+to)?|from|attributed\s+to|attributable\s+to|related\s+to"
    r"|caused\s+by|induced\s+by|triggered\s+by|associated\s+with|in\s+the\s+setting\s+of"
    r"|in\s+setting\s+of|consistent\s+with|c/w|thought\s+to\s+be\s+from|likely\s+from|likely\s+due\s+to)"
)
_FILLER = r"(?:(?:his|her|their|the|recent|ongoing|prior|current|continued|adjuvant|maintenance|combination|dual|single[- ]agent)\s+){0,2}"

PHRASES: dict[str, str] = {
    "immune_qualifier": IMMUNE_QUALIFIER,
    "ici_drugs": ICI_DRUGS,
    "causal": _CAUSAL,
}


def _words(body: str) -> str:
    return rf"\b(?:{body})\b"


#: What may stand right before a term and make it immune-related by wording
#: ("immune-mediated colitis", "ICI pneumonitis", "ipilimumab hypophysitis").
MENTION_PREFIX = rf"(?:{IMMUNE_QUALIFIER}|{ICI_DRUGS}|{GENERIC_IMMUNOTHERAPY}|ir(?=[ \t]*-))"
_PREFIX_RE = re.compile(rf"^{MENTION_PREFIX}\b", re.IGNORECASE)


_QUALIFIER_PART = (rf"{MENTION_PREFIX}(?:[ \t]*-[ \t]*|[ \t]+)(?:(?!(?:and|or|with|without|for|but|no|not|held|was|is|on|in|to|x)\b)"
                   rf"[a-z]+(?:[ \t]*-[ \t]*|[ \t]+))?")


def _qualified(body: str) -> str:
    """A term optionally preceded, on the same line, by an immune qualifier and one more word."""
    return rf"\b(?:{_QUALIFIER_PART})?(?:{body})\b(?!-like)"


def term_body(body: str) -> str:
    """The term alone, as ``_qualified`` matches it (``QUALIFIER_BEFORE`` finds its qualifier)."""
    return rf"\b(?:{body})\b(?!-like)"


#: The optional qualifier of ``_qualified``, ending where the term starts ("ICI ", "immune-mediated ").
QUALIFIER_BEFORE = re.compile(rf"\b(?:{_QUALIFIER_PART})$", re.IGNORECASE)


#: Strong terms that name a symptom or a lab change rather than a diagnosis ("diarrhea", "rash",
#: "AKI", "elevated LFTs"): in an immunotherapy context with nothing else said about their cause,
#: the engine is not sure they are an irAE, and reports them for review, not as an alert.
SYMPTOM_TERMS = re.compile(
    r"(?:diarrh|rash|prurit|itch|maculo|morbilliform|drug\s+eruption|aki\b|acute\s+kidney|acute\s+renal|renal\s+injury|liver\s+injury"
    r"|elevated|increased|rising|raised|uptrending|abnormal|high|lfts?\b|liver\s+enzymes|transaminases?\b|alt\b|ast\b|lft\b)",
    re.IGNORECASE)


def is_symptom(mention: str) -> bool:
    """The mention names a symptom or a lab change, not a diagnosis."""
    return bool(SYMPTOM_TERMS.match(mention))


def is_qualified(mention: str) -> bool:
    """True when the mention's own wording ties it to immunotherapy."""
    return bool(_PREFIX_RE.match(mention))


#: Category terms. Synonyms and CTCAE v5 terms; the order is irrelevant (longest match wins).
CATEGORY_TERMS: dict[str, dict[str, str]] = {
    "colitis": {
        "strong": r"(?:entero)?colitis|diarrh(?:o)?ea|diarrheal?\s+illness|proctitis|ileitis",
        "weak": r"loose\s+stools?|watery\s+stools?|(?:increased|frequent)\s+(?:stool|bowel\s+movements?|bms)"
                r"|stool\s+frequency|bloody\s+stools?|hematochezia|abdominal\s+cramping",
    },
    "pneumonitis": {
        "strong": r"pneumonitis|ici-?ild|checkpoint\s+inhibitor\s+ild",
        "weak": r"ild|interstitial\s+lung\s+disease|ggos?|ground[- ]glass(?:\s+opacit(?:y|ies))?"
                r"|organizing\s+pneumonia|interstitial\s+(?:infiltrates|changes|opacities)",
    },
    "hepatitis": {
        "strong": r"hepatitis|transaminitis|hepatotoxicity|liver\s+injury|liver\s+toxicity"
                  r"|(?:elevated|increased|rising|raised|uptrending|abnormal|high)\s+(?:lfts?|liver\s+(?:enzymes|function\s+tests|tests)"
                  r"|transaminases|alt\s*/\s*ast|ast\s*/\s*alt|alt\s+and\s+ast|ast\s+and\s+alt|alt|ast)"
                  r"|(?:lfts?|liver\s+enzymes|transaminases|alt\s*/\s*ast|ast\s*/\s*alt|alt\s+and\s+ast|ast\s+and\s+alt)"
                  r"\s+(?:(?:are|were|is|was|remain|remained|have\s+been|now|again|still)\s+){0,2}"
                  r"(?:elevated|increased|rising|uptrending|up|abnormal|high|trending\s+up)"
                  r"|(?:alt|ast)\s+(?:increased|elevation)|lft\s+elevation|transaminase\s+elevation",
        "weak": r"hyperbilirubinemia|jaundice",
    },
    "dermatitis": {
        "strong": r"rash|dermatitis|pruritus|pruritic|itching|itchy|maculopapular|maculo-papular"
                  r"|bullous\s+pemphigoid|bullae|bullous\s+(?:eruption|dermatitis)|stevens[- ]johnson(?:\s+syndrome)?"
                  r"|sjs|toxic\s+epidermal\s+necrolysis|(?-i:TEN)|skin\s+toxicity|cutaneous\s+toxicity|lichenoid\s+(?:eruption|dermatitis)"
                  r"|eczematous\s+(?:eruption|dermatitis)|morbilliform\s+eruption|drug\s+eruption",
        "weak": r"erythema|skin\s+changes",
    },
    "thyroiditis": {
        "strong": r"thyroiditis|hypothyroid(?:ism)?|hyperthyroid(?:ism)?|thyrotoxicosis|thyrotoxic(?:\s+phase)?"
                  r"|thyroid\s+dysfunction|thyroid\s+toxicity",
        "weak": r"(?:elevated|high|increased|rising|low|suppressed)\s+tsh|tsh\s+(?:is\s+|was\s+)?(?:elevated|high|increased|low|suppressed)",
    },
    "hypophysitis": {
        "strong": r"hypophysitis|hypopituitarism|panhypopituitarism|pituitary\s+insufficiency|pituitary\s+inflammation",
        "weak": r"central\s+hypothyroidism|acth\s+deficiency|low\s+acth|(?:secondary|central)\s+adrenal\s+insufficiency",
    },
    "adrenal_insufficiency": {
        "strong": r"(?:primary\s+)?adrenal\s+(?:insufficiency|crisis|failure)|adrenalitis|hypoadrenalism|addison'?s(?:\s+disease)?",
        "weak": r"low\s+(?:am\s+|morning\s+)?cortisol|cortisol\s+(?:is\s+|was\s+)?low",
    },
    "myocarditis": {
        "strong": r"myocarditis|myo-?pericarditis|myositis\s*/\s*myocarditis|myocardial\s+inflammation",
        "weak": r"(?:elevated|rising|increased|high|uptrending)\s+(?:hs-?)?troponin|troponin\s+(?:elevation|leak|rise|is\s+elevated|was\s+elevated|elevated|up)",
    },
    "nephritis": {
        "strong": r"(?:acute\s+)?(?:tubulo-?)?interstitial\s+nephritis|nephritis|(?-i:AIN)|acute\s+kidney\s+injury|aki"
                  r"|acute\s+renal\s+(?:failure|injury)|renal\s+injury|nephrotoxicity|renal\s+toxicity",
        "weak": r"(?:elevated|rising|increased|uptrending)\s+(?:serum\s+)?creatinine|creatinine\s+(?:rise|elevation|is\s+elevated|elevated|up)",
    },
    "diabetes": {
        "strong": r"type\s*(?:1|i|one)\s+diabetes(?:\s+mellitus)?|t1dm|t1d|dm\s*(?:type\s*)?1|dka|diabetic\s+ketoacidosis"
                  r"|new[- ]onset\s+(?:insulin[- ]dependent\s+)?diabetes(?:\s+mellitus)?|newly\s+diagnosed\s+diabetes"
                  r"|insulin[- ]dependent\s+diabetes|fulminant\s+diabetes|autoimmune\s+diabetes|new\s+diagnosis\s+of\s+diabetes",
        "weak": r"diabetes(?:\s+mellitus)?|hyperglycemia|hyperglycaemia",
    },
}

#: Attribution phrases, matched as their own ``IMMUNE`` targets so ConText can negate them
#: ("not felt to be immune-related", "rather than immune-mediated").
IMMUNE_TERMS = (
    rf"\b{IMMUNE_QUALIFIER}\b(?:\s+(?:toxicity|adverse\s+events?|ae|process|etiology|cause))?"
    rf"|\b{_CAUSAL}\s+{_FILLER}(?:{ICI_DRUGS}|{GENERIC_IMMUNOTHERAPY})\b"
)


def target_table() -> list[tuple[str, str, str]]:
    """All ``(label, strength, regex)`` target entries, in a fixed order."""
    from services.inference.rules.alternatives import ALTERNATIVE_CAUSES

    rows: list[tuple[str, str, str]] = []
    for category, terms in CATEGORY_TERMS.items():
        for strength in ("strong", "weak"):
            rows.append((category, strength, _qualified(terms[strength])))
    rows.append(("ICI", "named", _words(ICI_DRUGS)))
    rows.append(("ICI", "generic", _words(GENERIC_IMMUNOTHERAPY)))
    rows.append(("NON_ICI", "context", _words(NON_ICI_THERAPY)))
    rows.append(("IMMUNE", "attribution", IMMUNE_TERMS))
    seen: set[str] = set()
    for category, entries in ALTERNATIVE_CAUSES.items():
        for kind in ("acute", "chronic", "local", "drug", "test"):
            # a pattern shared by several categories is matched once; the attribution step reads
            # every category it stands for (``attribution.alternative_kinds``)
            if entries.get(kind) and entries[kind] not in seen:
                seen.add(entries[kind])
                rows.append((f"ALT:{category}", kind, _words(entries[kind])))
    return rows


def category_regex(category: str) -> re.Pattern[str]:
    """Any term of ``category`` (strong or weak), for checking evidence quotes."""
    terms = CATEGORY_TERMS[category]
    return re.compile(_words(f"{terms['strong']}|{terms['weak']}"), re.IGNORECASE)
