"""Agent sessions and their runs: Agno's ``agent_sessions``, normalised.

Agno kept a session as one row whose JSONB ``messages`` grew with every run, so each
run rewrote the whole history. Here a session row holds only the agent's state; each
run is one ``agent_runs`` row, INSERTed once and never updated, and "the last N runs"
(``AGENT_HISTORY_RUNS``) is one backward scan of ix_agent_runs_session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from barkeeper.config import Settings
from barkeeper.conversations._models import RUN_STATUSES, AgentRun, AgentSession, RunStatus
from barkeeper.conversations._store import MAX_CONTENT_CHARS
from barkeeper.db import Database
from barkeeper.errors import InvalidInputError, NotFoundError, QueryError
from barkeeper.validation import (
    check_bigint,
    check_count,
    check_json,
    check_name,
    clean_text,
)

__all__ = ["SessionStore"]


# The unique index ux_agent_sessions_agent_user_channel is on
# (agent_id, user_id, coalesce(channel_id, 0)); these match its expression exactly.
_FIND_SESSION = """
SELECT * FROM agent_sessions
WHERE agent_id = $1 AND user_id = $2 AND coalesce(channel_id, 0) = coalesce($3::bigint, 0)
"""
_CREATE_SESSION = """
INSERT INTO agent_sessions (agent_id, user_id, channel_id) VALUES ($1, $2, $3)
ON CONFLICT (agent_id, user_id, coalesce(channel_id, 0)) DO NOTHING
RETURNING *
"""

# One statement: the session's updated_at moves, the run is a new row. Older runs are
# never touched (no UPDATE of agent_runs exists in barkeeper).
_ADD_RUN = """
WITH s AS (
    UPDATE agent_sessions SET updated_at = now() WHERE id = $1 RETURNING id, user_id
)
INSERT INTO agent_runs (session_id, user_id, input, output, messages, metrics, status)
SELECT s.id, s.user_id, $2, $3, $4, $5, $6 FROM s
RETURNING *
"""

_LOCK_OWNER = """
SELECT 1 FROM users u JOIN agent_sessions s ON s.user_id = u.id
WHERE s.id = $1 FOR KEY SHARE OF u
"""

_RECENT_RUNS = """
SELECT * FROM (
    SELECT * FROM agent_runs WHERE session_id = $1 ORDER BY id DESC LIMIT $2
) newest
ORDER BY id
"""

# The same, found by the session's key: one round trip where the session's id is not
# known yet (ux_agent_sessions_agent_user_channel, then ix_agent_runs_session).
_RECENT_RUNS_BY_KEY = """
SELECT * FROM (
    SELECT r.* FROM agent_sessions s
    CROSS JOIN LATERAL (
        SELECT * FROM agent_runs WHERE session_id = s.id ORDER BY id DESC LIMIT $4
    ) r
    WHERE s.agent_id = $1 AND s.user_id = $2
      AND coalesce(s.channel_id, 0) = coalesce($3::bigint, 0)
) newest
ORDER BY id
"""

# Per session, its newest run by ix_agent_runs_session; the user's sessions are few.
_LAST_USER_RUN = """
SELECT r.* FROM agent_sessions s
CROSS JOIN LATERAL (
    SELECT * FROM agent_runs WHERE session_id = s.id ORDER BY id DESC LIMIT 1
) r
WHERE s.user_id = $1
  AND ($2::text IS NULL OR s.agent_id = $2)
  AND ($3::boolean OR coalesce(s.channel_id, 0) = coalesce($4::bigint, 0))
