"""Text from files and folder names made safe for where it is shown: a terminal, a spreadsheet, Markdown.

Names come from the user's disk, so they may hold terminal escape codes, bytes that are not UTF-8
(surrogate escapes in Python), formulas (``=HYPERLINK(...)``) or table syntax (``|``).
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # keeps \t and \n
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets may run as a formula (OWASP's list)
_MARKDOWN = re.compile(r"([\\|*`<>\[\]#~])|((?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def _escape_char(m: re.Match) -> str:
    c = m.group(0)
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as Python's surrogateescape holds it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: object) -> str:
    """``text`` with control characters (escape codes, carriage returns, ...) and undecodable bytes shown
    as ``\\xNN``, so a file name can neither drive the terminal nor crash a UTF-8 stream; newlines and tabs stay."""
    return _CONTROL.sub(_escape_char, str(text))


def one_line(text: object) -> str:
    """:func:`terminal_safe`, with newlines and tabs escaped too (for cells and one-line messages)."""
    return terminal_safe(text).replace("\t", "\\t").replace("\n", "\\n")


def spreadsheet_safe(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula, prefixed with ``'`` (shown as text);
    anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def markdown_escape(text: object) -> str:
    """A table cell as literal Markdown text: ``\\ | * ` < > [ ] # ~`` and word-boundary ``_`` backslash-escaped
    (``ldm_200`` stays as it is: GitHub Markdown never reads an underscore inside a word as emphasis)."""
    return _MARKDOWN.sub(lambda m: "\\" + m.group(0), one_line(text))
