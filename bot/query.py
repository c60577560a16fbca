"""Topic queries in arXiv's search syntax: parse, print, and match papers locally (pure functions).

Grammar (operators are upper-case and case-sensitive, as in arXiv; `and` is an ordinary word):

    query  := or
    or     := and ("OR" and)*
    and    := unary (("AND" | "ANDNOT" | <nothing>) unary)*      left-associative
    unary  := "(" or ")" | FIELD ":" ( WORD | "PHRASE" | "(" or ")" ) | WORD | "PHRASE"

A bare word means `all:`, a bare category name (`cs.CV`, `hep-th`) means `cat:`, and a field in
front of parentheses (`ti:(a OR b)`) applies to every bare term inside them. A word may end in
`*` to match any word that starts with it (`ti:diffus*`).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

FIELDS = ("ti", "abs", "au", "cat", "all")
MAX_QUERY_LENGTH = 2000
MAX_TERMS = 100
MAX_NESTING = 20

# Archives whose categories carry a two-letter upper-case subject class (cs.CV, math.AP, astro-ph.GA).
_UPPER_ARCHIVES = frozenset("cs math stat econ eess q-bio q-fin nlin astro-ph".split())
# Archives whose subject classes are lower-case words (physics.optics, cond-mat.mes-hall).
_LOWER_ARCHIVES = frozenset("physics cond-mat".split())
# Archives that are single categories, today's and those retired before 2009 that old papers still carry.
_PLAIN_ARCHIVES = frozenset(
    "gr-qc hep-ex hep-lat hep-ph hep-th math-ph nucl-ex nucl-th quant-ph "
    "acc-phys adap-org alg-geom ao-sci atom-ph bayes-an chao-dyn chem-ph cmp-lg comp-gas dg-ga "
    "funct-an mtrl-th patt-sol plasm-ph q-alg solv-int supr-con".split()
)
# Old papers are listed in these bare archives too, so arXiv needs `astro-ph*` rather than `astro-ph.*`.
_ARCHIVE_AND_CATEGORY = frozenset({"astro-ph", "cond-mat"})
_CATEGORY = re.compile(r"([a-z][a-z-]*)(?:\.([a-z]+(?:-[a-z]+)?))?(\.?\*)?", re.IGNORECASE)


class QuerySyntaxError(ValueError):
    """A query that does not parse; `str(e)` shows the query with a caret under `position`."""

    def __init__(self, text: str, position: int, message: str, expected: str, hint: str = "") -> None:
        self.text = text
        self.position = position
        self.message = message
        self.expected = expected
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        line, caret = re.sub(r"\s", " ", self.text), self.position  # one column per character
        if len(line) > 70:  # keep the caret on screen in a chat message
            start = max(0, min(caret - 35, len(line) - 70))
            head, tail = ("..." if start else ""), ("..." if start + 70 < len(line) else "")
            line, caret = head + line[start : start + 70] + tail, caret - start + len(head)
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.message} at position {self.position}{hint}:\n  {line}\n  {' ' * caret}^"


# ---------------------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Term:
    """`field:text`. `text` is lower-case (categories in arXiv's casing); `phrase` means it prints quoted."""

    field: str
    text: str
    phrase: bool = False


@dataclass(frozen=True, slots=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class AndNot:
    left: Node
    right: Node


Node = Term | And | Or | AndNot

# ----------------------------------------------------------------------------------- text folding

_TOKEN = re.compile(r"[^\W_]+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Letters that Unicode does not decompose into a base letter plus an accent.
_SPECIAL = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe", "ı": "i", "þ": "th", "ð": "d"})


def _fold(text: str) -> str:
    """Lower-case without accents, so `Müller`, `MULLER` and `muller` compare equal."""
    text = text.lower()
    if text.isascii():
        return text
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text.translate(_SPECIAL)))


def _tokens(text: str) -> list[str]:
    """Words of a text: letters and digits only, so `self-supervised` is `self supervised`."""
    return _TOKEN.findall(_fold(text))


# arXiv's category taxonomy (arxiv.org/category_taxonomy). A subject class outside it is refused:
# the listing feed answers HTTP 400 for one, which would cost every topic in its request its papers.
_SUBJECTS = {
    "cs": "AI AR CC CE CG CL CR CV CY DB DC DL DM DS ET FL GL GR GT HC IR IT LG LO MA MM MS NA NE NI OH OS "
    "PF PL RO SC SD SE SI SY",
    "econ": "EM GN TH",
    "eess": "AS IV SP SY",
    "math": "AC AG AP AT CA CO CT CV DG DS FA GM GN GR GT HO IT KT LO MG MP NA NT OA OC PR QA RA RT SG SP ST",
    "astro-ph": "CO EP GA HE IM SR",
    "cond-mat": "dis-nn mes-hall mtrl-sci other quant-gas soft stat-mech str-el supr-con",
    "nlin": "AO CD CG PS SI",
    "physics": "acc-ph ao-ph app-ph atm-clus atom-ph bio-ph chem-ph class-ph comp-ph data-an ed-ph flu-dyn "
    "gen-ph geo-ph hist-ph ins-det med-ph optics plasm-ph pop-ph soc-ph space-ph",
    "q-bio": "BM CB GN MN NC OT PE QM SC TO",
    "q-fin": "CP EC GN MF PM PR RM ST TR",
    "stat": "AP CO ME ML OT TH",
}
KNOWN_CATEGORIES = frozenset(f"{a}.{s}" for a, subjects in _SUBJECTS.items() for s in subjects.split())


def unknown_category_hint(raw: str) -> str | None:
    """For `cs.ML` and the like (a real archive, a subject arXiv does not have): what to write instead."""
    m = _CATEGORY.fullmatch(raw)
    if not m or m.group(2) is None or m.group(1).lower() not in _SUBJECTS:
        return None
    close = difflib.get_close_matches(raw, sorted(KNOWN_CATEGORIES), n=3, cutoff=0.6)
    similar = sorted(c for c in KNOWN_CATEGORIES if c.split(".")[1].lower() == m.group(2).lower())
    options = list(dict.fromkeys(similar + close))[:4]
    return "did you mean " + " or ".join(options) + "?" if options else "see arxiv.org/category_taxonomy"


def _category(raw: str) -> tuple[str, bool] | None:
    """(arXiv's spelling, is an archive) for a category name such as `cs.cv` or `cs.*`, else None."""
    m = _CATEGORY.fullmatch(raw)
    if not m:
        return None
    archive, subject, star = m.group(1).lower(), m.group(2), m.group(3)
    if subject is None:
        known = archive in _UPPER_ARCHIVES or archive in _LOWER_ARCHIVES or archive in _PLAIN_ARCHIVES
        return (archive, _is_archive(archive)) if known else None
    if star:
        return None
    if archive in _UPPER_ARCHIVES:
        name = f"{archive}.{subject.upper()}"
    elif archive in _LOWER_ARCHIVES:
        name = f"{archive}.{subject.lower()}"
    else:
        return None
    return (name, False) if name in KNOWN_CATEGORIES else None


def _is_archive(category: str) -> bool:
    """`cs` or `astro-ph` (which hold categories), as opposed to `cs.CV` or `hep-th`."""
    return "." not in category and category not in _PLAIN_ARCHIVES


# ------------------------------------------------------------------------------------------ lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "(" ")" OP FIELD WORD PHRASE EOF
    text: str  # as typed (a PHRASE without its quotes, a FIELD without its colon)
    pos: int


_OPERATORS = ("AND", "OR", "ANDNOT")
_FIELD_PREFIX = re.compile(r"([A-Za-z]+):")
_LEXEME = re.compile(r'[^\s()"]+')


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok(c, c, i))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError(text, i, "unclosed quote", 'a closing "')
            toks.append(_Tok("PHRASE", text[i + 1 : end], i))
            i = end + 1
        else:
            m = _LEXEME.match(text, i)
            assert m is not None  # c is none of the characters the pattern excludes
            word, i = m.group(), m.end()
            field = _FIELD_PREFIX.match(word)
            if field:
                toks.append(_Tok("FIELD", field.group(1), m.start()))
                if field.end() < len(word):  # `ti:word`: the rest is a value even if it reads `AND`
                    toks.append(_Tok("WORD", word[field.end() :], m.start() + field.end()))
            else:
                toks.append(_Tok("OP" if word in _OPERATORS else "WORD", word, m.start()))
    toks.append(_Tok("EOF", "", n))
    return toks


