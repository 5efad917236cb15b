"""barkeeper's one settings object, read from the environment and an optional ``.env``.

The variable names are the seeds' own where they exist (``POSTGRES_URL``,
``DATABASE_URL``, ``DATABASE_POOL_SIZE``, ``GROQ_API_KEY``, ``BACKFILL_*``, …) and
``BARKEEPER_*`` for the rest. ``.env.example`` lists every one with its default.

Which database URL wins when several are set (first match):

1. ``BARKEEPER_DATABASE_URL``
2. ``POSTGRES_URL`` (Junkie)
3. ``DATABASE_URL`` (Loyal Companion, VoltAgent)
4. the split form ``DB_HOST`` / ``DB_PORT`` / ``DB_NAME`` / ``DB_USER`` /
   ``DB_PASSWORD`` / ``DB_SSL`` (VoltAgent's connection object), used when
   ``DB_HOST`` is set.

With none of them set, barkeeper starts its own embedded PostgreSQL.
``BARKEEPER_DATABASE`` forces a mode: ``server``, ``embedded`` or ``ephemeral``.
"""

from __future__ import annotations

import os
import urllib.parse
import zoneinfo
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import platformdirs
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from barkeeper.errors import ConfigError

__all__ = ["SCHEMA_NAME_PATTERN", "DatabaseMode", "Settings", "load_settings"]


class DatabaseMode(StrEnum):
    """How barkeeper gets its PostgreSQL."""

    AUTO = "auto"
    """``server`` when a URL is configured, else ``embedded``."""
    SERVER = "server"
    """Connect to the server named by the configured URL."""
    EMBEDDED = "embedded"
    """Start (or reuse) a PostgreSQL from the pip package, data under ``BARKEEPER_DATA_DIR``."""
    EPHEMERAL = "ephemeral"
    """Like embedded, in a temporary directory deleted on exit: nothing persists."""


def _default_data_dir() -> Path:
    """``BARKEEPER_DATA_DIR``'s default: the user data directory; ``/var/lib/barkeeper`` as root.

    As root the embedded PostgreSQL runs as another system user (PostgreSQL refuses to
    run as root), which cannot pass through root's home directory, and barkeeper does
    not open that directory to other users. A root data directory that already holds a
    cluster (made by an older barkeeper) is kept where it is.
    """
    user_dir = Path(platformdirs.user_data_dir("barkeeper"))
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not is_root or (user_dir / "postgres" / "PG_VERSION").exists():
        return user_dir
    return Path("/var/lib/barkeeper")


def _env(*names: str) -> Any:
    return Field(validation_alias=AliasChoices(*names))


SCHEMA_NAME_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
"""A plain lower-case SQL identifier: what ``BARKEEPER_DB_SCHEMA`` may be."""


