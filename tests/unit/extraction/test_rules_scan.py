"""The fast scanner of the rule tables finds exactly what ``pattern.finditer`` finds."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from services.inference.rules.pipeline import get_pipeline, TARGETS
from services.inference.rules.scan import Scanner, ScanSet, fold, start_strings

DATA = Path(__file__).resolve().parents[2] / "data"


def _texts() -> list[str]:
    texts = [json.loads(line)["text"] for line in (DATA / "realistic" / "tune.jsonl").read_text().splitlines()
             if line.strip()]
    # the four non-ASCII characters an ASCII letter matches case-insensitively, and other non-ASCII text
    texts += ["Immune-mediated Colİtis, ıpilimumab; ſteroids; \u212aeytruda", "Pneumonitiſ • 38.5°C — PEMBRO",
              "DIARRHEA\n\nColitis: no.", "", "c", "C. diff colitis; C diff; CDI", "x" * 50 + "colitis"]
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ -./:;,'()\n\t0123456789İıſ\u212a°"
    for _ in range(40):
        pieces = []
        for _ in range(60):
            pieces.append(rng.choice(["colitis", "immune-related", "pembro", "hepatitis", "due to", "rash", "TSH",
                                      "c diff", "ipi/nivo", "grade 2", "no", "ALT"]) if rng.random() < 0.3
                          else "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))))
        texts.append(" ".join(pieces))
    return texts


def _patterns() -> list[re.Pattern[str]]:
    return [scanner.pattern for _, scanner, _ in get_pipeline().get_pipe(TARGETS).rules]


def test_every_rule_pattern_scans_like_finditer():
    patterns, texts = _patterns(), _texts()
    gated = 0
    for pattern in patterns:
        scanner = Scanner(pattern)
        gated += scanner.gate is not None
        for text in texts:
            expected = [(m.start(), m.end()) for m in pattern.finditer(text)]
            assert [(m.start(), m.end()) for m in scanner.finditer(text, fold(text))] == expected, pattern.pattern[:60]
    assert gated >= len(patterns) - 2  # the tables' patterns have derivable beginnings


def test_fold_keeps_offsets_and_maps_the_case_insensitive_letters():
    text = "AbİıſK\u212a é"
    assert fold(text) == "abiiskk é" and len(fold(text)) == len(text)


@pytest.mark.parametrize("pattern", [r"\s*colitis", r"(?:colitis)?", r".olitis", r"[^a]olitis", "\\bcol\u00e9"])
def test_underivable_beginnings_scan_as_they_are(pattern):
    compiled = re.compile(pattern, re.IGNORECASE)
    assert start_strings(compiled) is None
    text = "Colitis, colitis \u00e9 colÉ colé"
    assert [m.span() for m in Scanner(compiled).finditer(text, fold(text))] == \
        [m.span() for m in compiled.finditer(text)]


def test_start_strings_cover_optional_and_alternative_beginnings():
    assert start_strings(re.compile(r"\b(?:(?:acute\s+)?nephritis|(?-i:AIN))\b", re.IGNORECASE)) == \
        ["acut", "ain", "neph"]


def test_one_pass_for_every_rule_finds_each_rules_own_matches():
    """``ScanSet``: the candidate positions of every rule from one trie search, then each rule's
    matches from them: the same as the rule's own ``finditer``, for all the tables' patterns
    at once (with underivable and overlapping beginnings among them)."""
    patterns = [*_patterns(), re.compile(r"\s*colitis", re.IGNORECASE), re.compile(r"immune|imm", re.IGNORECASE),
                re.compile(r"mune\w*", re.IGNORECASE), re.compile(r"mmu\w*", re.IGNORECASE),
                re.compile(r"(?:i|im)mu", re.IGNORECASE)]
    scanners = [Scanner(p) for p in patterns]
    scans = ScanSet(scanners)
    texts = [*_texts(), "IMMUNE immune-mediated \u0130mmune imMUne \u212aolitis"]
    for text in texts:
        candidates = scans.candidates(fold(text))
        for pattern, scanner, positions in zip(patterns, scanners, candidates):
            assert positions == sorted(set(positions))
            expected = [m.span() for m in pattern.finditer(text)]
            assert [m.span() for m in scanner.finditer_at(text, positions)] == expected, pattern.pattern[:60]
