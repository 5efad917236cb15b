"""Schema version 1: every table the seeds list (see ``docs/schema.md`` for the mapping).

Conventions: ``timestamptz`` everywhere (UTC by construction); identity ``bigint`` keys;
every row about a user references ``users(id) ON DELETE CASCADE`` so that deleting a
user removes what is kept about them; indexes are created ``IF NOT EXISTS``. Discord
message rows are keyed by the author's Discord id (not a foreign key: history holds
messages from people the bot has never spoken to), so privacy deletes them by that id.

The embedding columns (``memories``, ``message_index``) are ``vector`` when pgvector is
installed, else ``bytea`` (little-endian float32, compared in Python); which one is
recorded in ``barkeeper_meta.embedding_storage``. Vector search is exact over one
owner's rows, found through a btree index on the owner (see ``barkeeper.retrieval``).
"""

from __future__ import annotations

import asyncpg

from barkeeper.db._capabilities import Capabilities

TABLES = (
    "barkeeper_meta",
    "discord_messages",
    "discord_channels",
    "users",
    "user_preferences",
    "guilds",
    "guild_members",
    "conversations",
    "conversation_messages",
    "agent_sessions",
    "agent_runs",
    "memories",
    "memory_versions",
    "message_index",
    "fact_associations",
    "bot_states",
    "bot_opinions",
    "mood_history",
    "user_relationships",
    "user_communication_styles",
    "scheduled_events",
)

MEMORY_TYPES = (
    "hobby",
    "work",
    "family",
    "preference",
    "location",
    "event",
    "relationship",
    "general",
    "attachment_pattern",
    "grief_context",
    "coping_mechanism",
)

