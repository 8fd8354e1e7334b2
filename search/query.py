"""The archive's query syntax (``docs/search.md``) parsed into a small AST. Pure.

Grammar (``AND``/``OR``/``NOT``/``TO`` are operators only in upper case)::

    query   := or EOF
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*          -- juxtaposition is AND
    unary   := ("NOT" | "-") unary | atom
    atom    := "(" or ")" | field | phrase | word
    phrase  := '"' chars '"' ["~" INT]         -- "~N" makes it a proximity query
    word    := chars ["*"]                     -- trailing "*" makes it a prefix query
    field   := NAME ":" (word | phrase)
             | "date" ":" ("[" | "{") DATE "TO" DATE ("]" | "}")
             | "date" ":" DATE
             | "date" (">=" | ">" | "<=" | "<") DATE

Raises ``QuerySyntaxError(message, position, query)``; ``position`` is a 0-based
character offset into the query.

Limits (``LIMITS``; over one → ``QueryTooComplex``, a ``QuerySyntaxError`` whose code
names the limit): at most ``MAX_QUERY_CHARS`` characters, ``MAX_DEPTH`` groups and
negations inside each other, and ``MAX_TERMS`` search terms (words, phrases, fields and
dates). They keep every accepted query inside what both engines take: the parser's own
recursion, SQLite's parser stack and expression depth, and Elasticsearch's
``indices.query.bool.max_nested_depth`` (20): a group adds at most two bool levels
(``a OR b (…)`` is an OR over an AND), so 2 x 8 + 2 + 1 (the request's wrapper) = 19.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from search.errors import QuerySyntaxError, QueryTooComplex

MAX_QUERY_CHARS = 4000
MAX_DEPTH = 8
MAX_TERMS = 100
LIMITS = {"length": MAX_QUERY_CHARS, "depth": MAX_DEPTH, "terms": MAX_TERMS}

# Query field -> index document fields (OR across the tuple).
FIELDS: dict[str, tuple[str, ...]] = {
    "from": ("from",),
    "to": ("to",),
    "type": ("type",),
    "origin": ("origin",),
    "direction": ("direction",),
    # One number identity: ``number`` is the business's ``phone_number_id`` (stable);
    # the display number is an attribute that can change, searchable as ``display_number``.
    "number": ("phone_number_id",),
    "display_number": ("business_number",),
    "status": ("status",),
    "conversation": ("conversation",),
    "contact": ("contact", "contact_user_id", "contact_username"),
    "policy": ("policy",),
    "hold": ("holds",),
    # Every event kind is a document (archiver.indexing.documents): its record kind, the
    # event's own name, Meta's error codes and a status's pricing category.
    "kind": ("kind",),
    "event": ("event",),
    "error": ("error_codes",),
    "pricing": ("pricing_category",),
}
# Query fields that also match a person's names, as a case-insensitive phrase (OR with
# the exact fields above): ``contact:"Pablo Morales"``.
NAME_FIELDS: dict[str, tuple[str, ...]] = {
    "contact": ("contact_name", "contact_profile_name"),
}
DATE_FIELD = "date"
ALLOWED_FIELDS = (*sorted(FIELDS), DATE_FIELD)
# Closed vocabularies are matched case-insensitively (stored lower case).
LOWERCASE_FIELDS = frozenset({"type", "origin", "direction", "status", "kind", "event", "pricing"})
PHONE_FIELDS = frozenset({"from", "to", "number", "display_number", "contact"})
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ().-]*$")
_NOT_DIGIT = re.compile(r"[^0-9]")


def normalize_phone(value: str) -> str:
    """``+1 (555) 000-1234`` -> ``15550001234``; other values are returned unchanged.

    WhatsApp ``wa_id``s carry no ``+``; people type numbers in many shapes.
    """
    if value.isdigit() and value.isascii():
        return value  # already a bare wa_id: the common case, skip the regexes
    if _PHONE_RE.match(value):
        return _NOT_DIGIT.sub("", value)
    return value


def normalize_username(value: str) -> str:
    """``@pablomorales`` -> ``pablomorales``: a WhatsApp username with or without its "@"."""
    return value[1:] if value.startswith("@") else value


def normalize_field_value(field: str, value: str) -> str:
    if field in LOWERCASE_FIELDS:
        return value.lower()
    if field == "contact":
        value = normalize_username(value)
    if field in PHONE_FIELDS:
        return normalize_phone(value)
    return value


# ---- AST -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchAll:
    pass


@dataclass(frozen=True, slots=True)
class Term:
    text: str


@dataclass(frozen=True, slots=True)
class Prefix:
    text: str  # lower-cased, one word


@dataclass(frozen=True, slots=True)
class Phrase:
    text: str
    slop: int | None = None  # None: exact phrase; N: words within N positions


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # a key of FIELDS
    value: str  # normalized


@dataclass(frozen=True, slots=True)
class DateRange:
    """Bounds are aware UTC datetimes; ``gte`` inclusive, ``lt`` exclusive."""

    gte: datetime | None = None
    lt: datetime | None = None


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = MatchAll | Term | Prefix | Phrase | Field | DateRange | Not | And | Or


def text_leaves(node: Node, *, positive: bool = True) -> list[Term | Prefix | Phrase]:
    """The full-text leaves not under a ``NOT`` (for highlighting and scoring)."""
    if isinstance(node, Term | Prefix | Phrase):
        return [node] if positive else []
    if isinstance(node, Not):
        return []
    if isinstance(node, And | Or):
        return [leaf for c in node.children for leaf in text_leaves(c)]
    return []


# ---- dates -----------------------------------------------------------------------------


# Bounds a day away from datetime's own limits, so that moving a bound by a day (a whole
# day's end, ``>`` on a day) or to UTC never overflows: an OverflowError would be a 500.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def parse_date_bound(text: str) -> tuple[datetime, bool]:
    """Return (instant, is_whole_day). Naive times are UTC. Raises ``ValueError``, also for
    an instant outside 0001-01-02 .. 9999-12-30 UTC."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        d = date.fromisoformat(text)
        instant, whole_day = datetime(d.year, d.month, d.day, tzinfo=UTC), True
    else:
        if not re.match(r"\d{4}-\d{2}-\d{2}T", text):
            raise ValueError(text)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        try:
            instant, whole_day = dt.astimezone(UTC), False
        except OverflowError:
            raise ValueError(text) from None
    if not _EARLIEST <= instant <= _LATEST:
        raise ValueError(text)
    return instant, whole_day


