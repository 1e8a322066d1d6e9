"""Immune checkpoint inhibitors: the names, brands and RxNorm ingredient codes that identify them.

Shared by the services that must recognise a checkpoint-inhibitor order: tools (a patient's
context for the agents) and ingest (the per-patient polling watch list). Drugs without a code
here (dostarlimab, tremelimumab, relatlimab) are recognised by name only.
"""
from __future__ import annotations

import re

#: Immune checkpoint inhibitors: generic name -> names and brands that identify it in text.
ICI_NAMES: dict[str, tuple[str, ...]] = {
    "pembrolizumab": ("pembrolizumab", "keytruda"),
    "nivolumab": ("nivolumab", "opdivo", "opdualag"),
    "ipilimumab": ("ipilimumab", "yervoy"),
    "atezolizumab": ("atezolizumab", "tecentriq"),
    "durvalumab": ("durvalumab", "imfinzi"),
    "avelumab": ("avelumab", "bavencio"),
    "cemiplimab": ("cemiplimab", "libtayo"),
    "dostarlimab": ("dostarlimab", "jemperli"),
    "tremelimumab": ("tremelimumab", "imjudo"),
    "relatlimab": ("relatlimab",),
}
#: RxNorm ingredient codes of the same drugs, for orders coded without readable text.
ICI_RXNORM: dict[str, str] = {
    "1547545": "pembrolizumab", "1597876": "nivolumab", "1094833": "ipilimumab", "1792776": "atezolizumab",
    "1919503": "durvalumab", "1875534": "avelumab", "2058826": "cemiplimab",
}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_NAME_PATTERN = re.compile(r"\b(" + "|".join(n for names in ICI_NAMES.values() for n in names) + r")\b", re.IGNORECASE)
_BY_NAME = {n: generic for generic, names in ICI_NAMES.items() for n in names}


def ici_drug(concept: dict | None) -> str:
    """The generic ICI name a CodeableConcept names, or ''."""
    if not concept:
        return ""
    for coding in concept.get("coding") or ():
        if coding.get("system") == RXNORM and coding.get("code") in ICI_RXNORM:
            return ICI_RXNORM[coding["code"]]
    texts = [concept.get("text") or ""] + [c.get("display") or "" for c in concept.get("coding") or ()]
    for text in texts:
        match = _NAME_PATTERN.search(text)
        if match:
            return _BY_NAME[match.group(1).lower()]
    return ""