_DDL = """
CREATE TABLE IF NOT EXISTS barkeeper_meta (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Junkie's `messages`: the cache of Discord channel messages.
CREATE TABLE IF NOT EXISTS discord_messages (
    message_id      bigint PRIMARY KEY,
    channel_id      bigint NOT NULL,
    guild_id        bigint,
    author_id       bigint NOT NULL,
    author_name     text NOT NULL,
    author_is_bot   boolean NOT NULL DEFAULT false,
    content         text NOT NULL,
    reply_to_id     bigint,
    attachments     jsonb NOT NULL DEFAULT '[]'::jsonb,
    embeds_count    integer NOT NULL DEFAULT 0,
    -- A snowflake carries its creation time (ms since 2015-01-01): derived, so the two
    -- can never disagree and writers need not send it.
    created_at      timestamptz NOT NULL GENERATED ALWAYS AS (
        to_timestamp(((message_id >> 22) + 1420070400000)::double precision / 1000)
    ) STORED,
    edited_at       timestamptz,
    -- characters replaced by U+FFFD because PostgreSQL cannot store them (NUL, lone
    -- surrogates): non-zero means content is not byte-for-byte Discord's
    sanitized_chars integer NOT NULL DEFAULT 0,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
-- Snowflakes grow with time, so (channel_id, message_id) orders a channel by time and
-- serves "newest N before message X" as one backward index range scan. Queries reach
-- it with row comparisons, (channel_id, message_id) < ($1, $2), which the primary key
-- cannot serve: given `channel_id = $1 AND message_id < $2` the planner may walk the
-- primary key backwards filtering on channel_id (every channel's rows), far slower.
CREATE INDEX IF NOT EXISTS ix_discord_messages_channel_message
    ON discord_messages (channel_id, message_id);
CREATE INDEX IF NOT EXISTS ix_discord_messages_author ON discord_messages (author_id);

-- Junkie's `channel_status`, with what a resumable backfill needs.
CREATE TABLE IF NOT EXISTS discord_channels (
    channel_id           bigint PRIMARY KEY,
    guild_id             bigint,
    name                 text,
    is_fully_backfilled  boolean NOT NULL DEFAULT false,
    completion_reason    text,
    no_access            boolean NOT NULL DEFAULT false,
    backfill_before_id   bigint,
    backfill_after_id    bigint,
    last_synced_at       timestamptz,
    last_updated         timestamptz NOT NULL DEFAULT now(),
    -- messages cached: MessageStore adds its inserts in the statement that makes them;
    -- the triggers below subtract every delete (privacy's plain DELETE too)
    message_count        bigint NOT NULL DEFAULT 0
);

-- Per-channel message counts on delete and truncate, per statement (one row per
-- channel touched, locked in channel order), so count() is constant-time and exact
-- whoever deletes. Inserts are counted by MessageStore itself: an insert trigger's
-- transition table cost 13% of COPY's speed. search_path is pinned: a trigger must not
-- follow the caller's.
CREATE OR REPLACE FUNCTION discord_messages_count_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM 1 FROM discord_channels
    WHERE channel_id IN (SELECT channel_id FROM deleted_rows)
    ORDER BY channel_id FOR UPDATE;
    UPDATE discord_channels c SET message_count = c.message_count - d.n
    FROM (SELECT channel_id, count(*) AS n FROM deleted_rows GROUP BY channel_id) d
    WHERE c.channel_id = d.channel_id;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION discord_messages_count_truncated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
    UPDATE discord_channels SET message_count = 0 WHERE message_count <> 0;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE TRIGGER discord_messages_count_deleted
    AFTER DELETE ON discord_messages REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION discord_messages_count_deleted();
CREATE OR REPLACE TRIGGER discord_messages_count_truncated
    AFTER TRUNCATE ON discord_messages
    FOR EACH STATEMENT EXECUTE FUNCTION discord_messages_count_truncated();

CREATE TABLE IF NOT EXISTS users (
    id                    bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    discord_id            bigint UNIQUE,
    external_id           text UNIQUE,
    discord_username      varchar(255),
    discord_display_name  varchar(255),
    custom_name           varchar(255),
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at          timestamptz NOT NULL DEFAULT now(),
    is_active             boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (discord_id IS NOT NULL OR external_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS ix_users_last_seen_at ON users (last_seen_at);

CREATE TABLE IF NOT EXISTS user_preferences (
    id                bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    preference_key    varchar(100) NOT NULL,
    preference_value  text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, preference_key)
);

CREATE TABLE IF NOT EXISTS guilds (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    discord_id  bigint NOT NULL UNIQUE,
    name        varchar(255) NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    is_active   boolean NOT NULL DEFAULT true,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS guild_members (
    id               bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    guild_id         bigint NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    guild_nickname   varchar(255),
    roles            text[] NOT NULL DEFAULT '{}',
    joined_guild_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (guild_id, user_id)
);
CREATE INDEX IF NOT EXISTS ix_guild_members_user_id ON guild_members (user_id);

-- Loyal Companion's conversations and VoltAgent's, in one table.
CREATE TABLE IF NOT EXISTS conversations (
    id               text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    resource_id      text NOT NULL DEFAULT 'barkeeper',
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title            text,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    guild_id         bigint,
    channel_id       bigint,
    started_at       timestamptz NOT NULL DEFAULT now(),
    last_message_at  timestamptz NOT NULL DEFAULT now(),
    message_count    integer NOT NULL DEFAULT 0,
    is_active        boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- A user's conversations in each order VoltAgent lists them by; id breaks ties so
-- ORDER BY x, id and (x, id) cursors read the index with no sort, in either direction.
CREATE INDEX IF NOT EXISTS ix_conversations_user_updated
    ON conversations (user_id, updated_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS ix_conversations_user_created
    ON conversations (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS ix_conversations_user_title
    ON conversations (user_id, title, id);
CREATE INDEX IF NOT EXISTS ix_conversations_resource
    ON conversations (resource_id, updated_at DESC);
CREATE INDEX IF NOT EXISTS ix_conversations_channel_user
    ON conversations (channel_id, user_id, last_message_at DESC);
CREATE INDEX IF NOT EXISTS ix_conversations_active_last
    ON conversations (last_message_at) WHERE is_active;

-- Loyal Companion's `messages` and VoltAgent's messages: turns of a conversation.
CREATE TABLE IF NOT EXISTS conversation_messages (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    conversation_id     text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id          text NOT NULL DEFAULT gen_random_uuid()::text,
    user_id             bigint REFERENCES users (id) ON DELETE CASCADE,
    discord_message_id  bigint,
    role                text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    type                text NOT NULL DEFAULT 'text',
    content             text NOT NULL,
    has_images          boolean NOT NULL DEFAULT false,
    image_urls          jsonb NOT NULL DEFAULT '[]'::jsonb,
    token_count         integer,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, message_id)
);
CREATE INDEX IF NOT EXISTS ix_conversation_messages_lookup
    ON conversation_messages (conversation_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_conversation_messages_user_id ON conversation_messages (user_id);

-- ConversationStore.add_message in one round trip: lock the owner, then the conversation
-- row (adders of one conversation queue here, so they never deadlock nor overshoot the
-- limit), insert,
-- delete the oldest beyond the storage limit (a few entries of
-- ix_conversation_messages_lookup, no count(*): message_count is the stored count),
-- then update the counter and times. Each statement of a plpgsql function takes a
-- fresh snapshot, so the trim sees what concurrent adders committed while we waited.
-- Returns no row when the conversation does not exist or p_user_id is not its owner.
CREATE OR REPLACE FUNCTION add_conversation_message(
    p_conversation_id text, p_message_id text, p_user_id bigint,
    p_discord_message_id bigint, p_role text, p_type text, p_content text,
    p_image_urls jsonb, p_token_count integer, p_storage_limit integer
) RETURNS SETOF conversation_messages
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    v_owner bigint;
    v_count integer;
    v_at timestamptz;
    v_trimmed integer := 0;
    v_row conversation_messages;
BEGIN
    -- The owner's users row first (KEY SHARE: only a delete of the user conflicts), so
    -- the lock order is privacy's forget's: user, then conversation.
    PERFORM 1 FROM users u JOIN conversations c ON c.user_id = u.id
    WHERE c.id = p_conversation_id FOR KEY SHARE OF u;
    SELECT user_id, message_count INTO v_owner, v_count
    FROM conversations WHERE id = p_conversation_id FOR NO KEY UPDATE;
    IF NOT FOUND OR (p_user_id IS NOT NULL AND p_user_id <> v_owner) THEN
        RETURN;
    END IF;
    v_at := clock_timestamp();
    INSERT INTO conversation_messages (
        conversation_id, message_id, user_id, discord_message_id, role, type, content,
        has_images, image_urls, token_count, created_at, updated_at)
    VALUES (p_conversation_id, p_message_id, p_user_id, p_discord_message_id, p_role,
        p_type, p_content, jsonb_array_length(p_image_urls) > 0, p_image_urls,
        p_token_count, v_at, v_at)
    RETURNING * INTO v_row;
    IF p_storage_limit > 0 AND v_count + 1 > p_storage_limit THEN
        DELETE FROM conversation_messages WHERE id IN (
            SELECT id FROM conversation_messages WHERE conversation_id = p_conversation_id
            ORDER BY created_at, id LIMIT v_count + 1 - p_storage_limit);
        GET DIAGNOSTICS v_trimmed = ROW_COUNT;
    END IF;
    UPDATE conversations
    SET message_count = v_count + 1 - v_trimmed, last_message_at = v_at, updated_at = v_at
    WHERE id = p_conversation_id;
    RETURN NEXT v_row;
END
$fn$;

-- Agno's agent_sessions, normalised: the session row holds state, runs are rows.
CREATE TABLE IF NOT EXISTS agent_sessions (
    id          text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    agent_id    text NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id  bigint,
    state       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_agent_sessions_agent_user_channel
    ON agent_sessions (agent_id, user_id, coalesce(channel_id, 0));
CREATE INDEX IF NOT EXISTS ix_agent_sessions_user_id ON agent_sessions (user_id);

CREATE TABLE IF NOT EXISTS agent_runs (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    session_id  text NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    run_id      text NOT NULL DEFAULT gen_random_uuid()::text,
    input       text,
    output      text,
    messages    jsonb NOT NULL DEFAULT '[]'::jsonb,
    metrics     jsonb NOT NULL DEFAULT '{}'::jsonb,
    status      text NOT NULL DEFAULT 'completed',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_agent_runs_session ON agent_runs (session_id, id DESC);
CREATE INDEX IF NOT EXISTS ix_agent_runs_user_id ON agent_runs (user_id);

-- Agno's user_memories and Loyal Companion's user_facts, in one table.
CREATE TABLE IF NOT EXISTS memories (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    memory_type         text NOT NULL DEFAULT 'general' CHECK (memory_type IN (__MEMORY_TYPES__)),
    content             text NOT NULL,
    confidence          real NOT NULL DEFAULT 1.0 CHECK (confidence BETWEEN 0 AND 1),
    importance          real NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND 1),
    temporal_relevance  text NOT NULL DEFAULT 'timeless'
        CHECK (temporal_relevance IN ('past', 'present', 'future', 'timeless')),
    source              text NOT NULL DEFAULT 'conversation',
    source_message_ids  bigint[] NOT NULL DEFAULT '{}',
    extraction_context  text,
    guild_id            bigint,
    expires_at          timestamptz,
    valid_from          timestamptz NOT NULL DEFAULT now(),
    invalidated_at      timestamptz,
    is_active           boolean NOT NULL DEFAULT true,
    version             integer NOT NULL DEFAULT 1,
    last_referenced_at  timestamptz,
    embedding           __VECTOR_TYPE__,
    embedding_model     text,
    search              tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
-- Rows up to a page stay inline, not TOASTed: a search reads each of a user's rows'
-- vector and tsvector several times, and out-of-line values cost a fetch every time.
) WITH (toast_tuple_target = 8160);
CREATE INDEX IF NOT EXISTS ix_memories_user_live
    ON memories (user_id, updated_at DESC) WHERE is_active AND invalidated_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_memories_user_type ON memories (user_id, memory_type);
CREATE INDEX IF NOT EXISTS ix_memories_expires
    ON memories (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS memory_versions (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    memory_id           bigint NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version             integer NOT NULL,
    change              text NOT NULL
        CHECK (change IN ('add', 'update', 'invalidate', 'forget', 'restore', 'expire')),
    changed_by          text NOT NULL DEFAULT 'system',
    reason              text,
    memory_type         text NOT NULL,
    content             text NOT NULL,
    confidence          real NOT NULL,
    importance          real NOT NULL,
    temporal_relevance  text NOT NULL,
    expires_at          timestamptz,
    source_message_ids  bigint[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (memory_id, version)
);
CREATE INDEX IF NOT EXISTS ix_memory_versions_user_id ON memory_versions (user_id);

-- Searchable turns (Discord messages, transcripts) for "what did we talk about": one
-- scope (a channel, a user, a transcript) is searched at a time, through the unique
-- index that leads with scope. `context` (the neighbouring turn) is searched at a
-- lower weight (B). Rows from the Discord cache go with their message.
CREATE TABLE IF NOT EXISTS message_index (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    scope               text NOT NULL,
    source_id           text NOT NULL,
    discord_message_id  bigint REFERENCES discord_messages (message_id) ON DELETE CASCADE,
    -- the message whose text is in `context`: deleting it deletes this row too, so a
    -- deleted message's words never survive as someone else's context
    context_message_id  bigint REFERENCES discord_messages (message_id) ON DELETE CASCADE,
    position            bigint NOT NULL,
    speaker             text NOT NULL DEFAULT '',
    content             text NOT NULL,
    context             text NOT NULL DEFAULT '',
    occurred_at         timestamptz,
    embedding           __VECTOR_TYPE__,
    embedding_model     text,
    search              tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', context), 'B') || to_tsvector('english', content)
    ) STORED,
    indexed_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scope, source_id)
) WITH (toast_tuple_target = 8160);  -- inline rows, as for memories
CREATE INDEX IF NOT EXISTS ix_message_index_scope_position ON message_index (scope, position);
CREATE INDEX IF NOT EXISTS ix_message_index_discord_message
    ON message_index (discord_message_id) WHERE discord_message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_message_index_context_message
    ON message_index (context_message_id) WHERE context_message_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS fact_associations (
    id                bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    memory_id_1       bigint NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    memory_id_2       bigint NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    association_type  varchar(50) NOT NULL,
    strength          real NOT NULL DEFAULT 0.5 CHECK (strength BETWEEN 0 AND 1),
    discovered_at     timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (memory_id_1, memory_id_2)
);
CREATE INDEX IF NOT EXISTS ix_fact_associations_memory_id_2 ON fact_associations (memory_id_2);

CREATE TABLE IF NOT EXISTS bot_states (
    id                   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    guild_id             bigint,
    mood_valence         real NOT NULL DEFAULT 0 CHECK (mood_valence BETWEEN -1 AND 1),
    mood_arousal         real NOT NULL DEFAULT 0 CHECK (mood_arousal BETWEEN -1 AND 1),
    mood_updated_at      timestamptz NOT NULL DEFAULT now(),
    total_messages_sent  integer NOT NULL DEFAULT 0,
    total_facts_learned  integer NOT NULL DEFAULT 0,
    total_users_known    integer NOT NULL DEFAULT 0,
    first_activated_at   timestamptz NOT NULL DEFAULT now(),
    preferences          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- NULL guild = the global state; coalesce makes it unique too.
CREATE UNIQUE INDEX IF NOT EXISTS ux_bot_states_guild ON bot_states (coalesce(guild_id, 0));

CREATE TABLE IF NOT EXISTS bot_opinions (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    guild_id            bigint,
    topic               varchar(255) NOT NULL CHECK (topic = lower(topic)),
    sentiment           real NOT NULL DEFAULT 0 CHECK (sentiment BETWEEN -1 AND 1),
    interest_level      real NOT NULL DEFAULT 0.5 CHECK (interest_level BETWEEN 0 AND 1),
    discussion_count    integer NOT NULL DEFAULT 0,
    reasoning           text,
    formed_at           timestamptz NOT NULL DEFAULT now(),
    last_reinforced_at  timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_bot_opinions_guild_topic
    ON bot_opinions (coalesce(guild_id, 0), topic);
CREATE INDEX IF NOT EXISTS ix_bot_opinions_topic ON bot_opinions (topic);

CREATE TABLE IF NOT EXISTS mood_history (
    id                   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    guild_id             bigint,
    valence              real NOT NULL,
    arousal              real NOT NULL,
    trigger_type         varchar(50) NOT NULL,
    trigger_user_id      bigint REFERENCES users (id) ON DELETE CASCADE,
    trigger_description  text,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_mood_history_guild_recorded
    ON mood_history (guild_id, recorded_at DESC);
CREATE INDEX IF NOT EXISTS ix_mood_history_trigger_user_id ON mood_history (trigger_user_id);

CREATE TABLE IF NOT EXISTS user_relationships (
    id                      bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id                 bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    guild_id                bigint,
    relationship_score      real NOT NULL DEFAULT 0 CHECK (relationship_score BETWEEN 0 AND 100),
    total_interactions      integer NOT NULL DEFAULT 0,
    positive_interactions   integer NOT NULL DEFAULT 0,
    negative_interactions   integer NOT NULL DEFAULT 0,
    avg_message_length      real NOT NULL DEFAULT 0,
    conversation_depth_avg  real NOT NULL DEFAULT 0,
    shared_references       jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_interaction_at    timestamptz NOT NULL DEFAULT now(),
    last_interaction_at     timestamptz NOT NULL DEFAULT now(),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_user_relationships_user_guild
    ON user_relationships (user_id, coalesce(guild_id, 0));

CREATE TABLE IF NOT EXISTS user_communication_styles (
    id                   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id              bigint NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    preferred_length     varchar(20) NOT NULL DEFAULT 'medium'
        CHECK (preferred_length IN ('short', 'medium', 'long')),
    preferred_formality  real NOT NULL DEFAULT 0.5 CHECK (preferred_formality BETWEEN 0 AND 1),
    emoji_affinity       real NOT NULL DEFAULT 0.5 CHECK (emoji_affinity BETWEEN 0 AND 1),
    humor_affinity       real NOT NULL DEFAULT 0.5 CHECK (humor_affinity BETWEEN 0 AND 1),
    detail_preference    real NOT NULL DEFAULT 0.5 CHECK (detail_preference BETWEEN 0 AND 1),
    engagement_signals   jsonb NOT NULL DEFAULT '{}'::jsonb,
    samples_collected    integer NOT NULL DEFAULT 0,
    confidence           real NOT NULL DEFAULT 0 CHECK (confidence BETWEEN 0 AND 1),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS scheduled_events (
    id               bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    guild_id         bigint,
    channel_id       bigint,
    event_type       varchar(50) NOT NULL,
    trigger_at       timestamptz NOT NULL,
    title            varchar(255) NOT NULL,
    context          jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_recurring     boolean NOT NULL DEFAULT false,
    recurrence_rule  varchar(100),
    status           varchar(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'triggered', 'cancelled')),
    triggered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_scheduled_events_user_id ON scheduled_events (user_id);
CREATE INDEX IF NOT EXISTS ix_scheduled_events_due
    ON scheduled_events (trigger_at) WHERE status = 'pending';
"""


async def apply(conn: asyncpg.Connection, caps: Capabilities) -> None:
    """Create every table and index of schema version 1."""
    memory_types = ", ".join(f"'{name}'" for name in MEMORY_TYPES)
    vector_type = "vector" if caps.pgvector else "bytea"
    ddl = _DDL.replace("__MEMORY_TYPES__", memory_types).replace("__VECTOR_TYPE__", vector_type)
    await conn.execute(ddl)
    await conn.execute(
        "INSERT INTO barkeeper_meta (key, value) VALUES ('embedding_storage', $1::jsonb) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        vector_type,
    )
