"""Keep spaCy's tokenizer cache warm across notes.

spaCy's tokenizer caches the tokens of each whitespace-separated chunk it splits by affixes, but
it keeps one "a special case was used" flag per document and saves nothing once the flag is set
(spaCy issue #1250). Nearly every note uses a special case in its first lines (a newline, "Dr."),
so the cache stayed cold and every note paid the full affix search: about 3 ms of a 3 KB note.

``TokenCache.prime(text)`` tokenizes the note's chunks not seen before apart from the note, a few
to a call (the flag is fresh for each call), so spaCy saves them under the keys it looks up
inside a note. The
note is then tokenized by spaCy as before: the result is spaCy's own, a cache hit returns what
its affix rules gave for that chunk, and special cases are applied as before. The cache is
spaCy's; its size is bounded here by flushing it (and the seen set) past ``limit`` chunks.
"""
from __future__ import annotations

import re

_CHUNK = re.compile(r"\S+")
#: New chunks are tokenized this many at a time, joined by single spaces (a single space separates
#: chunks without being one). A special case used by one of them stops the saving for the rest of
#: its group: those chunks stay uncached (tokenized in full each time, as before), never wrong.
GROUP = 8
#: Distinct chunks remembered before the cache is emptied (a chunk is ~100 bytes in spaCy's pool).
LIMIT = 200_000


class TokenCache:
    def __init__(self, tokenizer, limit: int = LIMIT):
        self.tokenizer, self.limit = tokenizer, limit
        self._seen: set[str] = set(tokenizer.rules or ())  # a special case is never cached: not primed

    def prime(self, text: str) -> None:
        new = set(_CHUNK.findall(text))
        new -= self._seen
        if not new:
            return
        if len(self._seen) + len(new) > self.limit:
            self.tokenizer._flush_cache()
            self._seen = set(self.tokenizer.rules or ())
        tokenize, chunks = self.tokenizer, sorted(new)
        for i in range(0, len(chunks), GROUP):
            tokenize(" ".join(chunks[i:i + GROUP]))
        self._seen |= new