def _range(op: str, instant: datetime, whole_day: bool) -> DateRange:
    """A day bound covers the whole day: ``<=2024-01-31`` includes all of Jan 31."""
    day = timedelta(days=1)
    if op == ">=":
        return DateRange(gte=instant)
    if op == ">":
        return DateRange(gte=instant + day if whole_day else instant + timedelta(microseconds=1))
    if op == "<":
        return DateRange(lt=instant)
    if op == "<=":
        return DateRange(lt=instant + day if whole_day else instant + timedelta(microseconds=1))
    # "=": the day itself, or that exact instant
    return DateRange(gte=instant, lt=instant + (day if whole_day else timedelta(microseconds=1)))


# ---- lexer -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # WORD PHRASE LP RP NOT-DASH OP FIELD DATECMP RANGE EOF
    value: str
    pos: int
    extra: str = ""  # FIELD: the field name; PHRASE: slop digits; DATECMP: operator


_WORD_END = set(' \t\r\n()"')
_FIELD_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(:|>=|<=|>|<)")
_RANGE_RE = re.compile(r"([\[{])\s*(\S+)\s+TO\s+(\S+?)\s*([\]}])")


class _Lexer:
    def __init__(self, query: str) -> None:
        self.q = query
        self.i = 0

    def error(self, message: str, pos: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, position=pos, query=self.q)

    def tokens(self) -> list[_Tok]:
        out: list[_Tok] = []
        while True:
            tok = self._next()
            out.append(tok)
            if tok.kind == "EOF":
                return out

    def _next(self) -> _Tok:
        q = self.q
        while self.i < len(q) and q[self.i].isspace():
            self.i += 1
        start = self.i
        if self.i >= len(q):
            return _Tok("EOF", "", start)
        c = q[self.i]
        if c in "()":
            self.i += 1
            return _Tok("LP" if c == "(" else "RP", c, start)
        if c == '"':
            return self._phrase(start)
        if c == "-" and self.i + 1 < len(q) and not q[self.i + 1].isspace():
            self.i += 1
            return _Tok("NOT", "-", start)
        m = _FIELD_RE.match(q, self.i)
        # ``a<b`` in free text is a word; only ``date`` takes comparison operators.
        if m and (m.group(2) == ":" or m.group(1) == DATE_FIELD):
            return self._field(m, start)
        word = self._word()
        if word in ("AND", "OR", "NOT"):
            return _Tok("NOT" if word == "NOT" else "OP", word, start)
        return _Tok("WORD", word, start)

    def _word(self) -> str:
        start = self.i
        while self.i < len(self.q) and self.q[self.i] not in _WORD_END:
            self.i += 1
        return self.q[start : self.i]

    def _phrase(self, start: int) -> _Tok:
        end = self.q.find('"', start + 1)
        if end < 0:
            raise self.error("unterminated phrase: missing closing quote", start)
        text = self.q[start + 1 : end]
        self.i = end + 1
        slop = ""
        if self.i < len(self.q) and self.q[self.i] == "~":
            m = re.compile(r"~(\d+)").match(self.q, self.i)
            if not m:
                raise self.error("expected a number of words after '~'", self.i + 1)
            slop = m.group(1)
            self.i = m.end()
        return _Tok("PHRASE", text, start, slop)

    def _field(self, m: re.Match[str], start: int) -> _Tok:
        name, op = m.group(1), m.group(2)
        if name not in FIELDS and name != DATE_FIELD:
            raise self.error(
                f"unknown field '{name}'; allowed fields: {', '.join(ALLOWED_FIELDS)}", start
            )
        self.i = m.end()
        vpos = self.i
        if name == DATE_FIELD:
            if op == ":" and self.i < len(self.q) and self.q[self.i] in "[{":
                rm = _RANGE_RE.match(self.q, self.i)
                if not rm:
                    raise self.error("expected a range like [2024-01-01 TO 2024-02-01]", vpos)
                self.i = rm.end()
                return _Tok("RANGE", rm.group(0), start, str(vpos))
            value = self._word()
            return _Tok("DATECMP", value, vpos, "=" if op == ":" else op)
        if self.i < len(self.q) and self.q[self.i] == '"':
            tok = self._phrase(self.i)
            if tok.extra:
                raise self.error(f"proximity is not allowed in field '{name}'", tok.pos)
            return _Tok("FIELD", tok.value, vpos, name)
        return _Tok("FIELD", self._word(), vpos, name)


