"""Topic queries: parsing, canonical text, arXiv search text, categories, and matching papers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bot.models import Paper
from bot.query import (
    And,
    AndNot,
    MatchDoc,
    Or,
    QuerySyntaxError,
    Term,
    TopicMatcher,
    categories_of,
    matches,
    normalize_query,
    parse_query,
    to_arxiv_search,
)

# ------------------------------------------------------------------------------- parse / normalize


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("diffusion", "all:diffusion"),
        # juxtaposition is AND (arXiv would OR it)
        ("diffusion model", "all:diffusion AND all:model"),
        ("cs.CV", "cat:cs.CV"),
        ("CS.cv", "cat:cs.CV"),
        ("math.AP", "cat:math.AP"),
        ("hep-th", "cat:hep-th"),
        ("astro-ph.GA", "cat:astro-ph.GA"),
        ("stat.ML", "cat:stat.ML"),
        ("q-bio.NC", "cat:q-bio.NC"),
        ("cond-mat.Mes-Hall", "cat:cond-mat.mes-hall"),
        ("q-bio", "cat:q-bio"),
        ("cs", "all:cs"),  # a bare archive without a hyphen is a word
        ("cat:cs", "cat:cs"),
        ("cat:cs.*", "cat:cs"),
        ("cs.*", "cat:cs"),
        ("cat:astro-ph*", "cat:astro-ph"),
        ('"cs.CV"', "all:cs.cv"),  # quoted: a literal, not a category
        ('ti:"Diffusion   Model"', 'ti:"diffusion model"'),
        ('ti:"GAN"', "ti:gan"),
        ('abs:"f(x) = 1"', 'abs:"f(x) = 1"'),
        ("TI:Diffusion", "ti:diffusion"),
        ("ti: diffusion", "ti:diffusion"),
        ("ti:self-supervised", "ti:self-supervised"),
        ("au:del_maestro", "au:del_maestro"),
        ('au:"Geoffrey  Hinton"', 'au:"geoffrey hinton"'),
        ("ti:diffus*", "ti:diffus*"),
        ("ti:AND", "ti:and"),
        ("diffusion and model", "all:diffusion AND all:and AND all:model"),  # lower-case `and` is a word
        ("cat:cs.CV ti:(diffusion OR flow)", "cat:cs.CV AND (ti:diffusion OR ti:flow)"),
        ("ti:(abs:gan OR vae)", "abs:gan OR ti:vae"),
        ("ti:(cs.CV)", "ti:cs.cv"),  # inside a field group a category name is just text
        ("a OR b c", "all:a OR (all:b AND all:c)"),
        ("(a OR b) c", "(all:a OR all:b) AND all:c"),
        ("a ANDNOT b OR c", "(all:a ANDNOT all:b) OR all:c"),
        ("a ANDNOT (b OR c)", "all:a ANDNOT (all:b OR all:c)"),
        ("a ANDNOT (b ANDNOT c)", "all:a ANDNOT (all:b ANDNOT all:c)"),
        ("a AND (b AND c)", "all:a AND all:b AND all:c"),
        ("(a OR (b OR c))", "all:a OR all:b OR all:c"),
        ("  ((a))  ", "all:a"),
    ],
)
def test_normalize(query: str, canonical: str) -> None:
    assert normalize_query(parse_query(query)) == canonical
    # canonical text is a fixed point, so stored topics dedupe
    assert normalize_query(parse_query(canonical)) == canonical


def test_precedence_and_associativity() -> None:
    a, b, c = (Term("all", x) for x in "abc")
    assert parse_query("a b OR c") == Or(And(a, b), c)
    assert parse_query("a OR b c") == Or(a, And(b, c))
    assert parse_query("a ANDNOT b AND c") == And(AndNot(a, b), c)
    assert parse_query("a OR b OR c") == Or(Or(a, b), c)
    assert parse_query('ti:"x y"') == Term("ti", "x y", phrase=True)


def test_equal_queries_dedupe() -> None:
    spellings = ["cs.CV diffusion", "cat:cs.CV AND all:diffusion", "(cat:CS.CV)  AND  (Diffusion)", 'cs.cv "diffusion"']
    assert len({normalize_query(parse_query(q)) for q in spellings}) == 1


# ------------------------------------------------------------------------------------ arXiv search


@pytest.mark.parametrize(
    ("query", "search"),
    [
        ("cs.CV diffusion model", "cat:cs.CV AND all:diffusion AND all:model"),
        ('ti:"diffusion model"', 'ti:"diffusion model"'),
        ("cat:cs ti:gan", "cat:cs.* AND ti:gan"),
        ("astro-ph", "cat:astro-ph*"),
        ("hep-th OR gr-qc", "cat:hep-th OR cat:gr-qc"),
        ("cat:physics.optics", "cat:physics.optics"),
        ('au:"Jürgen Müller"', 'au:"jurgen muller"'),
        ("au:del_maestro", "au:del_maestro"),
        ("a OR b c", "all:a OR (all:b AND all:c)"),
        ("a ANDNOT b ANDNOT c", "(all:a ANDNOT all:b) ANDNOT all:c"),
        ("(a OR b) ANDNOT c", "(all:a OR all:b) ANDNOT all:c"),
        ("ti:(a OR b) au:x", "(ti:a OR ti:b) AND au:x"),
        ("ti:diffus*", "ti:diffus*"),
    ],
)
def test_to_arxiv_search(query: str, search: str) -> None:
    assert to_arxiv_search(parse_query(query)) == search


# ------------------------------------------------------------------------------------- categories


@pytest.mark.parametrize(
    ("query", "categories"),
    [
        ("cs.CV", {"cs.CV"}),
        ("ti:diffusion", None),
        ("cat:cs.CV OR ti:x", None),
        ("cs.CV OR cs.LG", {"cs.CV", "cs.LG"}),
        ("cs.CV ti:x", {"cs.CV"}),
        ("cat:cs cs.CV", {"cs.CV"}),
        ("(cs.CV OR cs.LG) AND math.OC", {"math.OC"}),
        ("cs.CV ANDNOT cs.LG", {"cs.CV"}),
        ("ti:x ANDNOT cs.LG", None),
        ("cat:cs OR cs.CV", {"cs"}),
        ("hep-th OR (gr-qc ti:black)", {"hep-th", "gr-qc"}),
        ("au:hinton (cs.LG OR stat.ML)", {"cs.LG", "stat.ML"}),
    ],
)
def test_categories_of(query: str, categories: set[str] | None) -> None:
    assert categories_of(parse_query(query)) == categories


# ----------------------------------------------------------------------------------------- errors


def test_error_message_points_at_the_failure() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query("cat:cs.CV AND ")
    assert str(info.value) == 'expected a term after "AND" at position 14:\n  cat:cs.CV AND \n                ^'
    assert (info.value.position, info.value.expected) == (14, "a term")


@pytest.mark.parametrize(
    ("query", "position", "expected", "message"),
    [
        ("", 0, "a term", "empty query"),
        ("   ", 0, "a term", "empty query"),
        ("(a OR b", 7, '")"', 'expected ")" at position 7 (to close the "(" at position 0)'),
        ("ti:(a OR (b c)", 14, '")"', 'to close the "(" at position 3'),
        ("a OR b)", 6, "an operator or the end of the query", 'unexpected ")"'),
        ("()", 1, "a term", 'expected a term after "("'),
        ("a AND", 5, "a term", 'expected a term after "AND"'),
        ("a AND OR b", 6, "a term", 'expected a term after "AND" at position 6 (found "OR")'),
        ("OR a", 0, "a term", 'expected a term before "OR"'),
        ("a ANDNOT", 8, "a term", 'expected a term after "ANDNOT"'),
        ("xx:foo", 0, "a field", 'unknown field "xx:"'),
        ("cs.CV co:thesis", 6, "a field", "use ti:, abs:, au:, cat: or all:"),
        ('ti:"diffusion model', 3, 'a closing "', "unclosed quote"),
        ('ti:""', 3, "a word inside the quotes", "empty phrase"),
        ('abs:" - "', 4, "a word inside the quotes", "empty phrase"),
        ("ti:", 3, "a word", 'expected a word, a "phrase" or "(" after "ti:"'),
        ("ti: OR x", 4, "a word", 'after "ti:" at position 4 (found "OR")'),
        ("ti:--", 3, "a word", '"--" has no letters or digits'),
        ("dif*sion", 3, "a word", '"*" in the middle of a word'),
        ("cat:cs.CVV", 4, "a category", 'unknown category "cs.CVV"'),
        ("cat:diffusion", 4, "a category", 'unknown category "diffusion"'),
        ("a AND NOT b", 6, "a term", "use ANDNOT"),
        ("(" * 25 + "a" + ")" * 25, 20, "a term", "too many nested parentheses"),
        ("x " * 101, 200, "the end of the query", "too many terms"),
    ],
)
def test_syntax_errors(query: str, position: int, expected: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    err = info.value
    assert (err.position, err.expected) == (position, expected)
    assert message in str(err)
    assert isinstance(err, ValueError)


def test_long_query_keeps_the_caret_under_the_failure() -> None:
    query = "cat:cs.CV AND " + " OR ".join(f"ti:word{i}" for i in range(20)) + " OR )"
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    _, line, caret = str(info.value).split("\n")
    assert len(line) < 90
    assert line[caret.index("^")] == ")"


# --------------------------------------------------------------------------------------- matching

PAPER = MatchDoc(
    title="Self-Supervised Diffusion Models for Organ Segmentation",
    abstract="We train a generative adversarial network (GAN) with score-based priors; it beats U-Net baselines.",
    authors=("Geoffrey E. Hinton", "Adrian Del Maestro", "Jürgen Schmidhuber", "Zoë Łukasiewicz"),
    categories=("cs.CV", "cs.LG", "eess.IV"),
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # word boundaries
        ("ti:gan", False),  # "Organ" is not "gan"
        ("abs:gan", True),
        ("ti:organ", True),
        ("ti:segment", False),
        ("ti:segment*", True),
        ("ti:DIFFUSION", True),
        ("TI:diffusion", True),
        # hyphens and punctuation: words in sequence
        ("ti:self-supervised", True),
        ('ti:"self supervised"', True),
        ("ti:supervised", True),
        ('ti:"supervised self"', False),
        ("abs:score-based", True),
        ("abs:u-net", True),
        ("abs:unet", False),
        # phrases are consecutive words within one field
        ('ti:"diffusion models"', True),
        ('ti:"diffusion segmentation"', False),
        ('all:"organ segmentation"', True),
        ('all:"segmentation we"', False),  # never across the end of the title and the abstract
        ('abs:"organ segmentation"', False),
        # categories: primary and cross-lists, archives
        ("cs.CV", True),
        ("cat:cs.LG", True),
        ("cat:eess.IV", True),
        ("cat:cs", True),
        ("cat:eess.*", True),
        ("cat:cs.AI", False),
        ("cat:math", False),
        # authors
        ("au:hinton", True),
        ("au:HINTON", True),
        ('au:"Geoffrey Hinton"', True),
        ('au:"Geoffrey E. Hinton"', True),
        ('au:"G Hinton"', True),
        ("au:hinton_g", True),
        ('au:"Yann Hinton"', False),
        ('au:"Adrian Hinton"', False),  # words of two different authors
        ("au:del_maestro", True),
        ('au:"Del Maestro"', True),
        ("au:maestro", True),
        ('au:"Jurgen Schmidhuber"', True),  # accent-insensitive, both ways
        ("au:jürgen", True),
        ("au:lukasiewicz", True),
        ("au:zoe", True),
        ("au:diffusion", False),
        ("ti:hinton", False),
        ("hinton", True),  # all: covers authors and categories
        ("all:eess", True),
        ("all:cs.CV", True),
        ("diffusion", True),
        # boolean structure
        ("diffusion segmentation", True),
        ("diffusion zebra", False),
        ("diffusion and segmentation", False),  # `and` is a word, and the paper lacks it
        ("ti:gan OR ti:diffusion", True),
        ("ti:zebra ti:gan OR ti:diffusion", True),  # (zebra AND gan) OR diffusion
        ("ti:zebra (ti:gan OR ti:diffusion)", False),
        ("ti:zebra AND ti:gan OR ti:diffusion", True),
        ("cs.CV ANDNOT ti:survey", True),
        ("cs.CV ANDNOT cs.LG", False),
        ("cs.CV ANDNOT ti:survey ANDNOT au:hinton", False),
        ("cs.CV ANDNOT (ti:survey OR au:nobody)", True),
        ("ti:(survey OR organ) cat:cs", True),
    ],
)
def test_matches(query: str, expected: bool) -> None:
    node = parse_query(query)
    assert matches(node, PAPER) is expected
    assert TopicMatcher([(1, node)]).match(PAPER) == ({1} if expected else set())


@pytest.mark.parametrize(
    ("categories", "query", "expected"),
    [
        (("math.APX",), "cat:math.AP", False),
        (("math.AP",), "cat:math.AP", True),
        (("math-ph",), "cat:math", False),
        (("math-ph",), "cat:math-ph", True),
        (("math.AP", "math-ph"), "cat:math", True),
        (("astro-ph",), "astro-ph", True),
        (("astro-ph.GA",), "astro-ph", True),
        (("astro-ph.GA",), "cat:astro-ph.CO", False),
        (("physics.optics",), "cat:physics.optics", True),
    ],
)
def test_category_matching(categories: tuple[str, ...], query: str, expected: bool) -> None:
    assert matches(parse_query(query), MatchDoc("t", "a", (), categories)) is expected


def test_match_doc_from_paper() -> None:
    paper = Paper(
        arxiv_id="2405.01872", version=1, title="Diffusion for all", authors=["Ada Lovelace"],
        abstract="Text.", categories=["cs.CV", "cs.LG"], published=datetime(2024, 5, 3, tzinfo=UTC),
        updated=datetime(2024, 5, 3, tzinfo=UTC), abs_url="https://arxiv.org/abs/2405.01872v1",
    )
    doc = MatchDoc.of(paper)
    assert doc == MatchDoc("Diffusion for all", "Text.", ("Ada Lovelace",), ("cs.CV", "cs.LG"))
    assert matches(parse_query("au:lovelace cs.LG"), doc)


# ------------------------------------------------------------------------------ TopicMatcher


def test_matcher_groups_ids_and_handles_unanchored_topics() -> None:
    topics = [
        (1, parse_query("cs.CV")),
        (2, parse_query("cat:cs.CV")),  # same query as 1
        (3, parse_query("ti:diffus*")),  # nothing to index by: checked on every paper
        (4, parse_query("ti:zebra*")),
        (5, parse_query("au:hinton ANDNOT cs.CV")),
        (6, parse_query("ti:(zebra OR organ) ANDNOT abs:transformer")),
    ]
    assert TopicMatcher(topics).match(PAPER) == {1, 2, 3, 6}
    assert TopicMatcher([]).match(PAPER) == set()


def test_matcher_is_safe_with_odd_characters() -> None:
    # Each query is compiled to Python; text can only reach it as a literal.
    doc = MatchDoc("x y z", "quote's \"here\" \\ and {braces}", ("O'Brien",), ("cs.CV",))
    queries = ["abs:quote's", 'abs:"\\ and"', 'abs:"{braces}"', "au:o'brien", "ti:x'y\\z", "abs:%s{0}"]
    topics = [(i, parse_query(q)) for i, q in enumerate(queries)]
    assert TopicMatcher(topics).match(doc) == {i for i, node in topics if matches(node, doc)} == {0, 1, 2, 3, 4}


def test_matcher_takes_the_longest_query() -> None:
    query = " OR ".join(f"ti:w{i}" for i in range(99)) + " OR ti:z"
    node = parse_query(query)
    doc = MatchDoc("z", "", (), ())
    assert matches(node, doc)
    assert TopicMatcher([(7, node)]).match(doc) == {7}


# Small vocabularies, so that random queries and random papers meet often.
WORDS = ["diffusion", "model", "graph", "neural", "network", "gan", "organ", "self", "supervised", "quantum", "a"]
NAMES = ["Geoffrey Hinton", "G. E. Hinton", "Adrian Del Maestro", "Jürgen Müller", "Yann LeCun", "Li Wei", "Wei Li"]
CATS = ["cs.CV", "cs.LG", "math.AP", "math-ph", "hep-th", "astro-ph", "astro-ph.GA", "stat.ML"]


def random_term(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.2:
        return rng.choice(["cat:", ""]) + rng.choice([*CATS, "cs", "math", "astro-ph"] if kind < 0.1 else CATS)
    if kind < 0.35:
        name = rng.choice(NAMES).replace(".", "").split()
        form = rng.random()
        if form < 0.4:
            return f"au:{name[-1]}"
        if form < 0.7:
            return f'au:"{" ".join(name)}"'
        return f"au:{name[-1]}_{name[0][0]}" if form < 0.85 else f"au:{rng.choice(name)[:3]}*"
    field = rng.choice(["ti:", "abs:", "all:", ""])
    if kind < 0.55:
        return f'{field}"{rng.choice(WORDS)} {rng.choice(WORDS)}"'
    if kind < 0.62:
        return f"{field}{rng.choice(WORDS)[:3]}*"
    if kind < 0.7:
        return f"{field}{rng.choice(WORDS)}-{rng.choice(WORDS)}"
    return field + rng.choice(WORDS)


def random_query(rng: random.Random, depth: int = 0) -> str:
    if depth > 2 or rng.random() < 0.35:
        return random_term(rng)
    op = rng.choice(["AND", "OR", "ANDNOT", ""])
    left, right = random_query(rng, depth + 1), random_query(rng, depth + 1)
    return f"({left} {op} {right})" if rng.random() < 0.5 else f"{left} {op} {right}"


def random_doc(rng: random.Random) -> MatchDoc:
    def text(n: int) -> str:
        return " ".join(rng.choice([*WORDS, "of", "the", "self-supervised"]) for _ in range(n))

    return MatchDoc(
        text(rng.randint(3, 8)).title(),
        text(rng.randint(5, 40)),
        tuple(rng.sample(NAMES, rng.randint(0, 3))),
        tuple(rng.sample(CATS, rng.randint(1, 3))),
    )


def test_matcher_agrees_with_matches_on_random_queries() -> None:
    rng = random.Random(1234)
    topics = [(i, parse_query(random_query(rng))) for i in range(400)]
    docs = [random_doc(rng) for _ in range(300)]
    matcher = TopicMatcher(topics)
    total = 0
    for doc in docs:
        expected = {i for i, node in topics if matches(node, doc)}
        assert matcher.match(doc) == expected, doc
        total += len(expected)
    # the table is not trivially empty or full
    assert 0.05 < total / (len(topics) * len(docs)) < 0.6


def test_printed_queries_mean_the_same() -> None:
    rng = random.Random(99)
    docs = [random_doc(rng) for _ in range(60)]
    for _ in range(300):
        node = parse_query(random_query(rng))
        canonical = normalize_query(node)
        for text in (canonical, to_arxiv_search(node)):
            again = parse_query(text)
            assert [matches(again, d) for d in docs] == [matches(node, d) for d in docs], (canonical, text)
        assert normalize_query(parse_query(canonical)) == canonical


@pytest.mark.parametrize(
    ("query", "suggestion"),
    [("cs.ML", "stat.ML"), ("cat:cs.ml AND ti:x", "stat.ML"), ("cat:math.XX", "math."), ("physics.optic", "physics.optics")],
)
def test_a_category_arxiv_does_not_have_is_refused_with_a_suggestion(query: str, suggestion: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    assert "unknown category" in str(info.value) and suggestion in str(info.value)
