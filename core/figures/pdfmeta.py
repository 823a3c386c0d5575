"""The PDF's document information (title, subject, ...) set after kaleido has rendered it.

Chromium prints kaleido's page title ("Kaleido-fier") as every PDF's /Title. `with_info`
appends a PDF incremental update (ISO 32000-1, 7.5.6): a new information dictionary, an
xref section for it and a trailer whose /Prev points at the original one. The original bytes
stay as they are; readers take the last trailer. Strings are written as UTF-16BE hex strings,
so any text (run names included) is carried literally, without escaping rules.
Not a general PDF editor: it needs the classic xref table Chromium (Skia) writes.
"""

from __future__ import annotations

import re

from core.errors import ExportError

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_TRAILER = re.compile(rb"trailer\s*<<(.*?)>>\s*startxref", re.S)


def _hex(text: str) -> bytes:
    return b"<FEFF" + str(text).encode("utf-16-be").hex().upper().encode() + b">"


def _ref(trailer: bytes, key: bytes) -> bytes | None:
    m = re.search(rb"/" + key + rb"\s+(\d+\s+\d+\s+R)", trailer)
    return m.group(1) if m else None


def with_info(pdf: bytes, **info: str) -> bytes:
    """`pdf` with a new document information dictionary: keys as PDF names (Title, Subject,
    Author, Keywords, Creator, Producer), values as text. The previous dictionary's entries
    are replaced, not merged."""
    end = _STARTXREF.search(pdf[-64:])
    trailers = _TRAILER.findall(pdf)
    if end is None or not trailers:
        raise ExportError("the PDF from kaleido has no xref trailer; cannot set its title")
    last = trailers[-1]
    size = re.search(rb"/Size\s+(\d+)", last)
    root = _ref(last, b"Root")
    if size is None or root is None:
        raise ExportError("the PDF from kaleido has no /Size or /Root; cannot set its title")
    num = int(size.group(1))  # a new object number: the old dictionary stays untouched
    body = b"".join(b"/" + k.encode("ascii") + b" " + _hex(v) + b"\n" for k, v in info.items())
    out = bytearray(pdf if pdf.endswith(b"\n") else pdf + b"\n")
    offset = len(out)
    out += b"%d 0 obj\n<<" % num + body + b">>\nendobj\n"
    xref = len(out)
    # the free-list head first, as a full table has it (some readers expect it)
    out += b"xref\n0 1\n0000000000 65535 f \n%d 1\n%010d 00000 n \n" % (num, offset)
    ids = re.search(rb"/ID\s*\[[^\]]*\]", last)  # kept: it names the document, not a version
    out += (b"trailer\n<</Size %d /Root %s /Info %d 0 R /Prev %d%s>>\nstartxref\n%d\n%%%%EOF\n"
            % (num + 1, root, num, int(end.group(1)), b" " + ids.group(0) if ids else b"", xref))
    return bytes(out)