# ---- parser ----------------------------------------------------------------------------


class _Parser:
    def __init__(self, query: str) -> None:
        if len(query) > MAX_QUERY_CHARS:
            raise QueryTooComplex(
                f"the query has {len(query)} characters; at most {MAX_QUERY_CHARS} are allowed",
                position=MAX_QUERY_CHARS, query=query, limit="length", maximum=MAX_QUERY_CHARS,
            )  # fmt: skip
        self.lexer = _Lexer(query)
        self.toks = self.lexer.tokens()
        self.k = 0
        self.depth = 0  # groups and negations open on the current path
        self.terms = 0

    def _enter(self, tok: _Tok) -> None:
        """One more group or negation: checked before recursing, so the parser's own
        stack is bounded too."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryTooComplex(
                f"groups and negations nest more than {MAX_DEPTH} deep",
                position=tok.pos, query=self.lexer.q, limit="depth", maximum=MAX_DEPTH,
            )  # fmt: skip

    def _term(self, tok: _Tok) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryTooComplex(
                f"the query has more than {MAX_TERMS} search terms",
                position=tok.pos, query=self.lexer.q, limit="terms", maximum=MAX_TERMS,
            )  # fmt: skip

    @property
    def tok(self) -> _Tok:
        return self.toks[self.k]

    def error(self, message: str, pos: int) -> QuerySyntaxError:
        return self.lexer.error(message, pos)

    def parse(self) -> Node:
        if self.tok.kind == "EOF":
            return MatchAll()
        node = self._or()
        if self.tok.kind == "RP":
            raise self.error("unbalanced ')'", self.tok.pos)
        if self.tok.kind != "EOF":  # pragma: no cover - every other token starts an atom
            raise self.error(f"unexpected '{self.tok.value}'", self.tok.pos)
        return node

    def _or(self) -> Node:
        children = [self._and()]
        while self.tok.kind == "OP" and self.tok.value == "OR":
            self.k += 1
            children.append(self._and())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def _and(self) -> Node:
        children = [self._unary()]
        while True:
            if self.tok.kind == "OP" and self.tok.value == "AND":
                self.k += 1
                children.append(self._unary())
            elif self.tok.kind in ("WORD", "PHRASE", "LP", "NOT", "FIELD", "RANGE", "DATECMP"):
                children.append(self._unary())
            else:
                break
        return children[0] if len(children) == 1 else And(tuple(children))

    def _unary(self) -> Node:
        if self.tok.kind == "NOT":
            self._enter(self.tok)
            self.k += 1
            node = Not(self._unary())
            self.depth -= 1
            return node
        return self._atom()

    def _atom(self) -> Node:
        tok = self.tok
        if tok.kind == "EOF":
            raise self.error("unexpected end of query: expected a term", tok.pos)
        if tok.kind == "OP":
            raise self.error(f"'{tok.value}' needs a term on each side", tok.pos)
        if tok.kind == "RP":
            raise self.error(
                "unbalanced ')'" if self.k == 0 else "empty group or missing term", tok.pos
            )
        self.k += 1
        if tok.kind == "LP":
            if self.tok.kind == "RP":
                raise self.error("empty parentheses", tok.pos)
            self._enter(tok)
            node = self._or()
            if self.tok.kind != "RP":
                raise self.error("missing ')' for this '('", tok.pos)
            self.k += 1
            self.depth -= 1
            return node
        self._term(tok)
        if tok.kind == "PHRASE":
            return self._phrase(tok)
        if tok.kind == "FIELD":
            return self._field(tok)
        if tok.kind == "RANGE":
            return self._range(tok)
        if tok.kind == "DATECMP":
            return self._datecmp(tok)
        return self._word(tok)

    def _phrase(self, tok: _Tok) -> Node:
        words = tok.value.split()
        if not words or not re.search(r"\w", tok.value):
            raise self.error("empty phrase: nothing to search for", tok.pos)
        slop = int(tok.extra) if tok.extra else None
        if slop is not None and len(words) < 2:
            raise self.error("proximity needs at least two words", tok.pos)
        return Phrase(" ".join(words), slop)

    def _word(self, tok: _Tok) -> Node:
        text = tok.value
        if text.endswith("*"):
            stem = text[:-1]
            if "*" in stem or not re.fullmatch(r"\w{2,}", stem):
                raise self.error(
                    "a prefix must be one word of at least 2 letters followed by '*'", tok.pos
                )
            return Prefix(stem.lower())
        if "*" in text or "?" in text:
            raise self.error("wildcards are only allowed at the end of a word", tok.pos)
        if "~" in text:
            raise self.error("'~N' is only allowed after a quoted phrase", tok.pos)
        if not re.search(r"\w", text):
            if text == "-":
                raise self.error("'-' must be followed directly by a term", tok.pos)
            raise self.error(f"'{text}' has no letters or digits to search for", tok.pos)
        return Term(text)

    def _field(self, tok: _Tok) -> Node:
        value = tok.value.strip()
        if not value:
            raise self.error(f"field '{tok.extra}' needs a value", tok.pos)
        return Field(tok.extra, normalize_field_value(tok.extra, value))

    def _date(self, text: str, pos: int) -> tuple[datetime, bool]:
        try:
            return parse_date_bound(text)
        except ValueError:
            raise self.error(
                f"invalid date '{text}': use YYYY-MM-DD or an ISO 8601 time", pos
            ) from None

    def _datecmp(self, tok: _Tok) -> Node:
        if not tok.value:
            raise self.error("'date' needs a value", tok.pos)
        instant, whole_day = self._date(tok.value, tok.pos)
        return _range(tok.extra, instant, whole_day)

    def _range(self, tok: _Tok) -> Node:
        m = _RANGE_RE.fullmatch(tok.value)
        assert m is not None  # the lexer matched it
        base = int(tok.extra)
        lo_text, hi_text = m.group(2), m.group(3)
        lo = hi = None
        if lo_text != "*":
            instant, whole = self._date(lo_text, base + m.start(2))
            lo = _range(">=" if m.group(1) == "[" else ">", instant, whole).gte
        if hi_text != "*":
            instant, whole = self._date(hi_text, base + m.start(3))
            hi = _range("<=" if m.group(4) == "]" else "<", instant, whole).lt
        if lo is not None and hi is not None and lo >= hi:
            raise self.error("empty date range: the start is not before the end", tok.pos)
        return DateRange(gte=lo, lt=hi)


def parse(query: str) -> Node:
    """Parse ``query`` into an AST (``MatchAll`` for a blank query).

    Raises ``QuerySyntaxError`` with the 0-based offset of the offending token.
    """
    return _Parser(query).parse()
