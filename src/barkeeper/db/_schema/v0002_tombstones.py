"""Schema version 2: erasure that lasts (tombstones), transcript turns with an owner.

``privacy forget`` deletes a person's rows and, in the same transaction, writes a
tombstone: a keyed hash (HMAC-SHA256) of their identity (``discord:<id>``,
``external:<id>``) and when they were forgotten. The key is a random 32 bytes kept in
``privacy_key`` (one row, created at the first forget), stored as its HMAC inner and
outer pads so that PostgreSQL computes the HMAC with the built-in ``sha256`` (no
pgcrypto). Without the key a tombstone does not say whom it is about.

One check, ``barkeeper_forgotten(identities)``, answers "which of these identities
were forgotten, and when" (``barkeeper_forgotten_at(identity)`` for one). Content
created before that instant is never stored again; content created after it is a new
relationship and is stored. Every write reaches the check:

- ``discord_messages``: ``MessageStore``'s write statements filter with it (a row
  trigger would cost the COPY path ~90%: see ``docs/schema.md``).
- ``message_index``, ``memories``, ``memory_versions``, ``conversation_messages``: a
  ``BEFORE INSERT OR UPDATE`` row trigger, ``barkeeper_refuse_forgotten``, so code
  written later cannot forget to call it. With an empty tombstone table it costs one
  probe of that table per row.

``message_index`` gains ``user_id`` (who spoke a transcript turn, so privacy finds it
through the foreign key) and ``context_source_ids`` (the turns its ``context`` quotes:
deleting any of them clears the context of every row quoting it).
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES = ("privacy_key", "forgotten")

FORGOTTEN_SQLSTATE = "BKF01"
"""SQLSTATE raised when a write would store a forgotten person's earlier content."""

