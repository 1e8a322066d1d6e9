"""HL7 v2 on the wire, shared by the MLLP listener (ingest) and the outbound results channel
(hl7out): the text encoding, value escaping, and reading an acknowledgement.

Framing itself is python-hl7's (``hl7.mllp``: ``<VT> message <FS><CR>`` blocks over asyncio
streams); both sides use it, so there is one framing implementation in the process.

Escaping uses the standard encoding characters ``|^~\\&``. ``escape(value)`` flattens line breaks
to spaces (short texts: an ACK's MSA-3, an error text); ``escape(value, keep_breaks=True)`` keeps
them as the hex escapes ``\\X0D\\`` / ``\\X0A\\``, so a quoted span of a note reads back character
for character (its offsets stay valid) after the receiver unescapes it.
"""
from __future__ import annotations

from dataclasses import dataclass

ENCODING = "utf-8"
#: MSH-3 of every message Vigil sends (its results). A feed that echoes them back is not a source
#: of notes: the hl7 stage leaves such messages unused, so a result never loops into a new finding.
VIGIL_APPLICATION = "VIGIL"
#: Field, component, repetition, escape and sub-component separators this module writes.
ENCODING_CHARACTERS = "^~\\&"
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
_FLAT = (("\r", " "), ("\n", " "))
_BREAKS = (("\r", "\\X0D\\"), ("\n", "\\X0A\\"))

_SPECIAL = frozenset(char for char, _ in _ESCAPES + _BREAKS)

#: Original-mode (AA / AE / AR) and enhanced-mode commit (CA / CE / CR) acknowledgement codes.
ACCEPTED = ("AA", "CA")
ERROR = ("AE", "CE")
REJECTED = ("AR", "CR")


def escape(value: str, *, keep_breaks: bool = False) -> str:
    """A value safe in one HL7 field (escape character first, so nothing is escaped twice)."""
    if _SPECIAL.isdisjoint(value):  # the usual case (an ACK's fields): nothing to escape
        return value
    for char, replacement in _ESCAPES + (_BREAKS if keep_breaks else _FLAT):
        value = value.replace(char, replacement)
    return value


class AckError(ValueError):
    """The block is not an acknowledgement this side can read."""


@dataclass(frozen=True)
class Ack:
    code: str          # MSA-1
    control_id: str    # MSA-2: the MSH-10 of the message acknowledged
    error_code: str    # ERR-3.1 when present (a table 0357 code), else ""

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPTED


def parse_ack(text: str) -> Ack:
    """MSA-1, MSA-2 and ERR-3.1 of an ACK (segments separated by CR, LF or CR LF)."""
    segments = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s.strip()]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise AckError("the answer does not start with an MSH segment")
    sep = segments[0][3]
    component = segments[0][4]
    msa = next((s.split(sep) for s in segments if s.startswith("MSA" + sep)), None)
    if msa is None or len(msa) < 3:
        raise AckError("the answer has no MSA segment with a code and a control id")
    code = msa[1].strip().upper()
    if code not in ACCEPTED + ERROR + REJECTED:
        raise AckError("MSA-1 is not an acknowledgement code")
    err = next((s.split(sep) for s in segments if s.startswith("ERR" + sep)), None)
    error_code = err[3].split(component)[0][:10] if err is not None and len(err) > 3 else ""
    return Ack(code=code, control_id=msa[2].strip(), error_code=error_code)