# ----------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0
        self.depth = 0
        self.terms = 0

    def fail(self, pos: int, message: str, expected: str, hint: str = "") -> QuerySyntaxError:
        return QuerySyntaxError(self.text, pos, message, expected, hint)

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise self.fail(0, "empty query", "a term", 'try cat:cs.CV or ti:"diffusion model"')
        node = self.or_expr(None)
        tok = self.peek()
        if tok.kind != "EOF":  # the loops only stop early at a ")"
            raise self.fail(tok.pos, 'unexpected ")"', "an operator or the end of the query", 'no "(" to close')
        return node

    def or_expr(self, field: str | None, after: _Tok | None = None) -> Node:
        node = self.and_expr(field, after)
        while (tok := self.peek()).kind == "OP" and tok.text == "OR":
            self.take()
            node = Or(node, self.and_expr(field, tok))
        return node

    def and_expr(self, field: str | None, after: _Tok | None) -> Node:
        node = self.unary(field, after)
        while True:
            tok = self.peek()
            if tok.kind == "OP" and tok.text in ("AND", "ANDNOT"):
                self.take()
                right = self.unary(field, tok)
                node = And(node, right) if tok.text == "AND" else AndNot(node, right)
            elif tok.kind in ("WORD", "PHRASE", "FIELD", "("):
                # Juxtaposed terms mean AND. arXiv's own API would OR them, but someone who follows
                # `diffusion model` wants papers about both words, not every paper with either.
                node = And(node, self.unary(field, None))
            else:
                return node

    def unary(self, field: str | None, after: _Tok | None) -> Node:
        tok = self.take()
        if tok.kind == "(":
            return self.group(field, tok)
        if tok.kind == "FIELD":
            name = tok.text.lower()
            if name not in FIELDS:
                raise self.fail(tok.pos, f'unknown field "{tok.text}:"', "a field", "use ti:, abs:, au:, cat: or all:")
            value = self.take()
            if value.kind == "(":
                return self.group(name, value)
            if value.kind in ("WORD", "PHRASE"):
                return self.term(name, value)
            raise self.fail(
                value.pos, f'expected a word, a "phrase" or "(" after "{tok.text}:"', "a word",
                f'found "{value.text}"' if value.kind != "EOF" else "",
            )
        if tok.kind in ("WORD", "PHRASE"):
            return self.term(field, tok)
        found = f'found "{tok.text}"' if tok.kind != "EOF" else ""
        if after is not None:
            raise self.fail(tok.pos, f'expected a term after "{after.text}"', "a term", found)
        if tok.kind == "OP":
            raise self.fail(tok.pos, f'expected a term before "{tok.text}"', "a term")
        raise self.fail(tok.pos, 'unexpected ")"', "a term", 'no "(" to close')

    def group(self, field: str | None, opening: _Tok) -> Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(opening.pos, "too many nested parentheses", "a term", f"at most {MAX_NESTING}")
        node = self.or_expr(field, opening)
        closing = self.take()
        if closing.kind != ")":
            raise self.fail(closing.pos, 'expected ")"', '")"', f'to close the "(" at position {opening.pos}')
        self.depth -= 1
        return node

    def term(self, field: str | None, tok: _Tok) -> Term:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(tok.pos, "too many terms", "the end of the query", f"at most {MAX_TERMS}")
        raw = tok.text
        if tok.kind == "PHRASE":
            raw = " ".join(raw.split())
            if not _tokens(raw):
                raise self.fail(tok.pos, "empty phrase", "a word inside the quotes")
        if field is None:
            if tok.kind == "WORD" and raw == "NOT":
                raise self.fail(tok.pos, 'unknown operator "NOT"', "a term", 'use ANDNOT, as in "a ANDNOT b"')
            cat = _category(raw) if tok.kind == "WORD" else None
            hint = unknown_category_hint(raw) if tok.kind == "WORD" and cat is None else None
            if hint is not None:
                raise self.fail(tok.pos, f'unknown category "{raw}"', "a category", hint)
            # A bare `cs` or `physics` is a word; hyphenated archives (`hep-th`, `q-bio`) read as categories.
            if cat and (not cat[1] or "-" in cat[0] or raw.endswith("*")):
                return Term("cat", cat[0])
            field = "all"
        if field == "cat":
            cat = _category(raw)
            if cat is None:
                hint = unknown_category_hint(raw) or "e.g. cs.CV, math.AP, hep-th, cs.*"
                raise self.fail(tok.pos, f'unknown category "{raw}"', "a category", hint)
            return Term("cat", cat[0])
        if tok.kind == "PHRASE":
            text = raw.lower()
            # A one-word phrase is the word itself, so `ti:"gan"` and `ti:gan` dedupe.
            return Term(field, text, phrase=re.fullmatch(r'[^\s()*]+', text) is None)
        star = raw.find("*")
        if star >= 0 and star != len(raw) - 1:
            raise self.fail(tok.pos + star, '"*" in the middle of a word', "a word", "a wildcard goes at the end: diffus*")
        if not _tokens(raw):
            raise self.fail(tok.pos, f'"{raw}" has no letters or digits', "a word")
        return Term(field, raw.lower())


