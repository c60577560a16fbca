"""Why a pushed paper reached a chat: the chat's topics that match it, and the terms that matched."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.models import MatchReason, Paper, Topic
from bot.query import MatchDoc, QuerySyntaxError, matched_terms, parse_query


def match_reasons(paper: Paper, queries: Iterable[str], topics: Sequence[Topic]) -> list[MatchReason]:
    """One MatchReason per query (in the order given) that matched the paper.

    `queries` are the delivery ledger's `topic_query` lines; `topics` the chat's topics, which
    give each query its id (None when the chat has since removed it). A query that no longer
    parses is named without terms.
    """
    ids = {t.query: t.id for t in topics}
    doc = MatchDoc.of(paper)
    out = []
    for query in queries:
        query = query.strip()
        if not query:
            continue
        try:
            terms = tuple(matched_terms(parse_query(query), doc))
        except QuerySyntaxError:
            terms = ()
        out.append(MatchReason(ids.get(query), query, terms))
    return out
