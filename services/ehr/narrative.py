"""FHIR narrative rules for ``text.div`` (R4 Narrative, invariants txt-1 and txt-2).

The div is well-formed XML: one ``div`` element in the XHTML namespace, holding only the basic HTML
formatting elements (HTML 4.0 chapters 7-11 except 9.4, and 15), ``a`` and ``img``, with their plain
attributes: no head or body, no scripts, forms, frames, iframes, objects, embeds, base, link, meta or
style elements, no event attributes (``on*``), no ``javascript:`` URLs. It has some non-whitespace
content. Parsing refuses DTDs and entity declarations (defusedxml), so a div cannot expand or fetch
anything.
"""
from __future__ import annotations

import re
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from services.ehr.outcome import issue

XHTML = "http://www.w3.org/1999/xhtml"
XML = "http://www.w3.org/XML/1998/namespace"
_NS = "{" + XHTML + "}"

#: The elements txt-1 allows (the list the FHIR reference validator checks).
ELEMENTS = frozenset(
    "p br div h1 h2 h3 h4 h5 h6 a span b em i strong small big tt dfn q var abbr acronym cite blockquote hr "
    "address bdo kbd sub sup ul ol li dl dt dd pre table caption colgroup col thead tr tfoot tbody th td code "
    "samp img map area".split())
#: Attributes any of them may carry (HTML 4 core and i18n attributes; ``style`` is inline CSS).
COMMON_ATTRIBUTES = frozenset("id class style title lang dir accesskey tabindex".split())
ELEMENT_ATTRIBUTES: dict[str, frozenset[str]] = {name: frozenset(attrs.split()) for name, attrs in {
    "a": "href name hreflang rel rev type charset shape coords",
    "img": "src alt longdesc height width usemap ismap border align hspace vspace",
    "table": "summary width border frame rules cellspacing cellpadding align bgcolor",
    "td": "abbr axis headers scope rowspan colspan align char charoff valign nowrap width height bgcolor",
    "th": "abbr axis headers scope rowspan colspan align char charoff valign nowrap width height bgcolor",
    "tr": "align char charoff valign bgcolor", "thead": "align char charoff valign",
    "tbody": "align char charoff valign", "tfoot": "align char charoff valign",
    "col": "span width align char charoff valign", "colgroup": "span width align char charoff valign",
    "caption": "align", "ol": "start type compact", "ul": "type compact", "li": "type value", "dl": "compact",
    "blockquote": "cite", "q": "cite", "pre": "width", "hr": "align noshade size width", "br": "clear",
    "p": "align", "div": "align", "h1": "align", "h2": "align", "h3": "align", "h4": "align", "h5": "align",
    "h6": "align", "map": "name", "area": "shape coords href nohref alt",
}.items()}
URL_ATTRIBUTES = frozenset("href src cite longdesc usemap".split())
#: Schemes that run code when followed (compared after removing whitespace and control characters).
_ACTIVE_SCHEME = re.compile(r"^(javascript|vbscript|data:text/html|data:image/svg)", re.I)
_ACTIVE_STYLE = re.compile(r"expression\s*\(|javascript:|vbscript:|@import|behavior\s*:|-moz-binding", re.I)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")
MAX_PROBLEMS = 10


def problems(div: object, where: str) -> list[dict]:
    """The narrative rule violations of one ``Narrative.div`` value, as OperationOutcome issues."""
    if not isinstance(div, str):
        return [_issue(where, "must be a string of XHTML")]
    try:
        root = fromstring(div, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as exc:
        return [issue("structure", f"{where}: is not well-formed XHTML ({type(exc).__name__}: {str(exc)[:120]})",
                      expression=where)]
    if root.tag != _NS + "div":
        return [_issue(where, f"must be a div element in the XHTML namespace ({XHTML}), not {_name(root.tag)}")]
    found: list[dict] = []
    for element in root.iter():
        found.extend(_element_problems(element, where))
        if len(found) >= MAX_PROBLEMS:
            break
    if not "".join(root.itertext()).strip() and not any(e.tag == _NS + "img" for e in root.iter()):
        found.append(_issue(where, "must have some non-whitespace content (txt-2)"))
    return found[:MAX_PROBLEMS]


def _element_problems(element: Element, where: str) -> list[dict]:
    if not isinstance(element.tag, str) or not element.tag.startswith(_NS):
        return [_issue(where, f"element {_name(element.tag)} is not XHTML")]
    name = element.tag[len(_NS):]
    if name not in ELEMENTS:
        return [_issue(where, f"element <{name}> is not allowed in a narrative (txt-1)")]
    out = []
    allowed = COMMON_ATTRIBUTES | ELEMENT_ATTRIBUTES.get(name, frozenset())
    for attr, value in element.attrib.items():
        if attr == "{" + XML + "}lang" or attr == "{" + XML + "}space":
            continue
        if attr.lower().startswith("on"):
            out.append(_issue(where, f"event attribute {attr[:40]} on <{name}> is not allowed (txt-1)"))
        elif attr not in allowed:
            out.append(_issue(where, f"attribute {_name(attr)} on <{name}> is not allowed (txt-1)"))
        elif attr in URL_ATTRIBUTES and _ACTIVE_SCHEME.match(_INVISIBLE.sub("", value)):
            out.append(_issue(where, f"{attr} on <{name}> must not be a script URL"))
        elif attr == "style" and _ACTIVE_STYLE.search(value):
            out.append(_issue(where, f"style on <{name}> must not run code or import stylesheets"))
    return out


def _issue(where: str, text: str) -> dict:
    return issue("invariant", f"{where}: {text}", expression=where)


def _name(tag: object) -> str:
    text = str(tag)
    if text.startswith("{"):
        uri, _, local = text[1:].partition("}")
        return f"{local[:40]} ({uri[:60]})"
    return text[:40]


def walk(node: object, path: str) -> list[dict]:
    """Check every narrative in a resource, its contained resources and any resource nested in it."""
    found: list[dict] = []
    stack = [(node, path)]
    while stack and len(found) < MAX_PROBLEMS:
        item, where = stack.pop()
        if isinstance(item, dict):
            text = item.get("text")
            if isinstance(text, dict) and "div" in text:
                found.extend(problems(text["div"], f"{where}.text.div"))
            stack.extend((v, f"{where}.{k}") for k, v in item.items()
                         if isinstance(v, (dict, list)) and not (k == "text" and v is text))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return found[:MAX_PROBLEMS]
