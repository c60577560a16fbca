"""Versioned schema migrations, applied in order at start. Never edit a released step: add one."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "papers, summaries, chats, topics, subscriptions, matches, deliveries",
        """
        CREATE TABLE papers (
            arxiv_id     TEXT PRIMARY KEY,          -- base id without version
            version      INTEGER NOT NULL,
            title        TEXT NOT NULL,
            authors      TEXT NOT NULL,             -- JSON list
            abstract     TEXT NOT NULL,
            categories   TEXT NOT NULL,             -- JSON list, primary first
            published    TEXT NOT NULL,             -- first version, ISO 8601 UTC
            updated      TEXT NOT NULL,
            abs_url      TEXT NOT NULL,
            pdf_url      TEXT,
            comment      TEXT,
            journal_ref  TEXT,
            doi          TEXT,
            affiliations TEXT NOT NULL DEFAULT '[]',
            announced    TEXT,                      -- ISO date of the listing that brought it
            fetched_at   TEXT NOT NULL
        );
        CREATE INDEX papers_published ON papers(published);
        CREATE INDEX papers_announced ON papers(announced);

        CREATE TABLE summaries (
            arxiv_id       TEXT NOT NULL,
            version        INTEGER NOT NULL,
            language       TEXT NOT NULL,
            model          TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            content        TEXT NOT NULL,           -- JSON of SummaryContent
            generated_by   TEXT NOT NULL,
            full_text_used INTEGER NOT NULL DEFAULT 0,
            created_at     TEXT NOT NULL,
            PRIMARY KEY (arxiv_id, version, language, model, prompt_version)
        );

        CREATE TABLE chats (
            id          INTEGER PRIMARY KEY,
            platform    TEXT NOT NULL,
            chat_id     TEXT NOT NULL,
            kind        TEXT NOT NULL,
            title       TEXT NOT NULL DEFAULT '',
            language    TEXT NOT NULL,
            timezone    TEXT NOT NULL,
            push_time   TEXT NOT NULL,
            max_papers  INTEGER NOT NULL DEFAULT 10,
            active      INTEGER NOT NULL DEFAULT 1,
            created_at  TEXT NOT NULL,
            last_pushed TEXT,                       -- ISO date of the last announcement pushed
            UNIQUE (platform, chat_id)
        );

        -- One row per distinct query: matching cost grows with queries, not with chats.
        CREATE TABLE topics (
            id         INTEGER PRIMARY KEY,
            query      TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );

        -- A chat's topic; its id is the one users see and unsubscribe by.
        CREATE TABLE subscriptions (
            id         INTEGER PRIMARY KEY,
            chat_pk    INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            topic_id   INTEGER NOT NULL REFERENCES topics(id),
            created_at TEXT NOT NULL,
            since      TEXT,                        -- first announcement date it receives
            UNIQUE (chat_pk, topic_id)
        );

        CREATE TABLE matches (
            topic_id  INTEGER NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
            arxiv_id  TEXT NOT NULL REFERENCES papers(arxiv_id),
            announced TEXT NOT NULL,
            PRIMARY KEY (topic_id, arxiv_id)
        );
        CREATE INDEX matches_announced ON matches(announced);

        CREATE TABLE announcements (
            feed       TEXT NOT NULL,
            announced  TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            papers     INTEGER NOT NULL,
            PRIMARY KEY (feed, announced)
        );

        -- The delivery ledger: written before a send, marked after.
        CREATE TABLE deliveries (
            id          INTEGER PRIMARY KEY,
            chat_pk     INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            arxiv_id    TEXT NOT NULL REFERENCES papers(arxiv_id),
            announced   TEXT NOT NULL,
            topic_query TEXT NOT NULL DEFAULT '',
            status      TEXT NOT NULL,
            attempts    INTEGER NOT NULL DEFAULT 0,
            created_at  TEXT NOT NULL,
            sent_at     TEXT,
            error       TEXT,
            UNIQUE (chat_pk, arxiv_id)
        );
        CREATE INDEX deliveries_status ON deliveries(status, chat_pk);

        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
    (
        2,
        "per-user summary quota and a failure log for `status`",
        """
        CREATE TABLE quota_events (
            user_key TEXT NOT NULL,
            at       TEXT NOT NULL
        );
        CREATE INDEX quota_user_at ON quota_events(user_key, at);

        CREATE TABLE failures (
            id     INTEGER PRIMARY KEY,
            at     TEXT NOT NULL,
            kind   TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        """,
    ),
    (
        3,
        "delivery backoff and given-up rows, header ledger, papers awaiting the API, last listings, returning chats",
        """
        -- A failed send is tried again at next_attempt_at (ISO UTC), and given up a day after first_failed_at.
        ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT;
        ALTER TABLE deliveries ADD COLUMN first_failed_at TEXT;

        -- A push's header is a message like the papers': written before it is sent, marked after.
        CREATE TABLE push_headers (
            id              INTEGER PRIMARY KEY,
            chat_pk         INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            announced       TEXT NOT NULL,
            status          TEXT NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            first_failed_at TEXT,
            error           TEXT,
            created_at      TEXT NOT NULL,
            sent_at         TEXT,
            UNIQUE (chat_pk, announced)
        );

        -- Papers a listing announced that the export API did not return yet (arXiv's lag).
        CREATE TABLE pending_papers (
            arxiv_id   TEXT PRIMARY KEY,
            announced  TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            topics     TEXT NOT NULL              -- JSON list of the topic ids it matched
        );

        -- Each feed's last announcement as listed, for topics subscribed on days without one.
        CREATE TABLE listing_items (
            feed      TEXT NOT NULL,
            announced TEXT NOT NULL,
            arxiv_id  TEXT NOT NULL,
            item      TEXT NOT NULL,              -- JSON of the ListingItem
            PRIMARY KEY (feed, arxiv_id)
        );

        -- A chat switched back on gets matches from this announcement on, not its whole backlog.
        ALTER TABLE chats ADD COLUMN backlog_from TEXT;
        CREATE INDEX failures_at ON failures(at);
        """,
    ),
    (
        4,
        "summaries: made again once the paper's text comes; a fallback's stand-in mark",
        """
        -- 1: made without the paper's text for a reason that may pass (download timeout,
        -- network, 5xx); the next request that can get the text makes it once more.
        ALTER TABLE summaries ADD COLUMN text_retry INTEGER NOT NULL DEFAULT 0;
        -- A fallback's summary made because this model (a model key) failed or was skipped;
        -- the next request after the model recovers replaces it. NULL otherwise.
        ALTER TABLE summaries ADD COLUMN stand_in_for TEXT;
        """,
    ),
    (
        5,
        "what buttons posted: one breakdown per post in groups, channels and servers",
        """
        -- One row per (post, kind of button) that made a post; claimed before posting, so
        -- concurrent presses post once. posted_id is NULL while the post is being made.
        CREATE TABLE button_posts (
            id         INTEGER PRIMARY KEY,
            platform   TEXT NOT NULL,
            chat_id    TEXT NOT NULL,
            message_id TEXT NOT NULL,               -- the message carrying the button
            kind       TEXT NOT NULL,               -- 'breakdown'
            posted_id  TEXT,                        -- the first message posted in answer
            claimed_at TEXT NOT NULL,
            posted_at  TEXT,
            UNIQUE (platform, chat_id, message_id, kind)
        );
        """,
    ),
    (
        6,
        "the message ids of each paper's post (for replies), and cached answers to /ask",
        """
        CREATE TABLE post_messages (
            id         INTEGER PRIMARY KEY,
            platform   TEXT NOT NULL,
            chat_id    TEXT NOT NULL,
            message_id TEXT NOT NULL,
            arxiv_id   TEXT NOT NULL,
            version    INTEGER NOT NULL,
            language   TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (platform, chat_id, message_id)
        );

        CREATE TABLE answers (
            id             INTEGER PRIMARY KEY,
            arxiv_id       TEXT NOT NULL,
            version        INTEGER NOT NULL,
            question_key   TEXT NOT NULL,
            language       TEXT NOT NULL,
            model          TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            content        TEXT NOT NULL,
            created_at     TEXT NOT NULL,
            UNIQUE (arxiv_id, version, question_key, language, model, prompt_version)
        );
        """,
    ),
    (
        7,
        "token usage of every LLM call, for `status`",
        """
        CREATE TABLE llm_calls (
            id            INTEGER PRIMARY KEY,
            at            TEXT NOT NULL,            -- ISO 8601 UTC
            model         TEXT NOT NULL,            -- model_key, e.g. gemini:gemini-2.5-flash
            input_tokens  INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL
        );
        CREATE INDEX llm_calls_at ON llm_calls(at);
        """,
    ),
    (
        8,
        "summary claims: one process at a time makes a summary",
        """
        -- A process about to ask the LLM for a summary claims its key first; the others wait for
        -- the summary to appear, or take over once `expires_at` has passed.
        CREATE TABLE summary_claims (
            arxiv_id       TEXT NOT NULL,
            version        INTEGER NOT NULL,
            language       TEXT NOT NULL,
            model          TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            owner          TEXT NOT NULL,           -- host:pid:random of the claiming process
            expires_at     TEXT NOT NULL,           -- ISO 8601 UTC, microseconds
            PRIMARY KEY (arxiv_id, version, language, model, prompt_version)
        );
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]
