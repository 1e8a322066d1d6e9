"""``rules/tokencache``: priming spaCy's tokenizer cache changes no token and serves a primed note's
chunks from the cache."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.inference.rules.pipeline import build_pipeline
from services.inference.rules.tokencache import TokenCache

REALISTIC = Path(__file__).resolve().parents[2] / "data" / "realistic" / "tune.jsonl"


@pytest.fixture(scope="module")
def tokenizer():
    return build_pipeline().tokenizer


def _notes(n: int) -> list[str]:
    rows = [json.loads(line) for line in REALISTIC.read_text().splitlines() if line.strip()]
    return [row["text"] for row in rows[:n]]


def _tokens(doc) -> list[tuple]:
    return [(t.text, t.whitespace_, t.norm_, t.idx) for t in doc]


def test_primed_tokens_are_the_tokenizers_own(tokenizer):
    notes = _notes(40) + ["Seen by Dr. Smith (Dr.'s note), e.g. vs. 'Cause n't; x\u00a0y  \n\n  z.", " lead", "end "]
    cold = [_tokens(tokenizer(text)) for text in notes]
    cache = TokenCache(tokenizer)
    for text, expected in zip(notes, cold):
        cache.prime(text)
        assert _tokens(tokenizer(text)) == expected


def test_a_primed_note_is_served_from_the_cache_and_the_cache_is_bounded(tokenizer):
    calls = []
    search = tokenizer.suffix_search

    def counting(text):
        calls.append(text)
        return search(text)

    tokenizer.suffix_search = counting  # the setter empties spaCy's cache: every chunk starts cold
    try:
        note = _notes(1)[0]
        tokenizer(note)
        tokenizer(note)
        before = len(calls)
        tokenizer(note)
        unprimed = len(calls) - before  # a special case early in the note: nothing was saved
        cache = TokenCache(tokenizer)
        cache.prime(note)
        before = len(calls)
        tokenizer(note)
        primed = len(calls) - before
        assert unprimed > 100 and primed < unprimed / 5, (unprimed, primed)

        small = TokenCache(tokenizer, limit=len(cache._seen) + 5)
        small.prime(note)
        small.prime(" ".join(f"w{i}" for i in range(10)))  # past the limit: emptied, then primed again
        assert len(small._seen) <= len(tokenizer.rules) + 10
    finally:
        tokenizer.suffix_search = search
