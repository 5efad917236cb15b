"""The one error hierarchy of barkeeper.

Every error says what went wrong and what to do about it. Driver errors (asyncpg,
openai, discord.py) are translated into these at the boundary of the module that
talks to the driver. The original is kept as ``__cause__`` only where it cannot carry
a secret: a failed statement keeps asyncpg's error (SQLSTATE, constraint, key), also
when it becomes a :class:`NotFoundError` or :class:`InvalidInputError`. The others
are raised ``from None``, and their message carries what is safe to show:

- connecting to PostgreSQL: the driver's text quotes what it was given (host, user,
  file paths, and from a malformed URL part of the password);
- Discord: discord.py's exception holds the HTTP response, whose request carries the
  bot token;
- the language model: openai's exception holds the request (the API key in its
  headers), and its message is not redacted.

::

    BarkeeperError
    ├── ConfigError (ValueError)            a setting is missing or invalid
    ├── DatabaseError                       anything about PostgreSQL
    │   ├── DatabaseUnreachableError        no server at host:port
    │   ├── AuthenticationFailedError       wrong user or password
    │   ├── DatabaseMissingError            the database does not exist
    │   ├── EmbeddedServerError             the embedded PostgreSQL did not start
    │   ├── DiskFullError                   the server ran out of disk space
    │   ├── SchemaTooNewError               the database was migrated by newer code
    │   └── QueryError                      a statement failed (SQLSTATE kept)
    ├── NotFoundError (LookupError)         a row asked for does not exist
    ├── InvalidInputError (ValueError)      an argument is out of range or malformed
    │   └── ForgottenContentError           content of a forgotten person, from before
    ├── LLMError                            anything about the language model
    │   ├── LLMUnavailableError             endpoint unreachable / 5xx after retries
    │   ├── LLMAuthenticationError          bad API key
    │   ├── LLMRateLimitError               429 after retries
    │   └── LLMOutputError                  the model's output could not be parsed
    └── DiscordError                        anything about Discord
        ├── DiscordAuthenticationError      bad bot token
        └── DiscordUnavailableError         Discord (or the emulator) unreachable / 5xx
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailedError",
    "BarkeeperError",
    "ConfigError",
    "DatabaseError",
    "DatabaseMissingError",
    "DatabaseUnreachableError",
    "DiscordAuthenticationError",
    "DiscordError",
    "DiscordUnavailableError",
    "DiskFullError",
    "EmbeddedServerError",
    "ForgottenContentError",
    "InvalidInputError",
    "LLMAuthenticationError",
    "LLMError",
    "LLMOutputError",
    "LLMRateLimitError",
    "LLMUnavailableError",
    "NotFoundError",
    "QueryError",
    "SchemaTooNewError",
]


class BarkeeperError(Exception):
    """Base class of every error barkeeper raises on purpose."""


class ConfigError(BarkeeperError, ValueError):
    """A setting is missing or has an invalid value; the message names the variable."""


class DatabaseError(BarkeeperError):
    """Something went wrong talking to PostgreSQL."""


class DatabaseUnreachableError(DatabaseError):
    """No PostgreSQL server answered at the configured address."""


class AuthenticationFailedError(DatabaseError):
    """PostgreSQL refused the user name or password."""


class DatabaseMissingError(DatabaseError):
    """The server is up but the database named in the URL does not exist."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL could not be initialised or started."""


class DiskFullError(DatabaseError):
    """PostgreSQL could not write because the disk is full."""


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer barkeeper than this one."""


class QueryError(DatabaseError):
    """A statement failed; ``sqlstate`` holds PostgreSQL's error code when known."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class NotFoundError(BarkeeperError, LookupError):
    """The row asked for does not exist (or belongs to someone else)."""


class InvalidInputError(BarkeeperError, ValueError):
    """An argument is out of range or malformed; the message says which and why."""


class ForgottenContentError(InvalidInputError):
    """The write would keep what a forgotten person wrote before they were forgotten.

    ``privacy forget`` leaves a tombstone; the database refuses their earlier content
    (see ``docs/schema.md``, "Tombstones"). What they write after it is stored.
    """


class LLMError(BarkeeperError):
    """Something went wrong talking to the language model."""


class LLMUnavailableError(LLMError):
    """The model endpoint could not be reached or kept failing."""


class LLMAuthenticationError(LLMError):
    """The model endpoint refused the API key."""


class LLMRateLimitError(LLMError):
    """The model endpoint kept answering 429 after every retry."""


class LLMOutputError(LLMError):
    """The model's answer could not be parsed into the expected structure."""


class DiscordError(BarkeeperError):
    """Something went wrong talking to Discord."""


class DiscordAuthenticationError(DiscordError):
    """Discord refused the bot token."""


class DiscordUnavailableError(DiscordError):
    """Discord (or the configured ``DISCORD_API_BASE``) could not be reached."""
