"""``finditer`` for the rule tables' case-insensitive patterns, with the same matches, faster.

Python's regular-expression engine cannot skip ahead through a text for a case-insensitive
pattern that opens with ``\\b`` and an alternation of words (every rule table's shape): it tries
the whole pattern at every character. ``Scanner`` first derives from the pattern's parse tree the
few strings every match must start with (``immune``, ``pembro``, ``due``, ...: up to
``PREFIX_CHARS`` characters of each way the pattern can begin) and looks for those, case-folded,
with a plain case-sensitive alternation the engine searches quickly; the pattern itself is then
tried (``match``) only where one of them starts. Every position where the pattern can match is
such a start, and candidates are tried in text order, resuming after each match, so the matches
are exactly ``pattern.finditer(text)``'s. A pattern whose beginning cannot be derived (it can
match the empty string, opens with a class such as ``\\s`` or ``.``, or has non-ASCII letters)
is scanned with its own ``finditer``.

Case folding: under ``re.IGNORECASE`` an ASCII letter also matches four non-ASCII characters
(U+0130, U+0131, U+017F, U+212A); ``fold`` maps those to their ASCII letter and upper-case ASCII
to lower case, one character for one, so offsets in the folded text are offsets in the note.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

try:  # Python 3.11+
    from re import _constants as sre_constants, _parser as sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

#: Characters of a match's beginning looked for (more: fewer false starts, more strings).
PREFIX_CHARS = 4
#: More start strings than this and the pattern is scanned as it is.
MAX_PREFIXES = 2000
#: A character class with more members than this ends the derived beginning there.
MAX_CLASS = 12
_FOLD = {**{c: c + 32 for c in range(ord("A"), ord("Z") + 1)},
         0x130: ord("i"), 0x131: ord("i"), 0x17F: ord("s"), 0x212A: ord("k")}


def fold(text: str) -> str:
    """``text`` with every character an ASCII letter matches case-insensitively turned into that
    lower-case letter (same length, same offsets)."""
    return text.lower() if text.isascii() else text.translate(_FOLD)


class _Underivable(Exception):
    pass


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT,
            *((sre_constants.POSSESSIVE_REPEAT,) if hasattr(sre_constants, "POSSESSIVE_REPEAT") else ()))


def _char(code: int) -> str:
    ch = chr(code)
    if not ch.isascii():
        raise _Underivable  # IGNORECASE relates it to characters ``fold`` does not map
    return ch.lower()


def _class_chars(items) -> list[str] | None:
    """The members of a small character class (lower-cased), None for a large or open one."""
    chars: list[str] = []
    for op, av in items:
        if op is sre_constants.LITERAL:
            chars.append(_char(av))
        elif op is sre_constants.RANGE and av[1] - av[0] < MAX_CLASS:
            chars.extend(_char(c) for c in range(av[0], av[1] + 1))
        else:  # NEGATE, CATEGORY (\s, \w, \d), a large range
            return None
    unique = sorted(set(chars))
    return unique if len(unique) <= MAX_CLASS else None


def _starts(items: list, prefix: str, limit: int) -> set[str]:
    """Lower-cased strings (``prefix`` + at most ``limit`` - len(prefix) characters) one of which
    begins every match of the sequence ``items`` (followed by anything)."""
    if len(prefix) >= limit or not items:
        return {prefix}
    op, av = items[0]
    rest = items[1:]
    if op is sre_constants.LITERAL:
        return _starts(rest, prefix + _char(av), limit)
    if op is sre_constants.AT:  # \b, ^, $: zero width
        return _starts(rest, prefix, limit)
    if op is sre_constants.SUBPATTERN:
        return _starts(list(av[-1]) + rest, prefix, limit)
    if op is sre_constants.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            out |= _starts(list(branch) + rest, prefix, limit)
            if len(out) > MAX_PREFIXES:
                raise _Underivable
        return out
    if op is sre_constants.IN:
        chars = _class_chars(av)
        if chars is None:
            return {prefix}
        out = set()
        for ch in chars:
            out |= _starts(rest, prefix + ch, limit)
        return out
    if op in _REPEATS:
        low, high, sub = av
        once = _starts(list(sub) + (rest if low == high == 1 else []), prefix, limit)
        return once | _starts(rest, prefix, limit) if low == 0 else once
    return {prefix}  # lookarounds, any character, references: the beginning ends here


def start_strings(pattern: re.Pattern[str]) -> list[str] | None:
    """The strings (lower-case) every match of ``pattern`` starts with, or None when they cannot
    be derived or one of them is empty."""
    if not isinstance(pattern.pattern, str):
        return None
    try:
        tree = sre_parse.parse(pattern.pattern, pattern.flags)
        if tree.getwidth()[0] == 0:
            return None
        found = _starts(list(tree), "", PREFIX_CHARS)
    except (_Underivable, RecursionError):
        return None
    if not found or "" in found or len(found) > MAX_PREFIXES:
        return None
    # a string that another one starts with makes the longer one redundant
    kept = sorted(found)
    minimal = [s for i, s in enumerate(kept) if not any(s.startswith(t) for t in kept[:i])]
    return minimal


class Scanner:
    """``scanner.finditer(text, folded)``: ``pattern.finditer(text)``'s matches (``folded`` is
    ``fold(text)``, computed once per note and shared by every rule)."""

    def __init__(self, pattern: re.Pattern[str]):
        self.pattern = pattern
        self.starts = start_strings(pattern) or []
        self.gate = re.compile("|".join(re.escape(s) for s in sorted(self.starts, key=lambda s: (-len(s), s)))) \
            if self.starts else None

    def finditer(self, text: str, folded: str) -> Iterator[re.Match[str]]:
        return self.finditer_at(text, self._positions(folded))

    def _positions(self, folded: str) -> Iterator[int]:
        """Each position of ``folded`` where one of the start strings begins, ascending."""
        if self.gate is None:
            return
        search, pos = self.gate.search, 0
        while (candidate := search(folded, pos)) is not None:
            yield candidate.start()
            pos = candidate.start() + 1

    def finditer_at(self, text: str, candidates: Iterable[int]) -> Iterator[re.Match[str]]:
        """The matches, tried only at ``candidates``: the positions, ascending, where one of this
        pattern's start strings begins (its own gate's, or ``ScanSet``'s for many scanners at once).
        Candidates are tried in text order, resuming after each match (never empty: start_strings
        refuses patterns that can match "")."""
        if self.gate is None:
            yield from self.pattern.finditer(text)
            return
        match, pos = self.pattern.match, 0
        for at in candidates:
            if at < pos:
                continue
            found = match(text, at)
            if found is not None:
                yield found
                pos = found.end()


class ScanSet:
    """Many ``Scanner``s' candidate positions from one pass over the note.

    Each scanner searching the note for its own start strings is one pass per rule (56 passes
    over a 3 KB note, ~3.4 ms). Here one regular expression built as a trie of every rule's start
    strings (``imm(?:une)?|pem(?:b)?...``) finds, left to right, each position where any of them
    begins; the strings that begin there (at most one per length) name the scanners it is a
    candidate for. Each scanner then gets exactly the positions its own gate would have found,
    in the same order, so ``finditer_at`` yields exactly its ``finditer``'s matches.
    """

    def __init__(self, scanners: list[Scanner]):
        self.scanners = scanners
        self._by_start: dict[str, list[int]] = {}
        for index, scanner in enumerate(scanners):
            for start in scanner.starts if scanner.gate is not None else ():
                self._by_start.setdefault(start, []).append(index)
        self._lengths = sorted({len(start) for start in self._by_start}, reverse=True)
        self._gate = re.compile(_trie_pattern(list(self._by_start))) if self._by_start else None

    def candidates(self, folded: str) -> list[list[int]]:
        """Per scanner (by index), the ascending positions of ``folded`` where one of its start
        strings begins."""
        found: list[list[int]] = [[] for _ in self.scanners]
        if self._gate is None:
            return found
        search, by_start, lengths = self._gate.search, self._by_start, self._lengths
        pos = 0
        while True:
            hit = search(folded, pos)
            if hit is None:
                return found
            at = hit.start()
            for length in lengths:
                for index in by_start.get(folded[at:at + length], ()):
                    positions = found[index]
                    if not positions or positions[-1] != at:
                        positions.append(at)
            pos = at + 1


def _trie_pattern(words: list[str]) -> str:
    """An alternation of ``words`` (non-empty) factored by common prefixes: it matches at a
    position exactly when one of the words begins there."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        group = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{group})?" if "" in node else group

    return build(trie)