class Settings(BaseSettings):
    """Every setting barkeeper reads. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    # --- database -----------------------------------------------------------------
    database: DatabaseMode = Field(
        DatabaseMode.AUTO, validation_alias=AliasChoices("BARKEEPER_DATABASE")
    )
    barkeeper_database_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_DATABASE_URL")
    )
    postgres_url: SecretStr | None = Field(None, validation_alias=AliasChoices("POSTGRES_URL"))
    database_url: SecretStr | None = Field(None, validation_alias=AliasChoices("DATABASE_URL"))
    db_host: str | None = Field(None, validation_alias=AliasChoices("DB_HOST"))
    db_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        5432, validation_alias=AliasChoices("DB_PORT")
    )
    db_name: str = Field("postgres", validation_alias=AliasChoices("DB_NAME"))
    db_user: str = Field("postgres", validation_alias=AliasChoices("DB_USER"))
    db_password: SecretStr | None = Field(None, validation_alias=AliasChoices("DB_PASSWORD"))
    db_ssl: bool = Field(False, validation_alias=AliasChoices("DB_SSL"))
    db_schema: str = Field(
        "barkeeper",
        pattern=SCHEMA_NAME_PATTERN,
        validation_alias=AliasChoices("BARKEEPER_DB_SCHEMA"),
    )
    database_echo: bool = Field(False, validation_alias=AliasChoices("DATABASE_ECHO"))
    database_pool_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        5, validation_alias=AliasChoices("DATABASE_POOL_SIZE")
    )
    database_max_overflow: Annotated[int, Field(ge=0, le=1000)] = Field(
        10, validation_alias=AliasChoices("DATABASE_MAX_OVERFLOW")
    )
    database_connect_timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0, validation_alias=AliasChoices("BARKEEPER_DB_CONNECT_TIMEOUT")
    )
    embedded_shared_buffers_mb: Annotated[int, Field(ge=0, le=1_048_576)] = Field(
        0, validation_alias=AliasChoices("BARKEEPER_EMBEDDED_SHARED_BUFFERS_MB")
    )
    data_dir: Path = Field(
        default_factory=lambda: _default_data_dir(),
        validation_alias=AliasChoices("BARKEEPER_DATA_DIR"),
    )

    # --- discord ------------------------------------------------------------------
    discord_token: SecretStr | None = Field(None, validation_alias=AliasChoices("DISCORD_TOKEN"))
    discord_api_base: str | None = Field(None, validation_alias=AliasChoices("DISCORD_API_BASE"))
    discord_gateway_url: str | None = Field(
        None, validation_alias=AliasChoices("DISCORD_GATEWAY_URL")
    )

    # --- the bot ------------------------------------------------------------------
    bot_prefix: str = Field("!", validation_alias=AliasChoices("BARKEEPER_PREFIX"))
    admin_ids: str = Field("", validation_alias=AliasChoices("BARKEEPER_ADMIN_IDS"))
    dev_guild_id: Annotated[int, Field(gt=0)] | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_DEV_GUILD_ID")
    )
    stream_replies: bool = Field(True, validation_alias=AliasChoices("BARKEEPER_STREAM_REPLIES"))
    stream_interval: Annotated[float, Field(ge=1.0, le=60.0)] = Field(
        1.2, validation_alias=AliasChoices("BARKEEPER_STREAM_INTERVAL")
    )
    user_rate: Annotated[int, Field(ge=0, le=10_000)] = Field(
        6, validation_alias=AliasChoices("BARKEEPER_USER_RATE")
    )
    user_daily_tokens: Annotated[int, Field(ge=0, le=1_000_000_000)] = Field(
        200_000, validation_alias=AliasChoices("BARKEEPER_USER_DAILY_TOKENS")
    )
    allowed_users: str = Field("", validation_alias=AliasChoices("BARKEEPER_ALLOWED_USERS"))
    blocked_users: str = Field("", validation_alias=AliasChoices("BARKEEPER_BLOCKED_USERS"))
    allowed_roles: str = Field("", validation_alias=AliasChoices("BARKEEPER_ALLOWED_ROLES"))
    blocked_roles: str = Field("", validation_alias=AliasChoices("BARKEEPER_BLOCKED_ROLES"))
    allowed_channels: str = Field("", validation_alias=AliasChoices("BARKEEPER_ALLOWED_CHANNELS"))
    blocked_channels: str = Field("", validation_alias=AliasChoices("BARKEEPER_BLOCKED_CHANNELS"))
    allowed_categories: str = Field(
        "", validation_alias=AliasChoices("BARKEEPER_ALLOWED_CATEGORIES")
    )
    blocked_categories: str = Field(
        "", validation_alias=AliasChoices("BARKEEPER_BLOCKED_CATEGORIES")
    )
    cache_buffer: Annotated[int, Field(ge=100, le=10_000_000)] = Field(
        10_000, validation_alias=AliasChoices("BARKEEPER_CACHE_BUFFER")
    )
    backfill_on_start: bool = Field(
        True, validation_alias=AliasChoices("BARKEEPER_BACKFILL_ON_START")
    )
    index_history: bool = Field(True, validation_alias=AliasChoices("BARKEEPER_INDEX_HISTORY"))
    index_pieces: bool = Field(True, validation_alias=AliasChoices("BARKEEPER_INDEX_PIECES"))
    index_interval: Annotated[float, Field(ge=0.1, le=3600)] = Field(
        5.0, validation_alias=AliasChoices("BARKEEPER_INDEX_INTERVAL_SECONDS")
    )
    shard_count: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_SHARD_COUNT", "SHARD_COUNT")
    )
    shard_ids: str = Field("", validation_alias=AliasChoices("BARKEEPER_SHARD_IDS", "SHARD_IDS"))

    # --- language models ----------------------------------------------------------
    groq_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("GROQ_API_KEY"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    llm_base_url: str = Field(
        "https://api.groq.com/openai/v1",
        validation_alias=AliasChoices("BARKEEPER_LLM_BASE_URL", "OPENAI_BASE_URL"),
    )
    llm_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_LLM_API_KEY")
    )
    llm_model: str = Field(
        "openai/gpt-oss-120b", validation_alias=AliasChoices("BARKEEPER_LLM_MODEL")
    )
    memory_base_url: str | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_MEMORY_BASE_URL")
    )
    memory_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_MEMORY_API_KEY")
    )
    memory_model: str = Field(
        "openai/gpt-oss-120b", validation_alias=AliasChoices("BARKEEPER_MEMORY_MODEL")
    )
    llm_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        60.0, validation_alias=AliasChoices("BARKEEPER_LLM_TIMEOUT")
    )
    llm_max_retries: Annotated[int, Field(ge=0, le=20)] = Field(
        4, validation_alias=AliasChoices("BARKEEPER_LLM_MAX_RETRIES")
    )
    embedder: str = Field(
        "local",
        pattern=r"^(local|openai|hashing)$",
        validation_alias=AliasChoices("BARKEEPER_EMBEDDER"),
    )
    embedding_model: str = Field(
        "text-embedding-3-small", validation_alias=AliasChoices("BARKEEPER_EMBEDDING_MODEL")
    )
    embedding_spin: Literal["auto", "always", "never"] = Field(
        "never", validation_alias=AliasChoices("BARKEEPER_EMBEDDING_SPIN")
    )

    llm_tools: bool = Field(True, validation_alias=AliasChoices("BARKEEPER_LLM_TOOLS"))
    llm_temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_LLM_TEMPERATURE")
    )
    reply_max_tokens: Annotated[int, Field(ge=16, le=100_000)] = Field(
        1024, validation_alias=AliasChoices("BARKEEPER_REPLY_MAX_TOKENS")
    )

    # --- the reply's context ------------------------------------------------------
    context_tokens: Annotated[int, Field(ge=512, le=2_000_000)] = Field(
        8000, validation_alias=AliasChoices("BARKEEPER_CONTEXT_TOKENS")
    )
    context_persona_share: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.15, validation_alias=AliasChoices("BARKEEPER_CONTEXT_PERSONA_SHARE")
    )
    context_memory_share: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.2, validation_alias=AliasChoices("BARKEEPER_CONTEXT_MEMORY_SHARE")
    )
    context_history_share: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.55, validation_alias=AliasChoices("BARKEEPER_CONTEXT_HISTORY_SHARE")
    )
    context_memories: Annotated[int, Field(ge=0, le=200)] = Field(
        8, validation_alias=AliasChoices("BARKEEPER_CONTEXT_MEMORIES")
    )
    team_leader_context_limit: Annotated[int, Field(ge=0, le=10_000)] = Field(
        100, validation_alias=AliasChoices("TEAM_LEADER_CONTEXT_LIMIT")
    )
    discord_timezone: str = Field("UTC", validation_alias=AliasChoices("DISCORD_TIMEZONE"))

    # --- agent, history and backfill (seed names) ---------------------------------
    agent_history_runs: Annotated[int, Field(ge=0, le=10_000)] = Field(
        10, validation_alias=AliasChoices("AGENT_HISTORY_RUNS")
    )
    max_agents: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        10, validation_alias=AliasChoices("MAX_AGENTS")
    )
    context_agent_max_messages: Annotated[int, Field(ge=1, le=100_000_000)] = Field(
        50_000, validation_alias=AliasChoices("CONTEXT_AGENT_MAX_MESSAGES")
    )
    backfill_concurrency: Annotated[int, Field(ge=1, le=1000)] = Field(
        4, validation_alias=AliasChoices("BACKFILL_CONCURRENCY")
    )
    backfill_max_iterations: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        1000, validation_alias=AliasChoices("BACKFILL_MAX_ITERATIONS")
    )
    backfill_parallel_batches: Annotated[int, Field(ge=1, le=64)] = Field(
        1, validation_alias=AliasChoices("BACKFILL_PARALLEL_BATCHES")
    )
    backfill_max_fetch_limit: Annotated[int, Field(ge=1, le=100)] = Field(
        100, validation_alias=AliasChoices("BACKFILL_MAX_FETCH_LIMIT")
    )
    message_sync_limit: Annotated[int, Field(ge=0, le=100_000)] = Field(
        200, validation_alias=AliasChoices("MESSAGE_SYNC_LIMIT")
    )
    backfill_verify_pages: Annotated[int, Field(ge=0, le=10_000)] = Field(
        2, validation_alias=AliasChoices("BACKFILL_VERIFY_PAGES")
    )

    # --- conversations and companion (Loyal Companion / VoltAgent) ----------------
    conversation_timeout_minutes: Annotated[float, Field(gt=0, le=525_600)] = Field(
        60.0, validation_alias=AliasChoices("BARKEEPER_CONVERSATION_TIMEOUT_MINUTES")
    )
    storage_limit: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        100, validation_alias=AliasChoices("BARKEEPER_STORAGE_LIMIT")
    )
    fact_extraction_rate: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.4, validation_alias=AliasChoices("BARKEEPER_FACT_EXTRACTION_RATE")
    )
    mood_decay: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.05, validation_alias=AliasChoices("BARKEEPER_MOOD_DECAY")
    )
    # --- the memory outbox (durable memory work, see docs/operators.md) ------------
    memory_workers: Annotated[int, Field(ge=1, le=64)] = Field(
        2, validation_alias=AliasChoices("BARKEEPER_MEMORY_WORKERS")
    )
    memory_max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        5, validation_alias=AliasChoices("BARKEEPER_MEMORY_MAX_ATTEMPTS")
    )
    memory_lease_seconds: Annotated[float, Field(ge=1, le=86_400)] = Field(
        300.0, validation_alias=AliasChoices("BARKEEPER_MEMORY_LEASE_SECONDS")
    )
    memory_backoff_seconds: Annotated[float, Field(ge=0, le=86_400)] = Field(
        10.0, validation_alias=AliasChoices("BARKEEPER_MEMORY_BACKOFF_SECONDS")
    )
    memory_backoff_max_seconds: Annotated[float, Field(ge=0, le=604_800)] = Field(
        3600.0, validation_alias=AliasChoices("BARKEEPER_MEMORY_BACKOFF_MAX_SECONDS")
    )
    memory_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        1.0, validation_alias=AliasChoices("BARKEEPER_MEMORY_POLL_SECONDS")
    )
    memory_hold_seconds: Annotated[float, Field(ge=0, le=86_400)] = Field(
        120.0, validation_alias=AliasChoices("BARKEEPER_MEMORY_HOLD_SECONDS")
    )
    persona_file: str | None = Field(None, validation_alias=AliasChoices("BARKEEPER_PERSONA_FILE"))
    companion: bool = Field(True, validation_alias=AliasChoices("BARKEEPER_COMPANION"))
    crisis_resources: str | None = Field(
        None, validation_alias=AliasChoices("BARKEEPER_CRISIS_RESOURCES")
    )
    personas_dir: str | None = Field(None, validation_alias=AliasChoices("BARKEEPER_PERSONAS_DIR"))
    features: str = Field(
        "mood,relationships,styles,opinions,followups,associations",
        pattern=(
            r"^\s*((mood|relationships|styles|opinions|followups|associations)"
            r"\s*(,\s*|$))*$"
        ),
        validation_alias=AliasChoices("BARKEEPER_FEATURES"),
    )
    proactive_per_day: Annotated[int, Field(ge=0, le=100)] = Field(
        3, validation_alias=AliasChoices("BARKEEPER_PROACTIVE_PER_DAY")
    )
    quiet_hours: str = Field(
        "22:00-08:00",
        pattern=r"(?i)^\s*(|off|none|([01]?\d|2[0-3]):[0-5]\d\s*-\s*([01]?\d|2[0-3]):[0-5]\d)\s*$",
        validation_alias=AliasChoices("BARKEEPER_QUIET_HOURS"),
    )
    followup_hour: Annotated[int, Field(ge=0, le=23)] = Field(
        10, validation_alias=AliasChoices("BARKEEPER_FOLLOWUP_HOUR")
    )
    followup_poll: Annotated[float, Field(ge=0.01, le=3600)] = Field(
        30.0, validation_alias=AliasChoices("BARKEEPER_FOLLOWUP_POLL")
    )
    followup_lease: Annotated[float, Field(ge=1, le=86_400)] = Field(
        300.0, validation_alias=AliasChoices("BARKEEPER_FOLLOWUP_LEASE")
    )

    log_level: str = Field(
        "INFO",
        pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        validation_alias=AliasChoices("BARKEEPER_LOG_LEVEL"),
    )

    @field_validator(
        "barkeeper_database_url",
        "postgres_url",
        "database_url",
        "db_password",
        "db_host",
        "discord_token",
        "discord_api_base",
        "discord_gateway_url",
        "dev_guild_id",
        "groq_api_key",
        "openai_api_key",
        "llm_api_key",
        "memory_api_key",
        "memory_base_url",
        "persona_file",
        "personas_dir",
        "crisis_resources",
        "shard_count",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(
        "admin_ids",
        "allowed_users",
        "blocked_users",
        "allowed_roles",
        "blocked_roles",
        "allowed_channels",
        "blocked_channels",
        "allowed_categories",
        "blocked_categories",
    )
    @classmethod
    def _id_list(cls, value: str) -> str:
        for item in value.replace(",", " ").split():
            if not (item.isascii() and item.isdigit() and 0 < int(item) < 2**63):
                raise ValueError(f"{item!r} is not a Discord id; give ids separated by commas")
        return value

    @field_validator("shard_ids")
    @classmethod
    def _shard_list(cls, value: str) -> str:
        for item in value.replace(",", " ").split():
            if not (item.isascii() and item.isdigit() and int(item) < 100_000):
                raise ValueError(f"{item!r} is not a shard id; give ids (0, 1…) and commas")
        return value

    def ids(self, name: str) -> frozenset[int]:
        """The Discord ids of a comma-separated id setting (``"admin_ids"``…)."""
        value = getattr(self, name)
        return frozenset(int(item) for item in str(value).replace(",", " ").split())

    @field_validator("discord_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/London"
            ) from None
        return value

    @field_validator("llm_temperature", mode="before")
    @classmethod
    def _empty_temperature(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _shares_fit(self) -> Self:
        total = self.context_persona_share + self.context_memory_share
        total += self.context_history_share
        if total > 1.0 + 1e-9:
            raise ValueError(
                "BARKEEPER_CONTEXT_PERSONA_SHARE + BARKEEPER_CONTEXT_MEMORY_SHARE + "
                f"BARKEEPER_CONTEXT_HISTORY_SHARE must be at most 1, not {total:g}"
            )
        return self

    @model_validator(mode="after")
    def _shards_fit(self) -> Self:
        ids = self.shard_id_list()
        if ids and self.shard_count is None:
            raise ValueError("SHARD_IDS needs SHARD_COUNT (the total over every process)")
        if self.shard_count is not None and any(i >= self.shard_count for i in ids):
            raise ValueError(
                f"SHARD_IDS must be below SHARD_COUNT ({self.shard_count}): shard ids count from 0"
            )
        return self

    def shard_id_list(self) -> list[int]:
        """``SHARD_IDS`` as a sorted list of distinct ids (empty: every shard)."""
        return sorted({int(item) for item in self.shard_ids.replace(",", " ").split()})

    def companion_features(self) -> frozenset[str]:
        """``BARKEEPER_FEATURES`` as a set: the companion's parts that are on."""
        return frozenset(f.strip() for f in self.features.split(",") if f.strip())

    def configured_database_url(self) -> str | None:
        """The database URL in force, by the precedence in this module's docstring."""
        for secret in (self.barkeeper_database_url, self.postgres_url, self.database_url):
            if secret is not None:
                return secret.get_secret_value().strip()
        if self.db_host:
            user = urllib.parse.quote(self.db_user, safe="")
            password = (
                ":" + urllib.parse.quote(self.db_password.get_secret_value(), safe="")
                if self.db_password is not None
                else ""
            )
            host = f"[{self.db_host}]" if ":" in self.db_host else self.db_host
            name = urllib.parse.quote(self.db_name, safe="")
            url = f"postgresql://{user}{password}@{host}:{self.db_port}/{name}"
            if self.db_ssl:
                url += "?sslmode=require"
            return url
        return None

    def database_url_source(self) -> str | None:
        """The name of the variable the database URL came from, for ``doctor``."""
        for name, secret in (
            ("BARKEEPER_DATABASE_URL", self.barkeeper_database_url),
            ("POSTGRES_URL", self.postgres_url),
            ("DATABASE_URL", self.database_url),
        ):
            if secret is not None:
                return name
        return "DB_HOST" if self.db_host else None

    def effective_database_mode(self) -> DatabaseMode:
        """The mode actually used: ``auto`` resolved against the configured URL."""
        if self.database is not DatabaseMode.AUTO:
            return self.database
        return DatabaseMode.SERVER if self.configured_database_url() else DatabaseMode.EMBEDDED

    @property
    def pool_max_size(self) -> int:
        """Largest pool size: ``DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW``."""
        return self.database_pool_size + self.database_max_overflow

    def memory_llm_api_key(self) -> str | None:
        """API key for the memory model: ``BARKEEPER_MEMORY_API_KEY``, else the chat model's."""
        if self.memory_api_key is not None:
            return self.memory_api_key.get_secret_value()
        return self.chat_llm_api_key()

    def chat_llm_api_key(self) -> str | None:
        """API key for the chat model.

        ``BARKEEPER_LLM_API_KEY``, else the provider's own key: ``GROQ_API_KEY`` then
        ``OPENAI_API_KEY`` for Groq's endpoint, ``OPENAI_API_KEY`` then
        ``GROQ_API_KEY`` for any other (OpenAI, OpenRouter, a local server).
        """
        provider = (self.groq_api_key, self.openai_api_key)
        if urllib.parse.urlsplit(self.llm_base_url).hostname != "api.groq.com":
            provider = (self.openai_api_key, self.groq_api_key)
        for secret in (self.llm_api_key, *provider):
            if secret is not None:
                return secret.get_secret_value()
        return None


def _env_names(field_name: str) -> str:
    field = Settings.model_fields.get(field_name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return " / ".join(str(choice) for choice in alias.choices)
    return field_name.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment (and ``.env``), failing with a clear message.

    Args:
        **overrides: values that win over the environment, by field name.

    Raises:
        ConfigError: a value is invalid; the message names the environment variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error.get("loc")
            message = error.get("msg", "invalid value")
            if not loc:  # a rule across several settings names them in its message
                problems.append(message)
                continue
            field = str(loc[0])
            name = field if field.isupper() else _env_names(field)
            problems.append(f"{name}: {message}")
        raise ConfigError("invalid setting(s): " + "; ".join(problems)) from None