_DDL = """
-- The HMAC key of the tombstones: one row, created at the first forget by whichever
-- process gets there first (INSERT ... ON CONFLICT DO NOTHING on the singleton key).
CREATE TABLE IF NOT EXISTS privacy_key (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inner_pad   bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad   bytea NOT NULL CHECK (length(outer_pad) = 64),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per forgotten identity: HMAC-SHA256(key, 'discord:<id>' | 'external:<id>').
CREATE TABLE IF NOT EXISTS forgotten (
    identity_hash  bytea PRIMARY KEY CHECK (length(identity_hash) = 32),
    forgotten_at   timestamptz NOT NULL
);

-- When a Discord snowflake was created (ms since 2015-01-01 in its top 42 bits).
CREATE OR REPLACE FUNCTION barkeeper_snowflake_time(p_id bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT AS $fn$
    SELECT to_timestamp(((p_id >> 22) + 1420070400000)::double precision / 1000)
$fn$;

-- HMAC-SHA256 of an identity with the privacy key (NULL while there is no key).
CREATE OR REPLACE FUNCTION barkeeper_identity_hash(p_identity text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE SET search_path FROM CURRENT AS $fn$
    SELECT sha256(k.outer_pad || sha256(k.inner_pad || convert_to(p_identity, 'UTF8')))
    FROM privacy_key k
$fn$;

-- THE check: which of these identities were forgotten, and when. Content created
-- before that instant must not be stored; content created after it is a new
-- relationship. A set-returning SQL function without SET options, so PostgreSQL
-- inlines it into the calling statement: a batch's authors are hashed and looked up
-- as one join, not one function call each. Tables are schema-qualified (inlined SQL
-- follows the caller's search_path otherwise). No key: nobody was ever forgotten, and
-- nothing is hashed.
CREATE OR REPLACE FUNCTION barkeeper_forgotten(p_identities text[])
RETURNS TABLE (identity text, forgotten_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT i.identity, f.forgotten_at
    -- LIMIT 1: the planner then knows it is one row (a never-analysed empty table is
    -- estimated at hundreds, which made every batch build a large hash table)
    FROM (SELECT inner_pad, outer_pad FROM __SCHEMA__.privacy_key LIMIT 1) k
    CROSS JOIN unnest(p_identities) AS i(identity)
    JOIN __SCHEMA__.forgotten f ON f.identity_hash
        = sha256(k.outer_pad || sha256(k.inner_pad || convert_to(i.identity, 'UTF8')))
$fn$;

-- The same check for one identity: when it was forgotten, or NULL.
CREATE OR REPLACE FUNCTION barkeeper_forgotten_at(p_identity text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT forgotten_at FROM __SCHEMA__.barkeeper_forgotten(ARRAY[p_identity])
$fn$;

-- Row guard for the tables written one row (or a few) at a time. Identity: the row's
-- user_id's users row (Discord and external ids). Creation time of the content: the
-- earliest of its Discord message ids (discord_message_id, source_message_ids) and
-- occurred_at; a row with none was created now and passes. TG_ARGV[0] = 'skip' drops
-- the row silently (batch indexing), anything else raises SQLSTATE BKF01.
CREATE OR REPLACE FUNCTION barkeeper_refuse_forgotten() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    v_row jsonb;
    v_user bigint;
    v_snowflake timestamptz;
    v_occurred timestamptz;
    v_discord bigint;
    v_external text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM forgotten) THEN
        RETURN NEW;
    END IF;
    v_row := to_jsonb(NEW);
    v_user := (v_row ->> 'user_id')::bigint;
    IF v_user IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT min(barkeeper_snowflake_time(x::bigint)) INTO v_snowflake
    FROM (
        SELECT v_row ->> 'discord_message_id' AS x
        UNION ALL
        SELECT jsonb_array_elements_text(
            CASE jsonb_typeof(v_row -> 'source_message_ids')
                WHEN 'array' THEN v_row -> 'source_message_ids' ELSE '[]'::jsonb END)
    ) ids
    WHERE x IS NOT NULL;
    v_occurred := (v_row ->> 'occurred_at')::timestamptz;
    IF v_snowflake IS NULL AND v_occurred IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT discord_id, external_id INTO v_discord, v_external FROM users WHERE id = v_user;
    -- Discord message ids date Discord content only; an external user's ids are theirs.
    IF least(v_snowflake, v_occurred) < barkeeper_forgotten_at('discord:' || v_discord)
       OR v_occurred < barkeeper_forgotten_at('external:' || v_external) THEN
        IF TG_ARGV[0] = 'skip' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = '__SQLSTATE__',
            MESSAGE = format('%s: this content was written before its author was forgotten',
                             TG_TABLE_NAME),
            HINT = 'A forgotten person''s earlier words are never stored again.';
    END IF;
    RETURN NEW;
END
$fn$;

CREATE OR REPLACE TRIGGER barkeeper_refuse_forgotten
    BEFORE INSERT OR UPDATE ON conversation_messages
    FOR EACH ROW EXECUTE FUNCTION barkeeper_refuse_forgotten('raise');
CREATE OR REPLACE TRIGGER barkeeper_refuse_forgotten
    BEFORE INSERT OR UPDATE ON memories
    FOR EACH ROW EXECUTE FUNCTION barkeeper_refuse_forgotten('raise');
CREATE OR REPLACE TRIGGER barkeeper_refuse_forgotten
    BEFORE INSERT OR UPDATE ON memory_versions
    FOR EACH ROW EXECUTE FUNCTION barkeeper_refuse_forgotten('raise');

-- Transcript turns: who spoke (privacy reaches them through this key), and which turns
-- of the scope the context quotes.
ALTER TABLE message_index
    ADD COLUMN IF NOT EXISTS user_id bigint REFERENCES users (id) ON DELETE CASCADE,
    ADD COLUMN IF NOT EXISTS context_source_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS ix_message_index_user_id
    ON message_index (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_message_index_context_sources
    ON message_index USING gin (context_source_ids);
CREATE OR REPLACE TRIGGER barkeeper_refuse_forgotten
    BEFORE INSERT OR UPDATE ON message_index
    FOR EACH ROW EXECUTE FUNCTION barkeeper_refuse_forgotten('skip');

-- A deleted turn's words leave every row quoting it: their context is cleared (and
-- their link to a Discord context message dropped, so a channel sync re-indexes them).
-- Rows are updated, not deleted, so this never cascades along a chain of turns.
CREATE OR REPLACE FUNCTION message_index_unquote_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
    UPDATE message_index m
    SET context = '', context_source_ids = '{}', context_message_id = NULL
    FROM (SELECT scope, array_agg(source_id) AS ids FROM deleted_turns GROUP BY scope) d
    WHERE m.context_source_ids && d.ids AND m.scope = d.scope;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE TRIGGER message_index_unquote_deleted
    AFTER DELETE ON message_index REFERENCING OLD TABLE AS deleted_turns
    FOR EACH STATEMENT EXECUTE FUNCTION message_index_unquote_deleted();
"""


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Create the tombstone tables, the check and its triggers, and the turn owner."""
    schema = await conn.fetchval("SELECT quote_ident(current_schema())")
    ddl = _DDL.replace("__SQLSTATE__", FORGOTTEN_SQLSTATE).replace("__SCHEMA__", schema)
    await conn.execute(ddl)
