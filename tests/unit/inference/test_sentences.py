"""``rules/sentences``: a span's sentence and its text, looked up once per note, are spaCy's own
``Span.sent`` and ``Span.sent.text``, for every target span and every token of realistic notes,
spans that cross a sentence boundary included."""
from __future__ import annotations

import json
from pathlib import Path

from services.inference.rules.pipeline import parse
from services.inference.rules.sentences import sentence_of, sentence_text

REALISTIC = Path(__file__).resolve().parents[2] / "data" / "realistic" / "tune.jsonl"


def _docs(n: int):
    rows = [json.loads(line) for line in REALISTIC.read_text().splitlines() if line.strip()]
    texts = [row["text"] for row in rows[:n]] + ["No sentence end here", "One. Two.\n\nThree?  Four"]
    for text in texts:
        doc = parse(text)
        doc.user_data["vigil_text"] = text
        yield doc


def test_the_sentence_and_its_text_are_spacys_own():
    spans = crossing = 0
    for doc in _docs(30):
        sentences = list(doc.sents)
        # every target span, every token, and spans from every token to a few tokens on
        # (some of them cross a sentence boundary: Span.sent is the first token's sentence)
        items = list(doc.ents) + list(doc) + [doc[i:min(len(doc), i + 7)] for i in range(0, len(doc), 5)]
        for item in items:
            expected = item.sent
            got = sentence_of(item)
            assert (got.start, got.end) == (expected.start, expected.end)
            assert sentence_text(item) == expected.text
            spans += 1
            if item.__class__.__name__ == "Span" and item.end > expected.end:
                crossing += 1
        assert len({(s.start, s.end) for s in map(sentence_of, doc)}) == len(sentences)
    assert spans > 5000 and crossing > 50
