"""Papers and their cached summaries."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from bot.models import Paper, Summary, content_from_dict, content_to_dict
from bot.store.base import StoreBase, dumps, loads, now_iso

_PAPER_COLS = (
    "arxiv_id, version, title, authors, abstract, categories, published, updated, abs_url, "
    "pdf_url, comment, journal_ref, doi, affiliations"
)


def paper_from_row(row: Any) -> Paper:
    return Paper(
        arxiv_id=row["arxiv_id"],
        version=row["version"],
        title=row["title"],
        authors=loads(row["authors"], []),
        abstract=row["abstract"],
        categories=loads(row["categories"], []),
        published=datetime.fromisoformat(row["published"]),
        updated=datetime.fromisoformat(row["updated"]),
        abs_url=row["abs_url"],
        pdf_url=row["pdf_url"],
        comment=row["comment"],
        journal_ref=row["journal_ref"],
        doi=row["doi"],
        affiliations=loads(row["affiliations"], []),
    )


class PaperStore(StoreBase):
    async def upsert_paper(self, paper: Paper, announced: date | None = None) -> bool:
        """Store or refresh a paper; return True when it was new or got a newer version.

        A paper's `announced` date is set once, by the first listing that brought it, so a
        replaced version never looks new to the push.
        """
        row = await self.fetchone("SELECT version FROM papers WHERE arxiv_id=?", (paper.arxiv_id,))
        if row is not None and row["version"] > paper.version:
            return False
        await self.execute(
            f"INSERT INTO papers({_PAPER_COLS}, announced, fetched_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(arxiv_id) DO UPDATE SET version=excluded.version, title=excluded.title, "
            "authors=excluded.authors, abstract=excluded.abstract, categories=excluded.categories, "
            "published=excluded.published, updated=excluded.updated, abs_url=excluded.abs_url, "
            "pdf_url=excluded.pdf_url, comment=excluded.comment, journal_ref=excluded.journal_ref, "
            "doi=excluded.doi, fetched_at=excluded.fetched_at, "
            "affiliations=CASE WHEN excluded.affiliations='[]' THEN papers.affiliations ELSE excluded.affiliations END, "
            "announced=COALESCE(papers.announced, excluded.announced) "
            "WHERE excluded.version >= papers.version",
            (
                paper.arxiv_id,
                paper.version,
                paper.title,
                dumps(paper.authors),
                paper.abstract,
                dumps(paper.categories),
                paper.published.isoformat(),
                paper.updated.isoformat(),
                paper.abs_url,
                paper.pdf_url,
                paper.comment,
                paper.journal_ref,
                paper.doi,
                dumps(paper.affiliations),
                announced.isoformat() if announced else None,
                now_iso(),
            ),
        )
        return row is None or row["version"] < paper.version

    async def get_paper(self, arxiv_id: str, version: int | None = None) -> Paper | None:
        row = await self.fetchone(f"SELECT {_PAPER_COLS} FROM papers WHERE arxiv_id=?", (arxiv_id,))
        if row is None or (version is not None and row["version"] != version):
            return None
        return paper_from_row(row)

    async def papers_published_on(self, day: date) -> list[Paper]:
        rows = await self.fetchall(
            f"SELECT {_PAPER_COLS} FROM papers WHERE substr(published, 1, 10)=? ORDER BY published DESC",
            (day.isoformat(),),
        )
        return [paper_from_row(r) for r in rows]

    async def count_papers(self) -> int:
        row = await self.fetchone("SELECT COUNT(*) FROM papers")
        return int(row[0]) if row else 0

    async def get_summary(
        self, paper: Paper, language: str, model: str, prompt_version: str
    ) -> Summary | None:
        row = await self.fetchone(
            "SELECT content, generated_by, full_text_used, created_at, text_retry, stand_in_for FROM summaries "
            "WHERE arxiv_id=? AND version=? AND language=? AND model=? AND prompt_version=?",
            (paper.arxiv_id, paper.version, language, model, prompt_version),
        )
        if row is None:
            return None
        return Summary(
            paper=paper,
            content=content_from_dict(loads(row["content"])),
            language=language,
            generated_by=row["generated_by"],
            full_text_used=bool(row["full_text_used"]),
            prompt_version=prompt_version,
            created_at=datetime.fromisoformat(row["created_at"]),
            text_retry=bool(row["text_retry"]),
            stand_in_for=row["stand_in_for"],
        )

    async def put_summary(self, summary: Summary, model: str) -> None:
        p = summary.paper
        await self.execute(
            "INSERT INTO summaries(arxiv_id, version, language, model, prompt_version, "
            "content, generated_by, full_text_used, created_at, text_retry, stand_in_for) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(arxiv_id, version, language, model, prompt_version) DO UPDATE SET "
            "content=excluded.content, generated_by=excluded.generated_by, "
            "full_text_used=excluded.full_text_used, created_at=excluded.created_at, "
            "text_retry=excluded.text_retry, stand_in_for=excluded.stand_in_for",
            (
                p.arxiv_id,
                p.version,
                summary.language,
                model,
                summary.prompt_version,
                dumps(content_to_dict(summary.content)),
                summary.generated_by,
                int(summary.full_text_used),
                now_iso(),
                int(summary.text_retry),
                summary.stand_in_for,
            ),
        )

    async def clear_summary_text_retry(self, summary: Summary, model: str) -> None:
        """The paper's text will not come (its PDF is bad): keep this summary as it is for good."""
        p = summary.paper
        await self.execute(
            "UPDATE summaries SET text_retry=0 "
            "WHERE arxiv_id=? AND version=? AND language=? AND model=? AND prompt_version=?",
            (p.arxiv_id, p.version, summary.language, model, summary.prompt_version),
        )

    async def count_summaries(self) -> int:
        row = await self.fetchone("SELECT COUNT(*) FROM summaries")
        return int(row[0]) if row else 0
