"""Concordance DAT load files (pure): write one row at a time, parse a whole file.

Format (what Relativity, Reveal and Everlaw load without a mapping step): UTF-8 with a
byte-order mark, one row per line ending in CRLF, every field wrapped in the text
qualifier ``þ`` (U+00FE) and fields separated by DC4 (0x14); a newline inside a field is
written as ``®`` (U+00AE). The format has no escape, so a ``þ`` or DC4 inside a value is
replaced (by ``?`` and a space) and a literal ``®`` by ``(R)``: a value can never break the
row, and every ``®`` read back is a newline. Unicode line breaks (U+2028, U+2029, NEL) are
newlines too, so a review platform never meets a break the row does not show.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from archiver.export.errors import ExportInputError

QUOTE = "\u00fe"
SEP = "\x14"
NEWLINE = "\u00ae"
BOM = "\ufeff"
EOL = "\r\n"

COLUMNS: tuple[str, ...] = (
    "BEGBATES",
    "ENDBATES",
    "BEGATTACH",
    "ENDATTACH",
    "DOCTYPE",
    "RECORDID",
    "CUSTODIAN",
    "DATESENT",
    "FROM",
    "TO",
    "CONVERSATION",
    "SHA256",
    "NATIVEPATH",
    "TEXTPATH",
    "TRANSCRIPTPATH",
    "ERASED",  # a tombstone's erasure (date, request id); empty for a record with content
)


_LINE_BREAKS = str.maketrans({"\r": "\n", "\u0085": "\n", "\u2028": "\n", "\u2029": "\n"})


def _clean(value: str) -> str:
    value = value.replace(NEWLINE, "(R)").replace("\r\n", "\n").translate(_LINE_BREAKS)
    value = value.replace("\n", NEWLINE)
    return value.replace(QUOTE, "?").replace(SEP, " ")


def header() -> str:
    """The first line, BOM included."""
    return BOM + row_line(dict(zip(COLUMNS, COLUMNS, strict=True)))


def row_line(row: Mapping[str, str]) -> str:
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ExportInputError(f"unknown DAT columns {sorted(unknown)}")
    return SEP.join(QUOTE + _clean(row.get(c, "")) + QUOTE for c in COLUMNS) + EOL


def parse(text: str) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    """Parse a DAT file's text (BOM required) into its columns and rows; ``®`` comes back
    as a newline. Raises ExportInputError on a malformed row."""
    if not text.startswith(BOM):
        raise ExportInputError("DAT file has no UTF-8 byte-order mark")
    lines = text[1:].split(EOL)
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ExportInputError("DAT file has no header")
    columns = tuple(_fields(lines[0], 0))
    rows = []
    for n, line in enumerate(lines[1:], start=1):
        values = _fields(line, n)
        if len(values) != len(columns):
            raise ExportInputError(f"DAT row {n} has {len(values)} fields, want {len(columns)}")
        rows.append(dict(zip(columns, values, strict=True)))
    return columns, rows


def _fields(line: str, n: int) -> list[str]:
    out = []
    for part in line.split(SEP):
        if len(part) < 2 or part[0] != QUOTE or part[-1] != QUOTE or QUOTE in part[1:-1]:
            raise ExportInputError(f"DAT row {n} has a field without its þ qualifiers")
        out.append(part[1:-1].replace(NEWLINE, "\n"))
    return out


def bates_ranges(rows: Sequence[Mapping[str, str]], prefix: str) -> Iterator[tuple[int, int]]:
    """(first, last) Bates number of each row, prefix stripped. Raises on a foreign prefix."""
    for row in rows:
        nums = []
        for col in ("BEGBATES", "ENDBATES"):
            v = row[col]
            if not v.startswith(prefix) or not v[len(prefix) :].isdigit():
                raise ExportInputError(f"Bates {v!r} lacks prefix {prefix!r}")
            nums.append(int(v[len(prefix) :]))
        yield nums[0], nums[1]
