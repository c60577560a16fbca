"""Benchmark: 10,000 topics against 2,000 papers with TopicMatcher, on one core.

    python bench/matcher.py [--topics N] [--papers N] [--seed S]

Topics and papers are synthetic but shaped like the real thing: a Zipf-like vocabulary of
research words, categories weighted like arXiv's daily volume, and topic queries that mix
categories, title words, phrases, authors, OR groups, ANDNOT and wildcards. It also checks a
sample of papers against the naive `matches` loop, and reports how much faster the index is.
"""

from __future__ import annotations

import argparse
import random
import time

from bot.query import MatchDoc, Node, TopicMatcher, matches, normalize_query, parse_query

CATEGORIES = {  # rough share of daily submissions
    "cs.LG": 30, "cs.CV": 25, "cs.CL": 20, "cs.AI": 18, "stat.ML": 8, "cs.RO": 6, "cs.CR": 5, "eess.IV": 4,
    "eess.SP": 4, "cs.IR": 3, "cs.NE": 2, "cs.DC": 3, "cs.SE": 3, "cs.HC": 3, "math.OC": 4, "math.AP": 4,
    "math.PR": 4, "math.CO": 4, "math.NA": 3, "math.ST": 2, "math.AG": 2, "quant-ph": 10, "hep-th": 6,
    "hep-ph": 6, "gr-qc": 4, "astro-ph.GA": 4, "astro-ph.CO": 3, "astro-ph.SR": 3, "astro-ph.HE": 3,
    "cond-mat.mes-hall": 4, "cond-mat.str-el": 3, "cond-mat.mtrl-sci": 5, "cond-mat.stat-mech": 3,
    "physics.optics": 3, "physics.flu-dyn": 3, "q-bio.NC": 2, "q-bio.QM": 2, "q-fin.ST": 1, "econ.EM": 1,
    "nucl-th": 2, "math-ph": 2,
}
TOPIC_WORDS = """diffusion transformer attention graph neural network reinforcement policy agent language
vision segmentation detection tracking retrieval generation contrastive self-supervised federated privacy
robustness adversarial uncertainty bayesian variational inference sampling optimization convex stochastic
gradient descent kernel gaussian process causal fairness explainability interpretability benchmark dataset
pretraining finetuning distillation quantization pruning sparse mixture experts scaling multimodal speech
audio video 3d point cloud nerf rendering pose depth stereo slam navigation manipulation grasping control
planning trajectory quantum entanglement qubit error correction topological superconductivity magnetic
spin lattice gauge string holography black hole gravitational waves dark matter cosmology galaxy stellar
exoplanet turbulence fluid plasma laser photonic metamaterial graphene semiconductor phase transition
percolation random matrix eigenvalue elliptic parabolic hyperbolic navier stokes schrodinger wave equation
regularity existence uniqueness manifold curvature homology algebraic variety prime zeta combinatorial
hypergraph coloring markov chain mixing time martingale brownian motion portfolio volatility epidemic
protein folding molecule drug genomics neuron spiking cortex memory hallucination reasoning alignment
instruction tuning prompt retrieval-augmented code synthesis program verification compiler cache
scheduling consensus blockchain cryptography homomorphic encryption side-channel malware""".split()
PHRASES = [
    "diffusion model", "large language model", "graph neural network", "reinforcement learning",
    "neural radiance field", "vision transformer", "contrastive learning", "federated learning",
    "quantum error correction", "black hole", "dark matter", "gravitational waves", "phase transition",
    "random matrix", "navier stokes", "mixture of experts", "chain of thought", "point cloud",
    "knowledge distillation", "score matching", "optimal transport", "kernel methods", "monte carlo",
    "in-context learning", "self-supervised learning", "speech recognition", "object detection",
    "semantic segmentation", "topological insulator", "neural operator", "physics-informed neural network",
]
FILLER = """we propose a novel method for the problem of and in with on to show that our results
demonstrate significant improvements over existing approaches this paper study present new framework
based using via under across both experiments model models data learning results performance analysis
efficient robust scalable theoretical empirical state of the art further also which these their can
from by is are be as an at it its provide prove establish obtain show""".split()
FIRST = """Geoffrey Yann Yoshua Ilya Andrej Fei-Fei Kaiming Ross Alexei Pieter Sergey Chelsea Percy Christopher
Dan Jure Michael Max Bernhard Zoubin Tomas Anna Maria Wei Jian Li Xin Yu Hao Chen Olga Ivan Dmitri
Adrian Juan Jose Sofia Lucia Hans Jurgen Bjorn Zoe Amelie Francois Rene Noam Ashish Jakob Lukasz""".split()
LAST = """Hinton LeCun Bengio Sutskever Karpathy Li He Girshick Efros Abbeel Levine Finn Liang Manning Jurafsky
Leskovec Jordan Welling Scholkopf Ghahramani Mikolov Wang Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun
Müller Schmidt Schneider Fischer Weber García Martínez López González Rodríguez Dubois Lefèvre Rossi
Russo Ferrari Novak Kowalski Nowak Petrov Ivanov Smirnov Tanaka Suzuki Sato Kim Lee Park Choi Nguyen
Tran Singh Kumar Sharma Gupta Patel Shazeer Vaswani Uszkoreit Kaiser""".split() + ["Del Maestro", "van der Waals", "de Souza"]


