"""An offline summarizer: sentences picked from the abstract (and the PDF text when there is one).

It needs no key and no network, so it is the fallback when Gemini fails and the summarizer of
choice without a key. It cannot translate: its content is in the paper's own language.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bot.models import Evidence, Paper, SummaryContent

# Words that end in "." without ending the sentence ("et al. 2020", "Fig. 2", "e.g. this").
_ABBREVIATIONS = frozenset(
    "e.g i.e fig figs eq eqs sec secs tab tabs ref refs vs cf approx resp no nos vol pp ch "
    "dr prof mr ms jr inc ltd corp dept univ thm lem prop def cor alg app appx ca".split()
)
# Every pattern here runs in linear time: a run of dots or a blank page of PDF text must not
# make a search quadratic (a backtracking regex over 20,000 characters takes seconds).
_BOUNDARY = re.compile(
    # The usual: punctuation, closing quotes, whitespace. Possessive and anchored at the start of
    # a run of punctuation, so that a long run of dots is scanned once, not once per dot.
    r"(?<![.!?])[.!?]++[\"'”’)\]]*+(?=\s|$)"
    r"|(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])"  # a missing space: "qualitatively.The code"
    r"|[。！？]+"
)
_INITIALS = re.compile(r"^(?:[A-Za-z]\.)*[A-Za-z]$")  # "J", "U.S"
_URL_HOSTS = (".com", ".org", ".io", ".net")
_CODE_URL = re.compile(r"(?:https?://)?(?:www\.)?(?:github|gitlab)\.com/[\w.-]+/[\w.-]+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]")
_ACRONYM = re.compile(r"\b[A-Z][A-Za-z0-9]*[A-Z][A-Za-z0-9-]*\b")  # SAM, StableSDG, SDXL
_REFERENCES = re.compile(r"^[ \t]*(?:\d+\.?[ \t]*)?(?:references|bibliography)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_NEXT_WORD = re.compile(r"\s*(\S+)")

_STOPWORDS = frozenset(
    """a about above after again against all also although am among an and any are as at be because
    been before being below between both but by can could did do does doing down during each either
    few for from further had has have having he her here hers him his how however i if in into is it
    its itself just may me might more most much must my no nor not now of off on once only or other
    our ours out over own per same she should since so some such than that the their theirs them then
    there these they this those through thus to too under until up upon us very via was we were what
    when where whether which while who whom whose why will with within without would yet you your
    one two three first second third new novel many several various well often""".split()
)
# Words that are frequent in every abstract and say nothing about this one.
_FILLER = frozenset(
    """paper work study propose proposed proposes present presents presented introduce introduces
    show shows shown demonstrate demonstrates result results method methods approach approaches
    based using use used task tasks problem problems performance experiments experimental extensive
    existing previous prior significant significantly effective effectively able achieve achieves
    achieved different including provide provides large data however addition furthermore moreover
    code available project page state-of-the-art art state high low further recent recently""".split()
)

_PROPOSAL = ("we propose", "we present", "we introduce", "this paper", "in this work", "this work",
             "we develop", "this study", "we describe", "this article", "we study", "we investigate")
_FINDING = ("we show", "we demonstrate", "we find", "results", "outperform", "state-of-the-art",
            "achiev", "significantly", "improv", "surpass", "superior")
_CUES: dict[str, tuple[str, ...]] = {
    "prior": ("existing", "previous", "prior ", "conventional", "traditional", "current method",
              "current approach", "recent method", "recent work", "recent approach", "have been proposed",
              "has been proposed", "suffer", "fail", "struggle", "drawback", "limitation", "limited by",
              "however,", "remains challenging", "have investigated"),
    "method": ("we propose", "we introduce", "we present", "we develop", "we design", "we adopt",
               "we use", "we leverage", "we employ", "we apply", "we build", "we align", "we create",
               "we train", "we construct", "we formulate", "we model", "we derive", "we compute",
               "our method", "our approach", "our framework", "our model", "our algorithm", "first,",
               "then,", "finally,", "consists of", "composed of", "module", "framework", "algorithm",
               "architecture", "pipeline", "loss", "which"),
    "results": ("experiment", "results", "outperform", "achiev", "state-of-the-art", "benchmark",
                "accuracy", "evaluat", "improv", "%", "demonstrat", "surpass", "superior",
                "competitive", "we show", "we find", "we observe", "consistently", "find that", "show that",
                "shows that", "indicat"),
    "conclusion": ("in conclusion", "we conclude", "overall", "our results suggest", "these results",
                   "this suggests", "paves the way", "future", "insight", "implication", "we believe",
                   "establish", "contribut", "advance", "potential"),
}

NO_PRIOR_WORK = "The abstract does not discuss prior work."
NO_RESULTS = "The abstract does not state results."


@dataclass(slots=True)
class _Sentence:
    text: str
    index: int  # position within its source
    in_abstract: bool
    words: list[str]  # content words, lower case
    score: float = 0.0


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences without breaking at "et al.", "Fig. 2", "e.g." or "3.5"."""
    text = " ".join(text.split())
    sentences, start = [], 0
    for m in _BOUNDARY.finditer(text):
        if m.end() <= start or not _is_boundary(text, start, m):
            continue
        sentence = text[start : m.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = m.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _is_boundary(text: str, start: int, m: re.Match[str]) -> bool:
    """Whether the punctuation `m` ends the sentence that began at `start`.

    `text` has single spaces only (split_sentences made it so); every look here is bounded by
    one word, so splitting stays linear in the text's length.
    """
    if m.group().startswith(("。", "！", "？")):
        return True
    token = text[max(start, text.rfind(" ", start, m.start()) + 1) : m.start()]
    if "://" in token or token.startswith("www."):
        return False
    after = _NEXT_WORD.match(text, m.end())
    next_word = after.group(1) if after else ""
    if next_word[:1].islower():
        return False
    if m.group().startswith("."):
        bare = token.lstrip("([\"'").lower()
        if bare in _ABBREVIATIONS:
            return False
        # "J. Doe" and "et al. (2020)" go on, but "finite N. The" and "etc. We" end sentences.
        if _INITIALS.match(bare) or bare in ("al", "etc"):
            return bool(next_word) and next_word.lower() in _STOPWORDS
    return True


def has_url(text: str) -> bool:
    """Whether the text holds a web address: http(s)://..., www...., or host.com/... (linear time)."""
    for token in text.split():
        bare = token.lstrip("([\"'<")
        if bare.startswith(("http://", "https://", "www.")):
            return True
        host, slash, _ = bare.partition("/")
        if slash and host.lower().endswith(_URL_HOSTS) and len(host) > 4:
            return True
    return False


def content_words(text: str) -> list[str]:
    return [w for w in (t.lower() for t in _WORD.findall(text)) if w not in _STOPWORDS and len(w) > 2]


def find_code_url(*texts: str | None) -> str | None:
    for text in texts:
        if not text:
            continue
        m = _CODE_URL.search(text)
        if m:
            url = m.group().rstrip(".,;:)")
            return url if url.lower().startswith("http") else "https://" + url
    return None


def _clean_full_text(text: str) -> str:
    references = _REFERENCES.search(text)
    if references is not None and references.start() > 0:
        text = text[: references.start()]
    text = re.sub(r"[\u00ad\ufffe\uffff]", "", text)  # soft hyphens as PDF text extraction leaves them
    return re.sub(r"(\w)-[^\S\n]*\n\s*(\w)", r"\1\2", text)  # words hyphenated across lines


def _full_text_sentences(text: str) -> list[str]:
    """Sentences of PDF text, where a short line (a title, a name, a heading) ends a block."""
    blocks: list[str] = []
    current: list[str] = []
    for line in _clean_full_text(text).splitlines():
        line = line.strip()
        if line:
            current.append(line)
        if current and (not line or len(line) < 40):
            blocks.append(" ".join(current))
            current = []
    blocks.append(" ".join(current))
    return [s for block in blocks for s in split_sentences(block)]


def _is_prose(sentence: str) -> bool:
    """PDF text holds headers, affiliations and table cells; keep only sentences of prose."""
    words = sentence.split()
    low = sentence.lower()
    if not 6 <= len(words) <= 60 or "@" in sentence or "arxiv:" in low or "organized as follows" in low:
        return False
    letters = sum(c.isalpha() for c in sentence)
    capitalized = sum(w[:1].isupper() for w in words)
    return letters > 0.65 * len(sentence) and capitalized < 0.4 * len(words) and sentence[0].isupper()


def _similar(a: _Sentence, b: _Sentence) -> bool:
    sa, sb = set(a.words), set(b.words)
    return bool(sa and sb) and len(sa & sb) / len(sa | sb) > 0.6


def _has(text: str, cues: Iterable[str]) -> int:
    low = text.lower()
    return sum(cue in low for cue in cues)


class ExtractiveSummarizer:
    model_key = "extractive"
    prompt_version = "x2"  # bump when the selection rules change

    async def summarize(self, paper: Paper, language: str, full_text: str | None) -> SummaryContent:
        # Pure CPU work over up to a paper's first pages: in a thread, so the event loop keeps serving.
        return await asyncio.to_thread(self.summarize_sync, paper, full_text)

    def summarize_sync(self, paper: Paper, full_text: str | None = None) -> SummaryContent:
        abstract = [s for s in split_sentences(paper.abstract) if not has_url(s)]
        extra: list[str] = []
        if full_text:
            extra = [s for s in _full_text_sentences(full_text) if _is_prose(s) and not has_url(s)]
        sentences = self._score(paper.title, abstract, extra)
        ab = [s for s in sentences if s.in_abstract]
        ft = [s for s in sentences if not s.in_abstract]

        summary = max(ab or ft, key=self._summary_score, default=None)
        labels = self._label(ab)
        by_label: dict[str, list[_Sentence]] = {k: [s for s in ab if labels[s.index] == k] for k in _CUES}
        by_label["background"] = [s for s in ab if labels[s.index] == "background"]
        if not by_label["conclusion"] and len(by_label["results"]) > 1:
            by_label["conclusion"] = [by_label["results"].pop()]  # an abstract's last result is its conclusion
        # The PDF's introduction usually says what earlier work did and where it falls short.
        ft_labels = self._label(ft)
        for label in ("prior", "results"):
            if not by_label[label]:
                by_label[label] = [s for s in ft if ft_labels[s.index] == label][:2]

        def text_of(label: str) -> str:
            return " ".join(s.text for s in by_label[label])

        first = ab[0].text if ab else (summary.text if summary else paper.title)
        last = ab[-1].text if ab else first
        method = [s.text for s in by_label["method"]][:6] or [summary.text if summary else first]
        takeaways = self._takeaways(paper, ab, ft)
        return SummaryContent(
            title_translated=paper.title,
            summary=summary.text if summary else paper.title,
            key_takeaways=takeaways,
            # Each takeaway is a passage of the paper, so it is its own quote (checked like any other).
            evidence=[Evidence(t, False) for t in takeaways],
            keywords=self._keywords(paper, full_text),
            background=text_of("background") or first,
            prior_work=text_of("prior") or NO_PRIOR_WORK,
            method=method,
            results=text_of("results") or NO_RESULTS,
            conclusion=text_of("conclusion") or last,
            affiliations=list(paper.affiliations),
            code_url=find_code_url(paper.abstract, paper.comment, full_text),
        )

    @staticmethod
    def _score(title: str, abstract: list[str], extra: list[str]) -> list[_Sentence]:
        sentences = [_Sentence(t, i, True, content_words(t)) for i, t in enumerate(abstract)]
        for i, t in enumerate(extra):
            candidate = _Sentence(t, i, False, content_words(t))
            # The first page repeats the abstract; keep one copy.
            if not any(_similar(candidate, s) for s in sentences):
                sentences.append(candidate)
        tf: Counter[str] = Counter()
        for s in sentences:
            tf.update({w: 2 if s.in_abstract else 1 for w in set(s.words)})
        tf.update({w: 3 for w in content_words(title)})
        top = max(tf.values(), default=1)
        n = max(len(abstract), 1)
        for s in sentences:
            unique = set(s.words)
            base = sum(tf[w] / top for w in unique) / math.sqrt(len(unique)) if unique else 0.0
            cue = 0.6 * bool(_has(s.text, _PROPOSAL)) + 0.6 * bool(_has(s.text, _FINDING))
            position = 0.2 if s.in_abstract and s.index in (0, n - 1) else 0.0
            length = len(s.text.split())
            fit = 0.3 if length < 6 else 0.6 if length > 60 else 1.0
            s.score = (base + cue + position) * fit * (1.0 if s.in_abstract else 0.7)
        return sentences

    @staticmethod
    def _summary_score(s: _Sentence) -> float:
        return s.score + 1.5 * bool(_has(s.text, _PROPOSAL))

    @staticmethod
    def _label(sentences: list[_Sentence]) -> dict[int, str]:
        """One section per sentence, by cue phrases; position settles what cues leave open."""
        first_method = next((s.index for s in sentences if _has(s.text, _PROPOSAL)), None)
        labels: dict[int, str] = {}
        for s in sentences:
            hits = {label: _has(s.text, cues) for label, cues in _CUES.items()}
            if first_method is not None and s.index < first_method:
                # Before the paper says what it does, it sets the scene or criticizes earlier work.
                labels[s.index] = "prior" if hits["prior"] else "background"
                continue
            if first_method is not None:
                hits["prior"] = 0  # "outperforms existing methods" is a result, not prior work
            best = max(hits, key=lambda k: (hits[k], k == "results"))
            labels[s.index] = best if hits[best] else "method"
        return labels

    @staticmethod
    def _takeaways(paper: Paper, ab: list[_Sentence], ft: list[_Sentence]) -> list[str]:
        want = min(8, max(3, round(len(ab) * 0.6)))
        ranked = sorted(ab, key=lambda s: -s.score)[:want]
        if len(ranked) < 3:
            ranked += sorted(ft, key=lambda s: -s.score)[: 3 - len(ranked)]
        ranked.sort(key=lambda s: (not s.in_abstract, s.index))
        items = [s.text for s in ranked]
        if len(items) < 3:
            # A one- or two-sentence abstract: its clauses, then the paper's own metadata.
            clauses = [c.strip() for t in items for c in re.split(r";\s+|:\s+", t)]
            if len([c for c in clauses if len(c.split()) >= 4]) >= 3:
                items = [c for c in clauses if len(c.split()) >= 4]
            for fact in (
                f"Authors: {', '.join(paper.authors)}" if paper.authors else "",
                f"Categories: {', '.join(paper.categories)}" if paper.categories else "",
                f"Comment: {paper.comment}" if paper.comment else "",
                f"Title: {paper.title}",
            ):
                if len(items) < 3 and fact:
                    items.append(fact)
        return items[:8]

    @staticmethod
    def _keywords(paper: Paper, full_text: str | None) -> list[str]:
        body = f"{paper.title}. {paper.title}. {paper.abstract}"
        if full_text:
            body += " " + _clean_full_text(full_text)[:20000]
        chosen: list[str] = []
        # The method's own name (an acronym or CamelCase word in the title) first.
        for token in _ACRONYM.findall(paper.title):
            if token not in chosen and len(token) <= 20:
                chosen.append(token)
        words = [w for w in content_words(body) if w not in _FILLER and not w.isdigit()]
        pairs: Counter[str] = Counter()
        for sentence in split_sentences(body):
            tokens = [t.lower() for t in _WORD.findall(sentence)]
            for a, b in zip(tokens, tokens[1:]):
                if all(t not in _STOPWORDS and t not in _FILLER and len(t) > 2 for t in (a, b)):
                    pairs[f"{a} {b}"] += 1
        for pair, count in pairs.most_common():
            if count < 2 or len(chosen) >= 4:
                break
            chosen.append(pair)
        covered = {w for phrase in chosen for w in phrase.lower().split()}
        for word, _ in Counter(words).most_common():
            if len(chosen) >= 6:
                break
            if word not in covered:
                chosen.append(word)
                covered.add(word)
        return chosen
