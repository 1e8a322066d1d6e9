"""ConText modifiers: negation, uncertainty, hypotheticals, history, family, and terminators.

Each entry is ``(phrase, category, direction, max_scope)``; phrases are matched on lower-cased
tokens, ``re:`` entries as regular expressions. ``max_scope`` is in tokens (None: to the end of
the sentence). Categories:

- ``NEGATED_EXISTENCE``: "no", "denies", "negative for", "ruled out", "resolved", "normalized".
- ``POSSIBLE_EXISTENCE``: "rule out", "r/o", "possible", "concern for", "vs", "cannot exclude".
- ``HYPOTHETICAL``: "monitor for", "if ... develops", "discussed risks of", education about side effects.
- ``HISTORICAL``: "history of", "prior", "in 2021", "s/p treatment for".
- ``FAMILY``: "mother has", "family history of".
- ``ONGOING``: "not yet resolved", "persistent", "now": a current assertion that shields a
  mention from the longer "resolved"/"history" modifiers it overlaps or follows.
- ``TERMINATE``: ends every other modifier's scope ("but", "reports", "presents with", ";").
"""
from __future__ import annotations

F, B, BI, T = "FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE"
NEG, POSS, HYPO, HIST, FAM, ONGOING, TERM = (
    "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "HYPOTHETICAL", "HISTORICAL", "FAMILY", "ONGOING", "TERMINATE")

#: Lists such as "denies fever, chills, nausea, diarrhea or rash" run to about a dozen tokens.
LIST_SCOPE = 14

MODIFIER_RULES: list[tuple[str, str, str, int | None]] = [
    # --- negation -----------------------------------------------------------------------
    *[(p, NEG, F, LIST_SCOPE) for p in (
        "no", "not", "denies", "deny", "denying", "without", "negative for", "neg for", "free of",
        "absence of", "no evidence of", "no signs of", "no sign of", "no symptoms of", "no further",
        "no more", "no longer", "no recurrence of", "no recurrent", "no new", "no active", "never had", "never developed",
        "not consistent with", "inconsistent with", "rules out", "resolution of",
        "resolving of", "clear of", "fails to reveal", "lack of", "did not have", "does not have",
        "has not had", "hasn't had", "have not had", "haven't had", "had not had", "hadn't had", "nor", "rather than", "instead of", "not likely",
        "doubt", "not felt to be", "not thought to be", "not c/w", "w/o",
        "r/o'd", "improved to normal", "no clinical", "no objective", "no current",
        "w/u negative", "workup negative", "work-up negative", "work up negative", "workup was negative",
        "not felt to represent", "not thought to represent", "does not represent", "not explained by",
    )],
    ("re:\\b(?:is|was|were|are|came\\s+back|returned)\\s+negative\\b(?!\\s+for)", NEG, B, 8),
    *[(p, NEG, BI, 10) for p in ("ruled out", "excluded", "normalized", "absent", "none", "(-)", "unlikely",
                                 "less likely", "denied")],
    ("resolved", NEG, BI, 14),
    *[(p, NEG, B, 14) for p in ("has resolved", "have resolved", "now resolved", "completely resolved",
                                "fully resolved", "since resolved", "subsequently resolved", "resolved completely",
                                "has since resolved", "that resolved", "which resolved", "which has resolved")],
    *[(p, NEG, B, 8) for p in ("felt less likely", "considered less likely", "thought less likely",
                               "not favored", "thought unlikely", "felt unlikely", "considered unlikely", "felt to be unlikely")],
    *[(p, NEG, B, 6) for p in (
        "was ruled out", "has been ruled out", "negative", "neg", "is unlikely", "not present",
        "have normalized", "has normalized", "now normal", "within normal limits", "wnl", "no longer present", "has cleared", "not explaining", "does not explain", "not explain", "cleared", "healed", "back to baseline",
        "returned to baseline", "recovered", "not seen", "not supported",
    )],
    # a lab read as absent right after the term ("HBV DNA undetectable"), not a value further on
    # ("diabetes - permanent insulin deficiency (undetectable C-peptide)")
    *[(p, NEG, B, 3) for p in ("undetectable", "not detected")],
    # a rejection after a considered diagnosis ("ICI hepatitis was considered but is not supported")
    *[(p, NEG, B, 14) for p in ("not an irae", "not irae", "not an ir-ae", "not an ici toxicity", "not ici toxicity")],
    # --- uncertainty ----------------------------------------------------------------------
    *[(p, POSS, F, 10) for p in (
        "rule out", "r/o", "possibly", "question of", "questionable", "suspect",
        "suspicion for", "suspicion of", "suspicious for", "concern for", "concerned about",
        "concerning for", "worrisome for", "worried about", "may have", "might have", "may be", "might be",
        "could be", "could represent", "may represent", "cannot exclude", "can't exclude", "cannot rule out",
        "can't rule out", "evaluate for", "evaluation for", "eval for", "to evaluate for",
        "work up for", "workup for", "work-up for", "assess for", "screen for", "screening for", "checked for",
        "check for", "to exclude", "reassess for", "re-assess for", "re-evaluate for", "reevaluate for",
        "re-evaluation for", "reevaluation for", "concerned for", "raised concern for", "to look for", "look for", "considered",
        "initially considered", "differential includes", "differential diagnosis", "ddx",         "vs.", "equivocal", "indeterminate", "uncertain", "unclear if", "unclear whether", "presumed vs",
    )],
    *[(p, POSS, BI, 8) for p in ("possible", "vs", "versus", "?", "suspected", "not excluded", "differential",
                                 "differential consideration", "on the differential", "in the differential")],
    *[(p, POSS, B, 6) for p in (
        "not ruled out", "cannot be excluded", "can not be excluded", "is possible",         "is suspected", "less certain", "to be ruled out", "not yet ruled out",
    )],
    # --- hypothetical / education / future -----------------------------------------------------
    *[(p, HYPO, F, 16) for p in (
        "monitor for", "monitoring for", "watch for", "watching for", "observe for", "surveil for", "if",
        "in case of", "in the event of", "risk of", "risks of", "at risk for", "risk for",
        "side effects", "side effect", "adverse effects", "potential", "potential for", "can cause", "may cause",
        "could cause", "might cause", "educated", "education", "counseled", "counselled",
        "instructed", "call if", "call for", "report any", "to report", "return for",
        "return precautions", "prevent",
        "prevention of", "prophylaxis against", "to avoid", "unless",
            )],
    *[(p, HYPO, F, 16) for p in ("should he", "should she", "should the patient", "should there be",
                                  "should symptoms", "should she develop", "should he develop")],
    ("re:\\b(?:discussed|reviewed|went over|talked about)\\s+(?:the\\s+|possible\\s+|potential\\s+)*(?:risks?|side\\s+effects?|toxicit(?:y|ies)|warning\\s+signs|signs\\s+and\\s+symptoms|irAEs?|immune[- ]related\\s+adverse\\s+events)\\b", HYPO, F, 20),
    *[(p, HYPO, B, 4) for p in ("precautions", "prophylaxis", "ppx", "were to occur", "risk", "risks")],
    # a future resolution ("resumption OK after G2 hepatitis resolves to <=G1", "hold until colitis improves")
    *[(p, HYPO, B, 5) for p in ("resolves", "resolves to", "improves to", "recovers to")],
    *[(p, HYPO, F, 6) for p in ("until", "once", "if and when")],
    *[(p, HYPO, F, 10) for p in ("monitor", "monitoring", "surveillance", "to monitor", "continue to monitor")],
    # --- history ---------------------------------------------------------------------------
    *[(p, HIST, F, 12) for p in (
        "history of", "hx of", "h/o", "past history of", "prior history of", "previous history of", "prior",
        "previous", "past", "remote", "remote history of", "s/p treatment for", "status post treatment for",
        "treated for", "was treated for", "had an episode of", "episode of", "known history of",
        "pmh of", "pmh significant for", "completed", "finished",
        "after treatment for", "following treatment for", "recovered from", "s/p", "status post",
    )],
    ("re:\\b(?:in|during)\\s+(?:(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\\.?\\s+)?(?:19|20)\\d\\d\\b", HIST, BI, 5),
    *[(p, HIST, B, 5) for p in ("in the past", "years ago", "months ago", "last year", "previously", "historically",
                                "at that time", "in remission")],
    # --- family --------------------------------------------------------------------------------
    *[(p, FAM, BI, 8) for p in (
        "family history", "family hx", "fh", "fhx", "mother", "father", "sister", "brother", "aunt", "uncle",
        "grandmother", "grandfather", "cousin", "son", "daughter", "sibling", "siblings", "parent", "parents",
        "maternal", "paternal", "mom", "dad", "niece", "nephew", "twin",     )],
    # --- current, shields from resolved/history ---------------------------------------------------
    *[(p, ONGOING, BI, 10) for p in (
        "not yet resolved", "not resolved", "unresolved", "has not resolved", "hasn't resolved", "never resolved",
        "not fully resolved", "incompletely resolved", "slowly resolving", "resolving", "persistent", "persists",
        "ongoing", "continues", "continued", "continuing", "still", "remains", "current", "currently",
        "active", "recurrent", "recurrence", "recurred", "flare", "new", "newly", "now", "today", "worsening",
        "worse", "worsened", "improving", "improved", "without improvement", "no improvement", "not improved",
        "no response", "not responding", "no relief", "without relief", "no change", "unchanged", "despite",
        "not normalized", "not improving", "refractory", "steroid-refractory", "not negative",
    )],
    # --- terminators ------------------------------------------------------------------------------
    *[(p, TERM, T, None) for p in (
        "but", "however", "although", "though", "except", "apart from", "aside from", "other than", "yet",
        "reports", "reported", "reporting", "endorses", "endorsed", "endorsing", "complains", "complaining",
        "c/o", "presents", "presented", "presenting", "presents with", "admitted", "admitted with", "here for",
        "here with", "seen for", "now with", "who", "whom", "with new", "developed", "has developed",
        "now has", "notes", "noted", "states", "found to have", "positive for", "+", "significant for", "started",
        "starting", "received", "receiving", "on", "currently on", "because", "since", "while", ";",
        "attributed", "thought", "felt", "likely", "consistent", "secondary", "due", "given", "then",
    )],
]

#: Uncertainty phrases that list competing explanations (a differential diagnosis).
DIFFERENTIAL_PHRASES = ("vs", "vs.", "versus", "differential includes", "differential diagnosis", "ddx", "presumed vs")

#: Each assertion category is cut short by any other (e.g. "denies nausea, now with diarrhea").
ASSERTION_CATEGORIES = (NEG, POSS, HYPO, HIST, FAM, ONGOING)
TERMINATING_TYPES: dict[str, list[str]] = {
    cat: [other for other in ASSERTION_CATEGORIES if other != cat] for cat in ASSERTION_CATEGORIES
}
