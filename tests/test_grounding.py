"""The grounding checker on two real arXiv papers (tests/fixtures/pdf), their text extracted by the
project's own code: hand-made faithful summaries pass, every kind of corruption is flagged.

`python -m tests.test_grounding` prints the table of scores that docs/grounding.md shows.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest

from bot.grounding import MATCH_THRESHOLD, PaperText, find_quote, ground, normalize, unsupported_numbers
from bot.models import Evidence, Paper, Summary, SummaryContent, content_from_dict, content_to_dict
from bot.pdf import extract_text
from bot.summarize.extractive import split_sentences

PDFS = Path(__file__).parent / "fixtures" / "pdf"
BUDGET = 6000 * 4  # what PdfService.first_pages_text reads by default


def _paper(arxiv_id: str, title: str, abstract: str) -> Paper:
    now = datetime(2022, 3, 1, tzinfo=UTC)
    return Paper(arxiv_id, 2, title, ["A. Author"], abstract, ["cs.CL"], now, now, f"https://arxiv.org/abs/{arxiv_id}v2")


TABLEFORMER = _paper(
    "2203.00274",
    "TableFormer: Robust Transformer Modeling for Table-Text Encoding",
    "Understanding tables is an important aspect of natural language understanding. Existing models for table "
    "understanding require linearization of the table structure, where row or column order is encoded as an "
    "unwanted bias. Such spurious biases make the model vulnerable to row and column order perturbations. "
    "Additionally, prior work has not thoroughly modeled the table structures or table-text alignments, hindering "
    "the table-text understanding ability. In this work, we propose a robust and structurally aware table-text "
    "encoding architecture TableFormer, where tabular structural biases are incorporated completely through "
    "learnable attention biases. TableFormer is (1) strictly invariant to row and column orders, and, (2) could "
    "understand tables better due to its tabular inductive biases. Our evaluations showed that TableFormer "
    "outperforms strong baselines in all settings on SQA, WTQ and TabFact table reasoning datasets, and achieves "
    "state-of-the-art performance on SQA, especially when facing answer-invariant row and column order "
    "perturbations (6% improvement over the best baseline), because previous SOTA models' performance drops by "
    "4% - 6% when facing such perturbations while TableFormer is not affected.",
)
BETHE = _paper(
    "1111.2011",
    "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large Connectivity Limit",
    "Theoretical description of anisotropic systems, such as layered superconductors and coupled spin chains, is "
    "often a challenge due to the different natures of interactions along different directions. As a model of such "
    "a system, we present an analytical study of d-dimensional \"nodes\" arranged as the vertices of a Bethe "
    "lattice, where each node has nonzero spatial dimension and is described by an O(N) quantum rotor model, and "
    "there is hopping between neighboring nodes. We calculate critical exponents and find that the internode "
    "hopping reduces the upper and lower critical dimensions each by one.",
)


@cache
def pdf_text(name: str) -> str:
    return extract_text(PDFS / name, BUDGET)


def tableformer_text() -> str:
    return pdf_text("2203.00274v2_tableformer.pdf")


def bethe_text() -> str:
    return pdf_text("1111.2011v2.pdf")


# Faithful summaries, written as a careful reader would, quoting what the PDF shows (typographic
# quotes, words that the PDF hyphenates across lines, table rows, text from page 2 on).
TF_FAITHFUL = SummaryContent(
    title_translated="TableFormer: Robust Transformer Modeling for Table-Text Encoding",
    summary="TableFormer encodes tables with learnable attention biases, so it is invariant to row and column order.",
    key_takeaways=[
        "TableFormer is strictly invariant to row and column orders.",
        "Previous state-of-the-art models drop by 4%–6% under row and column perturbations; TableFormer does not.",
        "TableFormer improves by 6% over the best baseline under answer-invariant perturbations on SQA.",
        "TAPAS-large's predictions change for 15.1% of questions after perturbation, TableFormer-large's for 0.1%.",
        "Linearizing tables with row and column ids introduces spurious order biases.",
    ],
    keywords=["tables", "transformer"],
    background="Table-text understanding.",
    prior_work="TAPAS linearizes tables.",
    method=["Add attention biases."],
    results="On SQA, TableFormer-large (inter) reaches 72.4 ALL accuracy versus 70.6 for TAPAS-large (inter).",
    conclusion="Structural biases help.",
    evidence=[
        Evidence("TableFormer is (1) strictly invariant to row and column orders", False),
        Evidence("previous SOTA models’ performance drops by 4% - 6% when facing such perturbations while "
                 "TABLEFORMER is not affected.", False),
        Evidence("achieves state-of-the-art performance on SQA, especially when facing answer-invariant row and "
                 "column order perturbations (6% improvement over the best baseline)", False),
        Evidence("TAPASLARGE 66.8 39.9 – 60.5 15.1% TABLEFORMERLARGE 70.3 44.8 – 70.3 0.1%", False),
        Evidence("Due to the usage of row/column ids and global position ids, prior strategies to linear-\n"
                 "ize table structures introduced spurious row and column order biases", False),
    ],
)
BETHE_FAITHFUL = SummaryContent(
    title_translated="贝特晶格上扩展节点的量子临界性",
    summary="研究在大连通度极限下，贝特晶格上 d 维节点的量子相变。",
    key_takeaways=[
        "节点间跳跃使上、下临界维度各降低 1。",
        "每个节点由 O(N) 量子转子模型描述。",
        "贝特晶格自 1935 年引入以来在统计力学中地位特殊。",
        "在 z = 2d 时，贝特晶格与超立方晶格的低温展开前两阶相同。",
        "在铁基超导体中，层间耦合不能忽略。",
        "层间相互作用必须考虑，但可以用比层内更简单的方式处理。",
    ],
    keywords=["贝特晶格"],
    background="各向异性系统。",
    prior_work="动力学平均场理论。",
    method=["自洽有效作用。"],
    results="临界维度各降低 1。",
    conclusion="大量节点间耦合相当于增加一个维度。",
    evidence=[
        Evidence("the internode hopping reduces the upper and lower critical dimensions each by one", False),
        Evidence("each node has nonzero spatial dimension and is described by an O(N) quantum rotor model", False),
        Evidence("Since its introduction in 1935, the Bethe lattice has played a distinguished role in statistical "
                 "mechanics and many body physics.", False),
        Evidence("the results are identical for a (hyper)cubic lattice in d dimensions and for a Bethe lattice "
                 "with connectivity z = 2d.", False),
        # The PDF has a footnote mark and a typo here ("superconductors1 , such an extreme decopuling").
        Evidence("In the recently discovered iron pnictide and chalcogenide superconductors, such an extreme "
                 "decoupling makes less sense.", False),
        Evidence("In this case the interlayer interactions must be taken into account, although they can "
                 "generally be treated on some simpler footing than those within a plane.", False),
    ],
)


@dataclass(frozen=True)
class Case:
    name: str
    paper: Paper
    text: str | None
    content: SummaryContent
    faithful: bool
    flagged_takeaway: int | None = None  # the takeaway whose quote must be unverified
    flagged_number: str | None = None  # the number that must be reported


def _with_quote(content: SummaryContent, index: int, quote: str) -> SummaryContent:
    evidence = list(content.evidence or [])
    evidence[index] = Evidence(quote, False)
    return replace(content, evidence=evidence)


def _with_takeaway(content: SummaryContent, index: int, takeaway: str) -> SummaryContent:
    takeaways = list(content.key_takeaways)
    takeaways[index] = takeaway
    return replace(content, key_takeaways=takeaways)


def cases() -> list[Case]:
    tf, be = tableformer_text(), bethe_text()
    return [
        Case("TableFormer, faithful", TABLEFORMER, tf, TF_FAITHFUL, True),
        Case("Bethe lattice, faithful (Chinese summary, English quotes)", BETHE, be, BETHE_FAITHFUL, True),
        Case("TableFormer, a number changed (6% -> 9%)", TABLEFORMER, tf,
             _with_takeaway(TF_FAITHFUL, 2, "TableFormer improves by 9% over the best baseline on SQA."),
             False, flagged_number="9%"),
        Case("TableFormer, a table value changed (72.4 -> 74.2)", TABLEFORMER, tf,
             replace(TF_FAITHFUL, results="On SQA, TableFormer-large (inter) reaches 74.2 ALL accuracy."),
             False, flagged_number="74.2"),
        Case("Bethe lattice, a year changed (1935 -> 1925)", BETHE, be,
             _with_takeaway(BETHE_FAITHFUL, 2, "贝特晶格自 1925 年引入以来在统计力学中地位特殊。"),
             False, flagged_number="1925"),
        Case("TableFormer, a passage paraphrased", TABLEFORMER, tf,
             _with_quote(TF_FAITHFUL, 0, "The TableFormer model does not change its output when the rows or the "
                                         "columns of a table are shuffled."),
             False, flagged_takeaway=0),
        Case("Bethe lattice, a passage paraphrased", BETHE, be,
             _with_quote(BETHE_FAITHFUL, 0, "hopping between the nodes lowers both critical dimensions by one"),
             False, flagged_takeaway=0),
        Case("Bethe lattice, a passage lightly reworded (a few words changed)", BETHE, be,
             _with_quote(BETHE_FAITHFUL, 5, "In this case interactions between the layers must be taken into "
                                         "account, although they can usually be treated more simply than those "
                                         "within a plane."),
             False, flagged_takeaway=5),
        Case("TableFormer, a passage from the other paper", TABLEFORMER, tf,
             _with_quote(TF_FAITHFUL, 4, BETHE_FAITHFUL.evidence[0].quote or ""),  # type: ignore[index]
             False, flagged_takeaway=4),
        Case("Bethe lattice, a passage from the other paper", BETHE, be,
             _with_quote(BETHE_FAITHFUL, 1, TF_FAITHFUL.evidence[2].quote or ""),  # type: ignore[index]
             False, flagged_takeaway=1),
        Case("TableFormer, a number only in an extracted table (Table 1 on p. 5: 14.3%)",
             TABLEFORMER, tf,
             replace(TF_FAITHFUL, results="TAPAS-base (inter) changes 14.3% of its predictions after perturbation."),
             True),
        Case("TableFormer, a number only in a table that was not extracted (Table 4 on p. 7: +0.005M)",
             TABLEFORMER, tf,
             replace(TF_FAITHFUL, results="TableFormer-large adds only 0.005M parameters to TAPAS-large."),
             False, flagged_number="0.005M"),
        Case("TableFormer, a number only in the PDF, but no PDF text (abstract only)", TABLEFORMER, None,
             replace(TF_FAITHFUL, evidence=TF_FAITHFUL.evidence[:3],  # type: ignore[index]
                     key_takeaways=TF_FAITHFUL.key_takeaways[:3]),
             False, flagged_number="72.4, 70.6"),
    ]


def check(case: Case) -> SummaryContent:
    return ground(case.content, case.paper, case.text)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_checker_passes_faithful_and_flags_corrupted(case: Case) -> None:
    got = check(case)
    evidence = got.evidence_for_takeaways()
    assert len(evidence) == len(case.content.key_takeaways)
    if case.faithful:
        assert all(e.verified for e in evidence), [(e.quote, e.verified) for e in evidence]
        assert got.unsupported_numbers == []
        return
    if case.flagged_takeaway is not None:
        assert not evidence[case.flagged_takeaway].verified
        assert [i for i, e in enumerate(evidence) if not e.verified] == [case.flagged_takeaway]
    if case.flagged_number is not None:
        assert got.unsupported_numbers == case.flagged_number.split(", ")
    else:
        assert got.unsupported_numbers == []


def test_pages_are_recorded_for_quotes_from_the_pdf() -> None:
    got = ground(TF_FAITHFUL, TABLEFORMER, tableformer_text())
    pages = [e.page for e in got.evidence_for_takeaways()]
    # Abstract quotes are found in the abstract (no page); Table 1 is on page 5, the linearization
    # sentence on page 1's second column... after the abstract; both come from the PDF.
    assert pages[0] is None and pages[1] is None and pages[2] is None
    assert pages[3] == 5
    assert pages[4] is not None and pages[4] <= 2


def test_normalisation_forgives_what_pdf_extraction_does() -> None:
    assert normalize("Ef\ufb01cient self-\nsupervised “learning” — 10–20") == normalize(
        'efficient selfsupervised "learning" - 10-20'
    )
    assert normalize("word , word .") == "word, word."


def test_a_short_quote_proves_nothing() -> None:
    text = PaperText.of(TABLEFORMER, tableformer_text())
    assert find_quote("we propose a", text).score == 100.0
    assert not find_quote("we propose a", text).found


def test_a_quote_from_a_chinese_paper_is_found_and_a_short_one_is_not() -> None:
    """Chinese and Japanese write no spaces: counted by words a whole sentence was one "word", so a
    verbatim quote of a Chinese paper could never be found."""
    paper = _paper("2401.00002", "基于扩散模型的钢材表面缺陷图像生成",
                   "钢材表面缺陷识别是一个具有重要工业价值的问题。数据不足是训练鲁棒缺陷识别网络的主要挑战。"
                   "我们提出了一种将稳定扩散模型迁移到钢材缺陷图像生成的方法。")
    text = PaperText.of(paper, None)
    assert find_quote("数据不足是训练鲁棒缺陷识别网络的主要挑战。", text).found
    assert not find_quote("我们提出", text).found  # four characters prove nothing, like "we propose a"
    assert not find_quote("数据充足是训练轻量分类网络的次要问题。", text).found


@pytest.mark.parametrize(
    ("written", "paper", "supported"),
    [
        ("97.3%", "reaches 97.3 on the test set", True),
        ("97.3%", "reaches 97.30% on the test set", True),
        ("97.3%", "reaches 97.8% on the test set", False),
        ("12,345 images", "a set of 12345 images", True),
        ("12345 images", "a set of 12,345 images", True),
        ("12,345 images", "a set of 12\u2009345 images", True),
        ("1.5k images", "about 1,500 images", True),
        ("1,500 images", "about 1.5K images", True),
        ("2.5k images", "about 1,500 images", False),
        ("a 3× speed-up", "3x faster", True),
        ("a 3x speed-up", "three times faster", False),
        ("from 10–20 layers", "between 10 and 20 layers", True),
        ("from 10-30 layers", "between 10 and 20 layers", False),
        ("a drop of −0.5 points", "a drop of -0.5", True),
        ("ResNet-50 features", "we use ResNet50", True),
        ("the GPT-4 baseline", "GPT-3 and GPT-3.5", False),
        ("0.95 AUC", "AUC of .95", True),
        ("7B parameters", "a 7B model", True),
    ],
)
def test_numbers_in_equivalent_forms(written: str, paper: str, supported: bool) -> None:
    flagged = unsupported_numbers([written], paper)
    assert (flagged == []) is supported, flagged


def test_words_with_digits_are_not_numbers_of_the_summary() -> None:
    # "F1" and "L2" are names, not claims; a bare number is.
    assert unsupported_numbers(["F1 and L2 regularization, 42 runs"], "nothing here") == ["42"]


@pytest.mark.parametrize(
    ("written", "paper", "flagged"),
    [
        # A number that is in the text only inside another number is not in the text.
        ("reaches 97.3%", "reaches 197.3 points", ["97.3%"]),
        ("on 1,000 images", "on 11,000 images", ["1,000"]),
        ("on 1000 images", "on 1,000 images", []),
        ("by 12 points", "by 12.5 points", ["12"]),
        ("by 0.5", "arXiv:2405.01872", ["0.5"]),
        ("a 3x speed-up", "a ×3 speed-up", []),
        ("a drop of −0.5", "a drop of 0.5", []),  # the sign is not compared (docs/grounding.md)
        # Tables give a share as a fraction, summaries as a percentage.
        ("an AUC of 95.1%", "AUC 0.951 on the test set", []),
        ("an AUC of 95.1%", "AUC 0.915 on the test set", ["95.1%"]),
        # A learning rate is one number, not a 1 and a 4 that any paper holds.
        ("a learning rate of 1e-4", "a learning rate of 1e-5 with 4 layers on 1 GPU", ["1e-4"]),
        ("a learning rate of 3e-4", "we use 1e-4 and 3 seeds", ["3e-4"]),
        ("a learning rate of 1e-4", "a learning rate of 0.0001", []),
        ("a learning rate of 0.0001", "a learning rate of 1e-4", []),
        ("a learning rate of 1E−4", "a learning rate of 1e-4", []),
        # PDF extraction loses superscripts: 10^{-4} arrives as "10−4" or "10-4".
        ("a learning rate of 1e-4", "a learning rate of 10−4", []),
        ("a learning rate of 10^-4", "a learning rate of 10-4", []),
        ("a learning rate of 10⁻⁴", "a learning rate of 10−4", []),
        ("a learning rate of 2×10^-5", "a learning rate of 2 × 10−5", []),
        ("a learning rate of 2×10^-5", "a learning rate of 3 × 10−5 and 2 runs", ["2×10^-5"]),
        ("10^6 samples", "1,000,000 samples", []),
        ("10^{6} samples", "1.5 × 106 samples", ["10^{6}"]),
        ("1.5×10^6 samples", "1.5 × 106 samples", []),
    ],
)
def test_numbers_in_scientific_notation_are_one_number(written: str, paper: str, flagged: list[str]) -> None:
    assert unsupported_numbers([written], paper) == flagged


@pytest.mark.parametrize(
    ("written", "paper", "flagged"),
    [
        # Chinese and Japanese write numbers against the characters around them: no space, and
        # every CJK character is a word character to `re`.
        ("该方法准确率为97.3%，比基线高12倍", "accuracy of 97.3% and a 12x gain", []),
        ("该方法准确率为97.8%，比基线高15倍", "accuracy of 97.3% and a 12x gain", ["97.8%", "15倍"]),
        ("モデルは97.3%の精度を達成", "reaches 97.3%", []),
        ("モデルは98.1%の精度を達成", "reaches 97.3%", ["98.1%"]),
        ("使用了1.5万张图像", "we use 15,000 images", []),
        ("使用了2万张图像", "we use 15,000 images", ["2万"]),
        ("参数量为7亿", "a model of 700M parameters", []),
        # Latin words glued to digits stay names, as in English text.
        ("基于ResNet50和GPT4", "nothing", []),
    ],
)
def test_numbers_of_a_chinese_or_japanese_summary_are_checked(written: str, paper: str, flagged: list[str]) -> None:
    assert unsupported_numbers([written], paper) == flagged


def test_stored_json_without_evidence_loads_as_unverified() -> None:
    stored = content_to_dict(TF_FAITHFUL)
    del stored["evidence"], stored["unsupported_numbers"]
    content = content_from_dict(stored)
    assert content.evidence is None and content.unsupported_numbers is None
    summary = Summary(TABLEFORMER, content, "en", "gemini:old")
    js = summary.to_json()
    assert js["evidence"] == [{"quote": None, "verified": False, "page": None}] * 5
    assert js["unsupported_numbers"] == []
    # And a grounded one survives the round trip.
    grounded = ground(TF_FAITHFUL, TABLEFORMER, tableformer_text())
    assert content_from_dict(content_to_dict(grounded)) == grounded


def scores_table() -> str:
    """The markdown table of docs/grounding.md: each case, the best score of each quote, the verdict."""
    rows = ["| case | quote scores (partial_ratio) | unverified takeaways | unsupported numbers | verdict |",
            "|---|---|---|---|---|"]
    for case in cases():
        text = PaperText.of(case.paper, case.text)
        scores = [find_quote(e.quote or "", text).score for e in case.content.evidence or []]
        got = check(case)
        unverified = [i + 1 for i, e in enumerate(got.evidence_for_takeaways()) if not e.verified]
        flagged = bool(unverified or got.unsupported_numbers)
        verdict = "passes" if not flagged else "flagged"
        expected = "ok" if flagged != case.faithful else "WRONG"
        rows.append(
            f"| {case.name} | {', '.join(f'{s:.0f}' for s in scores)} | {unverified or '-'} | "
            f"{', '.join(got.unsupported_numbers or []) or '-'} | {verdict} ({expected}) |"
        )
    return "\n".join(rows) + f"\n\nThreshold: {MATCH_THRESHOLD:.0f}."


def perturbed_quotes(seed: int = 1, per_paper: int = 60) -> dict[str, list[float]]:
    """Best scores of sentences of each fixture paper as quotes of it: verbatim, with words replaced
    or dropped, and sentences of the other paper. The evidence for MATCH_THRESHOLD."""
    rng = random.Random(seed)
    papers = [(TABLEFORMER, tableformer_text()), (BETHE, bethe_text())]

    def sentences(t: str) -> list[str]:
        return [s for s in split_sentences(t.replace("\f", " ")) if 8 <= len(s.split()) <= 50]

    scores: dict[str, list[float]] = {}
    for i, (paper, raw) in enumerate(papers):
        text = PaperText.of(paper, raw)
        own, other = sentences(raw), sentences(papers[1 - i][1])
        sample = rng.sample(own, min(per_paper, len(own)))
        vocab = [w for s in own for w in s.split()]

        def replaced(s: str, k: int) -> str:
            words = s.split()
            for j in rng.sample(range(len(words)), k):
                words[j] = rng.choice(vocab)
            return " ".join(words)

        def dropped(s: str) -> str:
            words = s.split()
            del words[rng.randrange(len(words))]
            return " ".join(words)

        cases = {
            "verbatim sentence": sample,
            "1 word replaced": [replaced(s, 1) for s in sample],
            "1 word dropped": [dropped(s) for s in sample],
            "3 words replaced": [replaced(s, 3) for s in sample],
            "a quarter of the words replaced": [replaced(s, max(1, len(s.split()) // 4)) for s in sample],
            "sentence of the other paper": rng.sample(other, min(per_paper, len(other))),
        }
        for name, quotes in cases.items():
            scores.setdefault(name, []).extend(find_quote(q, text).score for q in quotes)
    return scores


def test_threshold_separates_quotes_from_rewrites_and_other_papers() -> None:
    scores = perturbed_quotes()

    def found(name: str) -> float:
        return sum(s >= MATCH_THRESHOLD for s in scores[name]) / len(scores[name])

    assert found("verbatim sentence") == 1.0
    assert found("1 word replaced") >= 0.9 and found("1 word dropped") >= 0.9
    assert found("a quarter of the words replaced") <= 0.05
    assert max(scores["sentence of the other paper"]) < 75


def perturbation_table() -> str:
    rows = ["| quote | n | min | median | max | found (>= threshold) |", "|---|---|---|---|---|---|"]
    for name, s in perturbed_quotes().items():
        share = sum(x >= MATCH_THRESHOLD for x in s) / len(s)
        rows.append(f"| {name} | {len(s)} | {min(s):.0f} | {statistics.median(s):.0f} | {max(s):.0f} | {share:.0%} |")
    return "\n".join(rows)


@pytest.mark.parametrize(("paper", "name"), [(TABLEFORMER, "2203.00274v2_tableformer.pdf"), (BETHE, "1111.2011v2.pdf")])
def test_extractive_takeaways_are_their_own_verified_quotes(paper: Paper, name: str) -> None:
    from bot.summarize.extractive import ExtractiveSummarizer

    text = pdf_text(name)
    content = ground(ExtractiveSummarizer().summarize_sync(paper, text), paper, text)
    assert [e.quote for e in content.evidence_for_takeaways()] == content.key_takeaways
    assert all(e.verified for e in content.evidence_for_takeaways())
    assert content.unsupported_numbers == []


def _main() -> None:
    print(scores_table())
    print()
    print(perturbation_table())


if __name__ == "__main__":
    _main()


def _garbled(text: str, every: int) -> str:
    """`text` with one character in `every` dropped: extraction noise that defeats an exact find."""
    return "".join(ch for i, ch in enumerate(text) if i % every != every // 2)


def test_a_long_quote_is_checked_fast_and_right() -> None:
    """A hostile model's 10,000-character quote against a 500 KB text: partial_ratio alone took 40 s."""
    rng = random.Random(7)
    words = tableformer_text().split()
    pages = ["\f".join(" ".join(rng.choice(words) for _ in range(4500)) for _ in range(20))]
    text = PaperText.of(TABLEFORMER, pages[0])
    assert len(text.joined) > 500_000
    inside = text.joined[300_000:310_000]  # 10,000 characters, then garbled to 9,950
    made_up = " ".join(rng.choice(words) for _ in range(1500))[:10_000]
    started = time.perf_counter()
    near = find_quote(_garbled(inside, 200), text)
    far = find_quote(made_up, text)
    short = find_quote(_garbled(text.joined[123_456:124_056], 100), text)
    elapsed = time.perf_counter() - started
    assert near.found and near.score >= MATCH_THRESHOLD and near.page is not None
    assert short.found
    assert not far.found and far.score < MATCH_THRESHOLD
    assert elapsed < 3.0, elapsed


def test_a_quote_running_past_the_end_of_the_text_is_not_found() -> None:
    text = PaperText.of(TABLEFORMER, tableformer_text())
    tail = text.joined[-1000:] + " " + " ".join(["and then the paper goes on about something else"] * 40)
    assert not find_quote(tail, text).found
    assert find_quote(_garbled(text.joined[-1000:], 150), text).found