def parse_query(text: str) -> Node:
    """Parse a topic query; raise QuerySyntaxError pointing at the place where it fails."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(text, MAX_QUERY_LENGTH, "query too long", "the end of the query",
                               f"at most {MAX_QUERY_LENGTH} characters")
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------- printing


def _term_source(t: Term) -> str:
    return f'{t.field}:"{t.text}"' if t.phrase else f"{t.field}:{t.text}"


def normalize_query(node: Node) -> str:
    """Canonical text: explicit fields and operators, single spaces, parentheses only where needed
    or where they help reading (around an AND inside an OR).

    Queries that differ only in case, spacing, implicit fields, juxtaposition or the grouping of
    a chain of ANDs (or ORs) print the same, so a chat cannot follow the same topic twice.
    """
    if isinstance(node, Term):
        return _term_source(node)
    if isinstance(node, Or):
        # `a OR (b AND c)` parses the same without the parentheses, but few readers know that.
        return " OR ".join(
            normalize_query(c) if isinstance(c, (Term, Or)) else f"({normalize_query(c)})" for c in (node.left, node.right)
        )
    left = normalize_query(node.left)
    if isinstance(node.left, Or):
        left = f"({left})"
    right = normalize_query(node.right)
    if not (isinstance(node.right, Term) or (isinstance(node, And) and isinstance(node.right, And))):
        right = f"({right})"
    return f"{left} {'AND' if isinstance(node, And) else 'ANDNOT'} {right}"


def to_arxiv_search(node: Node) -> str:
    """A `search_query` for the arXiv export API.

    Every mixed group is parenthesized, so arXiv's own precedence never matters; archives become
    arXiv's wildcards (`cat:cs.*`); accents are dropped because arXiv indexes names in ASCII.
    """
    if isinstance(node, Term):
        if node.field == "cat":
            if _is_archive(node.text):
                return f"cat:{node.text}*" if node.text in _ARCHIVE_AND_CATEGORY else f"cat:{node.text}.*"
            return f"cat:{node.text}"
        return _term_source(Term(node.field, _fold(node.text), node.phrase))
    op = "AND" if isinstance(node, And) else "OR" if isinstance(node, Or) else "ANDNOT"
    parts = []
    for child in (node.left, node.right):
        text = to_arxiv_search(child)
        chain = type(child) is type(node) and not isinstance(node, AndNot)  # a AND b AND c needs no parentheses
        parts.append(text if isinstance(child, Term) or chain else f"({text})")
    return f" {op} ".join(parts)


# -------------------------------------------------------------------------------------- categories


def categories_of(node: Node) -> set[str] | None:
    """Categories that every match is in at least one of, or None when a match can be anywhere."""
    if isinstance(node, Term):
        return {node.text} if node.field == "cat" else None
    if isinstance(node, AndNot):
        return categories_of(node.left)
    left, right = categories_of(node.left), categories_of(node.right)
    if isinstance(node, Or):
        if left is None or right is None:
            return None
        both = left | right
        # `cat:cs OR cat:cs.CV` is just `cs`.
        return {c for c in both if "." not in c or c.split(".", 1)[0] not in both}
    # Both sides of an AND restrict the match, so either set is right; take the one with fewer feeds.
    choices = [s for s in (left, right) if s is not None]
    return min(choices, key=lambda s: (len(s), sum(map(_is_archive, s)))) if choices else None


# ---------------------------------------------------------------------------------------- matching


class _Matchable(Protocol):  # Paper and ListingItem; read-only, so list attributes fit Sequence
    @property
    def title(self) -> str: ...
    @property
    def abstract(self) -> str: ...
    @property
    def authors(self) -> Sequence[str]: ...
    @property
    def categories(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class MatchDoc:
    """What a query can see of a paper."""

    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]

    def __post_init__(self) -> None:
        # Papers carry lists; tuples keep the doc hashable, which matches() relies on for its cache.
        object.__setattr__(self, "authors", tuple(self.authors))
        object.__setattr__(self, "categories", tuple(self.categories))

    @classmethod
    def of(cls, item: _Matchable) -> MatchDoc:
        """From a Paper or a listing item."""
        return cls(item.title, item.abstract, tuple(item.authors), tuple(item.categories))


# Attribute of _Doc that holds each field's words (`ab`, not `abs`, which reads like the builtin).
_ATTR = {"ti": "ti", "abs": "ab", "au": "au", "all": "al"}
_DOC_SETS = ("ti", "ab", "au", "al", "cats")


class _Doc:
    """A document's words, prepared once for every query that looks at it.

    Per field: the set of its words (`ti`, `ab`, `au`, `al`), and its text as " w1 w2 | w3 ... "
    (`ti_text`...; one segment per title, abstract, author or category), so a phrase is a substring
    search that never runs across two segments. `cats` holds categories and their archives.
    """

    __slots__ = ("ti", "ab", "au", "al", "cats", "ti_text", "ab_text", "au_text", "al_text", "authors", "sets")

    def __init__(self, doc: MatchDoc) -> None:
        title, abstract = _tokens(doc.title), _tokens(doc.abstract)
        names = [tuple(_tokens(a)) for a in doc.authors]
        cat_tokens = [_tokens(c) for c in doc.categories]

        def text(segments: Iterable[Sequence[str]]) -> str:
            return " " + " | ".join(" ".join(s) for s in segments) + " "

        self.ti, self.ab, self.au = set(title), set(abstract), {t for name in names for t in name}
        self.al = self.ti | self.ab | self.au | {t for c in cat_tokens for t in c}
        self.cats = {c.lower() for c in doc.categories} | {c.split(".", 1)[0].lower() for c in doc.categories}
        self.ti_text, self.ab_text, self.au_text = text([title]), text([abstract]), text(names)
        self.al_text = text([title, abstract, *names, *cat_tokens])
        self.authors = [(name, frozenset(name)) for name in names]
        self.sets = {"ti": self.ti, "ab": self.ab, "au": self.au, "al": self.al, "cats": self.cats}


_Pred = Callable[[_Doc], bool]


def _name_matches(query: tuple[str, ...], name: tuple[str, ...]) -> bool:
    """Every query word is a different word of the name, in any order (`au:hinton_g`), exactly or as
    an initial of it (`g` ~ `geoffrey`, and `geoffrey` ~ the author's `g`), and at least one exactly."""
    left = list(name)
    rest = []
    for q in query:
        if q in left:
            left.remove(q)
        else:
            rest.append(q)
    if len(rest) == len(query):
        return False
    for q in rest:
        for w in left:
            if (w[0] == q) if len(q) == 1 else (len(w) == 1 and q[0] == w):
                left.remove(w)
                break
        else:
            return False
    return True


def _any_name(query: tuple[str, ...], d: _Doc) -> bool:
    words = frozenset(query)
    exact = len(words) == len(query)
    for name, name_words in d.authors:
        if words.isdisjoint(name_words):
            continue
        if (exact and words <= name_words) or _name_matches(query, name):
            return True
    return False


def _term_test(t: Term) -> tuple[str, str | tuple[str, ...]]:
    """(attribute of _Doc, value): the term holds when the value is `in` that attribute, except for
    ("authors", name words), which holds when _any_name says so."""
    if t.field == "cat":
        return "cats", t.text.lower()
    attr, toks = _ATTR[t.field], tuple(_tokens(t.text))
    if t.text.endswith("*") and not t.phrase:
        return f"{attr}_text", " " + " ".join(toks)
    if len(toks) == 1:
        return attr, toks[0]
    if t.field == "au":
        return "authors", toks
    return f"{attr}_text", " " + " ".join(toks) + " "


def _holds(node: Node, d: _Doc) -> bool:
    if isinstance(node, Term):
        attr, value = _term_test(node)
        return _any_name(value, d) if attr == "authors" else value in getattr(d, attr)  # type: ignore[arg-type,operator]
    if isinstance(node, And):
        return _holds(node.left, d) and _holds(node.right, d)
    if isinstance(node, Or):
        return _holds(node.left, d) or _holds(node.right, d)
    return _holds(node.left, d) and not _holds(node.right, d)


_cached_doc = lru_cache(maxsize=256)(_Doc)


def matches(node: Node, doc: MatchDoc) -> bool:
    """Does the paper match the query?

    Case- and accent-insensitive, whole words only (`gan` is not in "organ"); a phrase or a word
    with punctuation (`self-supervised`) is consecutive words of one field. `cat:` covers every
    listed category, and an archive (`cat:cs`) its categories. `au:` words belong to one author,
    in any order, and may be initials (`au:"G Hinton"`, `au:hinton_g`). `all:` is title,
    abstract, authors and categories.
    """
    return _holds(node, _cached_doc(doc))


def _expr(node: Node) -> str:
    """_holds as one Python expression over `d`; every literal goes in through repr()."""
    if isinstance(node, Term):
        attr, value = _term_test(node)
        return f"_any_name({value!r}, d)" if attr == "authors" else f"{value!r} in d.{attr}"
    a, b = _expr(node.left), _expr(node.right)
    return f"({a} and {b})" if isinstance(node, And) else f"({a} or {b})" if isinstance(node, Or) else f"({a} and not {b})"


def _compile(node: Node) -> _Pred:
    # One generated function per query: with hundreds of candidate topics per paper, walking
    # the tree (or a tree of closures) cost several times more than the tests themselves.
    pred: _Pred = eval(f"lambda d: {_expr(node)}", {"_any_name": _any_name})  # noqa: S307 - literals are repr()s
    return pred


# Words so common that a topic indexed by them would be checked against nearly every paper.
_COMMON = frozenset(
    "a an and are as at be by for from in is it of on or that the this to we with via using based "
    "new model models method methods learning data results paper approach".split()
)
_FIELD_COST = {"ti": 0.01, "abs": 0.05, "au": 0.002, "all": 0.06}  # rough share of papers with a word


def _token_cost(field: str, tok: str) -> float:
    cost = _FIELD_COST[field]
    if tok in _COMMON or len(tok) <= 2:
        return cost * 20
    return cost * 3 if len(tok) == 3 else cost


_Anchor = tuple[float, frozenset[tuple[str, str]]]


def _anchor(node: Node) -> _Anchor | None:
    """Keys of which every matching document has at least one, with a guess at how common they are.

    A key is (a word set of _Doc, a word), or ("cats", a category or archive). None: there are no
    such keys, and the topic must be checked on every doc.
    """
    if isinstance(node, Term):
        if node.field == "cat":
            return (0.5 if _is_archive(node.text) else 0.1), frozenset({("cats", node.text.lower())})
        toks = _tokens(node.text)
        if node.text.endswith("*") and not node.phrase:
            toks = toks[:-1]  # only the words before the wildcard are whole
            if not toks:
                return None
        elif node.field == "au" and len(toks) > 1:
            # Any one of the name's words may be the one that matched exactly (see _name_matches).
            return sum(_token_cost("au", t) for t in toks), frozenset(("au", t) for t in toks)
        best = min(toks, key=lambda t: _token_cost(node.field, t))
        return _token_cost(node.field, best), frozenset({(_ATTR[node.field], best)})
    left = _anchor(node.left)
    if isinstance(node, AndNot):
        return left
    right = _anchor(node.right)
    if isinstance(node, Or):
        return None if left is None or right is None else (left[0] + right[0], left[1] | right[1])
    choices = [a for a in (left, right) if a is not None]
    return min(choices, key=lambda a: a[0]) if choices else None


def _direct_key(node: Node) -> tuple[str, str] | None:
    """The index key that decides the query by itself: a category, or one whole word in a field."""
    if isinstance(node, Term):
        attr, value = _term_test(node)
        if attr in _DOC_SETS and isinstance(value, str):
            return attr, value
    return None


class TopicMatcher:
    """Many topics against many papers: each paper is checked only against topics that could match it.

    Each distinct query gets an anchor (see _anchor); a paper's words and categories look up the
    queries anchored on them, and only those (plus the few without an anchor) are evaluated.
    Queries that are a single category or word (a quarter of real topics) need no evaluation:
    finding the key is the match.
    """

    def __init__(self, topics: Iterable[tuple[int, Node]]) -> None:
        groups: dict[Node, list[int]] = {}
        for topic_id, node in topics:
            groups.setdefault(node, []).append(topic_id)
        self._preds: list[_Pred] = []
        self._ids: list[list[int]] = []
        self._always: list[int] = []
        self._index: dict[str, dict[str, list[int]]] = {s: {} for s in _DOC_SETS}
        self._direct: dict[str, dict[str, list[int]]] = {s: {} for s in _DOC_SETS}
        for node, ids in groups.items():
            direct = _direct_key(node)
            if direct is not None:
                self._direct[direct[0]].setdefault(direct[1], []).extend(ids)
                continue
            g = len(self._preds)
            self._preds.append(_compile(node))
            self._ids.append(ids)
            anchor = _anchor(node)
            if anchor is None:
                self._always.append(g)
            else:
                for name, key in anchor[1]:
                    self._index[name].setdefault(key, []).append(g)

    def match(self, doc: MatchDoc) -> set[int]:
        """Ids of the topics that match the paper."""
        d = _Doc(doc)
        found: set[int] = set()
        candidates = set(self._always)
        for name, words in d.sets.items():
            direct, index = self._direct[name], self._index[name]
            if direct:
                for key in direct.keys() & words:
                    found.update(direct[key])
            if index:
                for key in index.keys() & words:
                    candidates.update(index[key])
        preds, ids = self._preds, self._ids
        for g in candidates:
            if preds[g](d):
                found.update(ids[g])
        return found


# ------------------------------------------------------------------------------- why it matched


def matched_terms(node: Node, doc: MatchDoc) -> list[str]:
    """The query's terms that hold for the paper and make it match, as written in the normalized
    query (`ti:diffusion`, `cat:cs.CV`, `au:"geoffrey hinton"`), each once, in query order.

    Terms under an ANDNOT's right side never count (they held *against* the paper), nor does an
    OR branch that does not hold. Empty when the query does not match the paper at all.
    """
    d = _cached_doc(doc)
    if not _holds(node, d):
        return []
    out: list[str] = []

    def walk(n: Node) -> None:
        if isinstance(n, Term):
            if _holds(n, d):
                source = _term_source(n)
                if source not in out:
                    out.append(source)
            return
        if isinstance(n, AndNot):
            walk(n.left)
            return
        for child in (n.left, n.right):
            if _holds(child, d):
                walk(child)

    walk(node)
    return out