ORDER BY r.id DESC
LIMIT 1
"""


def _session_id(value: object) -> str:
    return check_name(value, "session_id", max_length=255)


class SessionStore:
    """Agent sessions (one per agent, user and channel) and their append-only runs.

    State is *replaced* by :meth:`update_state` (Agno writes the agent's whole
    session state after each run); :meth:`merge_state` merges top-level keys for
    callers that change one key at a time.

    Example::

        sessions = SessionStore(db, history_runs=settings.agent_history_runs)
        session = await sessions.get_or_create_session("hero-team", user.id, channel_id=42)
        await sessions.add_run(session.id, input="hi", output="hello!", messages=[...])
        history = await sessions.get_recent_runs(session.id)   # oldest first

    Args:
        db: the database.
        history_runs: default N of :meth:`get_recent_runs` (``AGENT_HISTORY_RUNS``).
        max_text_chars: longest run input/output accepted.
    """

    def __init__(
        self, db: Database, *, history_runs: int = 10, max_text_chars: int = MAX_CONTENT_CHARS
    ) -> None:
        self._db = db
        self.history_runs = check_count(history_runs, "history_runs")
        self.max_text_chars = check_count(
            max_text_chars, "max_text_chars", minimum=1, maximum=100_000_000
        )

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> SessionStore:
        """A store whose default history is ``AGENT_HISTORY_RUNS`` runs."""
        return cls(db, history_runs=settings.agent_history_runs)

    # --- sessions ------------------------------------------------------------------------

    async def get_or_create_session(
        self, agent_id: str, user_id: int, channel_id: int | None = None
    ) -> AgentSession:
        """The session of this agent with this user in this channel, created if missing.

        Safe under concurrency: the unique index on (agent, user, channel) makes a
        second creator find the first one's row.

        Raises:
            NotFoundError: no user ``user_id``.
        """
        agent_id = check_name(agent_id, "agent_id")
        user_id = check_bigint(user_id, "user_id")
        if channel_id is not None:
            channel_id = check_bigint(channel_id, "channel_id")
        try:
            async with self._db.acquire() as conn:
                row = await conn.fetchrow(_FIND_SESSION, agent_id, user_id, channel_id)
                if row is None:
                    row = await conn.fetchrow(_CREATE_SESSION, agent_id, user_id, channel_id)
                if row is None:  # another caller created it between our two statements
                    row = await conn.fetchrow(_FIND_SESSION, agent_id, user_id, channel_id)
        except QueryError as exc:
            if exc.sqlstate == "23503":
                raise NotFoundError(f"no user with id {user_id}") from exc
            raise
        assert row is not None
        return AgentSession.from_row(row)

    async def get_session(self, session_id: str) -> AgentSession | None:
        """The session with this id, or None."""
        sid = _session_id(session_id)
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM agent_sessions WHERE id = $1", sid)
        return None if row is None else AgentSession.from_row(row)

    async def update_state(self, session_id: str, state: Mapping[str, Any]) -> AgentSession:
        """Replace the session's state with ``state`` (a JSON object).

        Raises:
            InvalidInputError: ``state`` is not a JSON object (NUL characters included).
            NotFoundError: no such session.
        """
        return await self._set_state(session_id, state, "state = $2::jsonb")

    async def merge_state(self, session_id: str, patch: Mapping[str, Any]) -> AgentSession:
        """Merge ``patch``'s top-level keys into the state (jsonb ``||``), atomically."""
        return await self._set_state(session_id, patch, "state = state || $2::jsonb")

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session and its runs; False if there was none."""
        sid = _session_id(session_id)
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM agent_sessions WHERE id = $1", sid)
        return bool(status != "DELETE 0")

    # --- runs ----------------------------------------------------------------------------

    async def add_run(
        self,
        session_id: str,
        *,
        input: str | None = None,
        output: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        metrics: Mapping[str, Any] | None = None,
        status: RunStatus = "completed",
    ) -> AgentRun:
        """Append one run to a session: one INSERT; earlier runs are never rewritten.

        ``input``, ``output`` and the strings inside ``messages`` are free text: NUL
        characters and lone surrogates become U+FFFD. ``metrics`` must be clean JSON.

        Raises:
            InvalidInputError: a malformed argument or an unknown ``status``.
            NotFoundError: no such session.
        """
        sid = _session_id(session_id)
        if input is not None:
            input = clean_text(
                input, "input", max_chars=self.max_text_chars, allow_empty=True, strip=False
            )
        if output is not None:
            output = clean_text(
                output, "output", max_chars=self.max_text_chars, allow_empty=True, strip=False
            )
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise InvalidInputError("messages must be a list of message objects")
        transcript = check_json(list(messages), "messages", nul="replace")
        if metrics is not None and not isinstance(metrics, Mapping):
            raise InvalidInputError("metrics must be a JSON object")
        measured = check_json(dict(metrics or {}), "metrics")
        if status not in RUN_STATUSES:
            raise InvalidInputError(f"status must be one of {sorted(RUN_STATUSES)}, not {status!r}")
        async with self._db.transaction() as conn:
            # The user's row first, then the session's: privacy's forget locks in that
            # order, so the two never deadlock.
            await conn.execute(_LOCK_OWNER, sid)
            row = await conn.fetchrow(_ADD_RUN, sid, input, output, transcript, measured, status)
        if row is None:
            raise NotFoundError(f"session {sid!r} not found")
        return AgentRun.from_row(row)

    async def get_recent_runs(self, session_id: str, n: int | None = None) -> list[AgentRun]:
        """The newest ``n`` runs (default ``history_runs``), oldest first, in one query."""
        sid = _session_id(session_id)
        n = self.history_runs if n is None else check_count(n, "n")
        if n == 0:
            return []
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_RECENT_RUNS, sid, n)
        return [AgentRun.from_row(r) for r in rows]

    async def get_recent_runs_for(
        self, agent_id: str, user_id: int, channel_id: int | None = None, n: int | None = None
    ) -> list[AgentRun]:
        """The newest ``n`` runs of the session of this agent, user and channel, oldest
        first, in one query, without creating the session (``[]`` when there is none).

        Raises:
            InvalidInputError: a malformed argument.
        """
        agent_id = check_name(agent_id, "agent_id")
        user_id = check_bigint(user_id, "user_id")
        if channel_id is not None:
            channel_id = check_bigint(channel_id, "channel_id")
        n = self.history_runs if n is None else check_count(n, "n")
        if n == 0:
            return []
        async with self._db.acquire() as conn:
            rows = await conn.fetch(_RECENT_RUNS_BY_KEY, agent_id, user_id, channel_id, n)
        return [AgentRun.from_row(r) for r in rows]

    async def get_last_user_run(
        self,
        user_id: int,
        *,
        agent_id: str | None = None,
        channel_id: int | None = None,
        any_channel: bool = True,
    ) -> AgentRun | None:
        """The user's newest run (what ``/why`` explains), or None.

        Args:
            user_id: The user's internal id.
            agent_id: Only this agent's sessions (any agent when None).
            channel_id: Only the session in this channel (ignored when ``any_channel``).
            any_channel: Look across all the user's sessions; False restricts to
                ``channel_id`` (None then means the session outside channels).
        """
        user_id = check_bigint(user_id, "user_id")
        if agent_id is not None:
            agent_id = check_name(agent_id, "agent_id")
        if channel_id is not None:
            channel_id = check_bigint(channel_id, "channel_id")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                _LAST_USER_RUN, user_id, agent_id, bool(any_channel), channel_id
            )
        return None if row is None else AgentRun.from_row(row)

    async def iter_runs(self, session_id: str, *, page_size: int = 100) -> AsyncIterator[AgentRun]:
        """Every run of a session, oldest first, ``page_size`` at a time (an id cursor)."""
        sid = _session_id(session_id)
        page_size = check_count(page_size, "page_size", minimum=1)
        after = 0
        while True:
            async with self._db.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT * FROM agent_runs WHERE session_id = $1 AND id > $2 "
                    "ORDER BY id LIMIT $3",
                    sid,
                    after,
                    page_size,
                )
            for row in rows:
                yield AgentRun.from_row(row)
            if len(rows) < page_size:
                return
            after = rows[-1]["id"]

    async def count_runs(self, session_id: str) -> int:
        """How many runs the session has."""
        sid = _session_id(session_id)
        async with self._db.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM agent_runs WHERE session_id = $1", sid)
        return int(n)

    # --- a user's sessions (privacy) -----------------------------------------------------

    async def list_user_sessions(self, user_id: int) -> list[AgentSession]:
        """Every session of the user, oldest first (ix_agent_sessions_user_id)."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM agent_sessions WHERE user_id = $1 ORDER BY created_at, id",
                user_id,
            )
        return [AgentSession.from_row(r) for r in rows]

    async def count_user_sessions(self, user_id: int) -> int:
        """How many sessions the user has."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            n = await conn.fetchval(
                "SELECT count(*) FROM agent_sessions WHERE user_id = $1", user_id
            )
        return int(n)

    async def count_user_runs(self, user_id: int) -> int:
        """How many runs the user's sessions hold (ix_agent_runs_user_id)."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM agent_runs WHERE user_id = $1", user_id)
        return int(n)

    async def delete_user_sessions(self, user_id: int) -> int:
        """Delete every session of the user with their runs; returns how many sessions."""
        user_id = check_bigint(user_id, "user_id")
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM agent_sessions WHERE user_id = $1", user_id)
        return int(status.rsplit(" ", 1)[-1])

    # --- helpers -------------------------------------------------------------------------

    async def _set_state(self, session_id: str, state: object, assignment: str) -> AgentSession:
        sid = _session_id(session_id)
        if not isinstance(state, Mapping):
            raise InvalidInputError(
                f"state must be a JSON object (a mapping), not {type(state).__name__}"
            )
        value = check_json(state, "state")
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                f"UPDATE agent_sessions SET {assignment}, updated_at = now() "  # noqa: S608 - one of two fixed assignments
                "WHERE id = $1 RETURNING *",
                sid,
                value,
            )
        if row is None:
            raise NotFoundError(f"session {sid!r} not found")
        return AgentSession.from_row(row)
