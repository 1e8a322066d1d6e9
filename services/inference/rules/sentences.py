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
_SENTENCES = "vigil_sentences"


def _starts(doc: Doc) -> list[int]:
    starts = doc.user_data.get(_STARTS)
    if starts is None:  # as Doc.sents: token 0, then every token whose sent_start is 1
        marks = doc.to_array("SENT_START")
        starts = doc.user_data[_STARTS] = [0] + [int(i) for i in numpy.flatnonzero(marks == 1) if i > 0]
    return starts


def _sentence(item: Span | Token) -> tuple[Span, str]:
    doc = item.doc
    starts = _starts(doc)
    k = bisect_right(starts, item.i if isinstance(item, Token) else item.start) - 1
    cache = doc.user_data.setdefault(_SENTENCES, {})
    found = cache.get(k)
    if found is None:
        span = doc[starts[k]:starts[k + 1] if k + 1 < len(starts) else len(doc)]
        note = doc.user_data.get(TEXT_KEY)
        found = cache[k] = (span, note[span.start_char:span.end_char] if note is not None else span.text)
    return found


def sentence_of(item: Span | Token) -> Span:
    """``item.sent``: the sentence that holds the span's first token (or the token)."""
    return _sentence(item)[0]


def sentence_text(item: Span | Token) -> str:
    """``item.sent.text``."""
    return _sentence(item)[1]
