"""A parsed note's sentences, found once per note.

spaCy's ``Span.sent`` walks the tokens back to its sentence's start and on to its end on every
access, and ``Span.text`` joins the tokens again: the attribution rules ask for a mention's
sentence a dozen times. ``sentence_of`` gives the same span (the sentence holding the span's
first token, as ``Span.sent`` does), looked up in the note's sentence starts, and
``sentence_text`` its text, a slice of the note; both are kept on the doc. Only for a finished
doc: the pipeline's components set sentence starts as they go.
"""
from __future__ import annotations

from bisect import bisect_right

import numpy
from spacy.tokens import Doc, Span, Token

from services.inference.rules.context import TEXT_KEY

_STARTS = "vigil_sentence_starts"
_SPANS = "vigil_sentence_spans"
_TEXTS = "vigil_sentence_texts"


def _starts(doc: Doc) -> list[int]:
    starts = doc.user_data.get(_STARTS)
    if starts is None:  # as Doc.sents: token 0, then every token whose sent_start is 1
        marks = doc.to_array("SENT_START")
        starts = doc.user_data[_STARTS] = [0] + [int(i) for i in numpy.flatnonzero(marks == 1) if i > 0]
    return starts


def _index(item: Span | Token) -> tuple[Doc, int]:
    doc = item.doc
    first = item.i if isinstance(item, Token) else item.start
    return doc, bisect_right(_starts(doc), first) - 1


def sentence_of(item: Span | Token) -> Span:
    """``item.sent``: the sentence that holds the span's first token (or the token)."""
    doc, k = _index(item)
    spans = doc.user_data.setdefault(_SPANS, {})
    sentence = spans.get(k)
    if sentence is None:
        starts = _starts(doc)
        sentence = spans[k] = doc[starts[k]:starts[k + 1] if k + 1 < len(starts) else len(doc)]
    return sentence


def sentence_text(item: Span | Token) -> str:
    """``item.sent.text``."""
    doc, k = _index(item)
    texts = doc.user_data.setdefault(_TEXTS, {})
    text = texts.get(k)
    if text is None:
        sentence = sentence_of(item)
        note = doc.user_data.get(TEXT_KEY)
        text = texts[k] = note[sentence.start_char:sentence.end_char] if note is not None else sentence.text
    return text