def zipf_choice(rng: random.Random, items: list[str], s: float = 1.1) -> str:
    # Rank r is chosen with weight 1/r^s: a few words are everywhere, most are rare.
    weights = ZIPF_CACHE.setdefault((len(items), s), [1 / (r + 1) ** s for r in range(len(items))])
    return rng.choices(items, weights)[0]


ZIPF_CACHE: dict[tuple[int, float], list[float]] = {}
CATS, CAT_WEIGHTS = list(CATEGORIES), list(CATEGORIES.values())


def make_paper(rng: random.Random) -> MatchDoc:
    # A paper is about a handful of subjects that its title and abstract keep coming back to,
    # and mentions a few other research words in passing.
    subjects = [zipf_choice(rng, TOPIC_WORDS, 0.7) for _ in range(rng.randint(3, 6))]
    phrases = rng.sample(PHRASES, rng.randint(0, 2))

    def words(n: int, subject_share: float) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            r = rng.random()
            if r < subject_share / 5 and phrases:
                out.extend(rng.choice(phrases).split())
            elif r < subject_share:
                out.append(rng.choice(subjects))
            elif r < subject_share + 0.03:
                out.append(rng.choice(TOPIC_WORDS))
            else:
                out.append(rng.choice(FILLER))
        return out

    title = " ".join(words(rng.randint(6, 14), 0.5)).capitalize()
    abstract = " ".join(words(rng.randint(120, 220), 0.2)) + "."
    authors = tuple(f"{rng.choice(FIRST)} {zipf_choice(rng, LAST, 0.8)}" for _ in range(rng.randint(1, 8)))
    cats = list(dict.fromkeys(rng.choices(CATS, CAT_WEIGHTS, k=rng.randint(1, 4))))
    return MatchDoc(title, abstract, authors, tuple(cats))


def make_topic(rng: random.Random) -> str:
    cat = rng.choices(CATS, CAT_WEIGHTS)[0]
    word, other = zipf_choice(rng, TOPIC_WORDS), zipf_choice(rng, TOPIC_WORDS)
    phrase = rng.choice(PHRASES)
    surname = zipf_choice(rng, LAST, 0.8)
    kind = rng.random()
    if kind < 0.25:
        return rng.choice([cat, f"cat:{cat}"])
    if kind < 0.45:
        return rng.choice([f"cat:{cat} AND ti:{word}", f'{cat} ti:"{phrase}"', f"{cat} abs:{word}"])
    if kind < 0.58:
        return rng.choice([f'ti:"{phrase}"', f'abs:"{phrase}"', f'"{phrase}"'])
    if kind < 0.68:
        first = rng.choice(FIRST)
        return rng.choice([f"au:{surname.split()[-1]}", f'au:"{first} {surname}"', f"au:{surname.replace(' ', '_')}"])
    if kind < 0.78:
        return f"{cat} (ti:{word} OR ti:{other} OR abs:\"{phrase}\")"
    if kind < 0.88:
        return " ".join(zipf_choice(rng, TOPIC_WORDS) for _ in range(rng.randint(2, 3)))
    if kind < 0.95:
        return rng.choice([f"cat:{cat} ANDNOT ti:{word}", f"ti:{word} ANDNOT (cat:{cat} OR au:{surname.split()[-1]})"])
    return rng.choice([f"cat:{cat.split('.')[0]} AND ti:{word[:5]}*", f"abs:{word[:4]}* AND ti:{other}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", type=int, default=10_000)
    ap.add_argument("--papers", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=20240506)
    ap.add_argument("--check", type=int, default=100, help="papers to check against the naive loop")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    topics: list[tuple[int, Node]] = [(i, parse_query(make_topic(rng))) for i in range(args.topics)]
    papers = [make_paper(rng) for _ in range(args.papers)]
    t_parse = time.perf_counter() - t0
    distinct = len({normalize_query(n) for _, n in topics})

    t0 = time.perf_counter()
    matcher = TopicMatcher(topics)
    t_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = [matcher.match(p) for p in papers]
    t_match = time.perf_counter() - t0
    pairs = sum(len(r) for r in results)

    sample = papers[: args.check]
    t0 = time.perf_counter()
    naive = [{i for i, n in topics if matches(n, p)} for p in sample]
    t_naive = time.perf_counter() - t0
    if naive != results[: len(sample)]:
        raise SystemExit("MISMATCH: TopicMatcher disagrees with matches()")

    per_paper_naive = t_naive / max(1, len(sample))
    print(f"topics: {len(topics):,} ({distinct:,} distinct queries); papers: {len(papers):,}; seed {args.seed}")
    print(f"generate + parse topics and papers: {t_parse:.2f} s")
    print(f"TopicMatcher build:                 {t_build * 1000:.0f} ms")
    print(f"match all papers:                   {t_match:.2f} s "
          f"({t_match / len(papers) * 1e6:.0f} us per paper, {len(papers) / t_match:,.0f} papers/s)")
    print(f"matches: {pairs:,} (topic, paper) pairs; papers with at least one match: "
          f"{sum(1 for r in results if r):,}; mean {pairs / len(papers):.1f} topics per paper")
    print(f"naive matches() loop on {len(sample)} papers: {t_naive:.2f} s "
          f"(~{per_paper_naive * len(papers):.0f} s for all; index is {per_paper_naive * len(papers) / t_match:.0f}x faster) "
          f"- results agree")


if __name__ == "__main__":
    main()
