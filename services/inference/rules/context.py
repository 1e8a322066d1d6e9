"""medspaCy's ConText with the same results, faster: pairs that cannot interact are not examined.

medspaCy's ``ConTextGraph`` calls ``limit_scope`` on every ordered pair of modifiers and
``modifies`` on every (target, modifier) pair of the note: for a 3 KB note some four thousand
calls through several properties each, most of which return at their first test - the two scopes
(or the scope and the target) do not overlap in medspaCy's own sense (``medspacy.util.tuple_overlaps``).
``QuickGraph`` makes that same first test inline, on the same values and in the same order, and
calls medspaCy's own method only when it passes; everything else (which pairs, their order, what
the methods do) is medspaCy's, so scopes, edges and ``Span._.modifiers`` are the same.

``quicken(context)`` turns the pipeline's ConText component into ``QuickConText`` (its
``__call__`` is medspaCy 1.3.1's with ``QuickGraph``) and its regular-expression matcher into
``QuickRegexMatcher`` (the note text built once, not once per pattern); another medspaCy version
is left as it is.
"""
from __future__ import annotations

import medspacy
from medspacy.common.regex_matcher import RegexMatcher
from medspacy.common.util import get_token_for_char
from medspacy.context import ConText
from medspacy.context.context_graph import ConTextGraph
from medspacy.context.context_modifier import ConTextModifier
from medspacy.util import tuple_overlaps
from spacy.tokens import Doc

#: ``doc.user_data`` key of the note text (``pipeline.TEXT_KEY``; not imported: pipeline imports this module).
TEXT_KEY = "vigil_text"

#: The medspaCy release whose ``ConText.__call__`` / ``ConTextGraph`` this module follows.
MEDSPACY_VERSION = "1.3.1"


class QuickGraph(ConTextGraph):
    def update_scopes(self) -> None:
        modifiers = self.modifiers
        for i in range(len(modifiers) - 1):
            first = modifiers[i]
            for j in range(i + 1, len(modifiers)):
                second = modifiers[j]
                # ConTextModifier.limit_scope returns False, changing nothing, unless
                # tuple_overlaps(self.scope_span, other.scope_span)
                a0, a1 = first._scope_start, first._scope_end
                b0, b1 = second._scope_start, second._scope_end
                if a0 <= b0 < a1 or a0 < b1 <= a1:
                    first.limit_scope(second)
                    a0, a1 = first._scope_start, first._scope_end
                if b0 <= a0 < b1 or b0 < a1 <= b1:
                    second.limit_scope(first)

    def apply_modifiers(self) -> None:
        if self.prune_on_modifier_overlap:
            for i in range(len(self.modifiers) - 1, -1, -1):
                modifier = self.modifiers[i]
                for target in self.targets:
                    if tuple_overlaps((target.start, target.end), modifier.modifier_span):
                        self.modifiers.pop(i)
                        break
        edges = []
        modifiers = self.modifiers
        for target in self.targets:
            t0, t1 = target.start, target.end
            for modifier in modifiers:
                # ConTextModifier.modifies is False unless tuple_overlaps(self.scope_span, target span)
                s0, s1 = modifier._scope_start, modifier._scope_end
                if (s0 <= t0 < s1 or s0 < t1 <= s1) and modifier.modifies(target):
                    modifier.modify(target)
        for modifier in modifiers:
            modifier.reduce_targets()
            for target in modifier._targets:
                edges.append((target, modifier))
        self.edges = edges


class QuickConText(ConText):
    """medspaCy 1.3.1's ``ConText.__call__`` with ``QuickGraph`` in place of ``ConTextGraph``."""

    def __call__(self, doc: Doc, targets: str = None) -> Doc:
        if not targets and self.input_span_type == "ents":
            targets = doc.ents
        elif not targets and self.input_span_type == "group":
            targets = doc.spans[self.span_group_name]
        elif targets:
            targets = getattr(doc._, targets)
        context_graph = QuickGraph(prune_on_modifier_overlap=self.prune_on_target_overlap)
        context_graph.targets = targets
        context_graph.modifiers = []
        matcher = self._ConText__matcher
        for (match_id, start, end) in matcher(doc):
            rule = matcher.rule_map[self.nlp.vocab[match_id].text]
            context_graph.modifiers.append(ConTextModifier(rule, start, end, doc, max_scope=self.max_scope))
        context_graph.update_scopes()
        context_graph.apply_modifiers()
        for target, modifier in context_graph.edges:
            target._.modifiers += (modifier,)
        if self.context_attributes_mapping:
            self.set_context_attributes(context_graph.edges)
        doc._.context_graph = context_graph
        return doc


class QuickRegexMatcher(RegexMatcher):
    """medspaCy 1.3.1's ``RegexMatcher.__call__`` with the note text taken once per note (from
    ``parse``'s ``doc.user_data``, else built once) instead of rebuilt for every pattern."""

    def __call__(self, doc: Doc):
        text = doc.user_data.get(TEXT_KEY)
        if text is None:
            text = doc.text_with_ws
        matches = []
        for (match_id, patterns) in self._patterns.items():
            for pattern in patterns:
                on_match = self._callbacks[match_id]
                for re_match in pattern.finditer(text):
                    span = doc.char_span(re_match.start(), re_match.end())
                    if span is None:
                        start = get_token_for_char(doc, re_match.start(), resolve=self.resolve_start)
                        end = get_token_for_char(doc, re_match.end(), resolve=self.resolve_end)
                        if end is None:
                            end_index = len(doc)
                        else:
                            end_index = end.i
                        span = doc[start.i:end_index]
                    if len(span):
                        match = (match_id, span.start, span.end)
                        matches.append(match)
                    if on_match is not None:
                        on_match(self, doc, len(matches) - 1, matches)
        return matches


def quicken(context: ConText) -> ConText:
    """The same component, answering through ``QuickConText`` and ``QuickRegexMatcher`` (when
    medspaCy is the release they follow)."""
    if medspacy.__version__ == MEDSPACY_VERSION and type(context) is ConText:
        context.__class__ = QuickConText
        regex = context._ConText__matcher._MedspacyMatcher__regex_matcher
        if type(regex) is RegexMatcher:
            regex.__class__ = QuickRegexMatcher
    return context
