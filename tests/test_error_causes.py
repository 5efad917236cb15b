"""What ``errors.py`` promises about ``__cause__``: kept where safe, dropped where secret."""

from __future__ import annotations

import traceback

import pytest

from barkeeper.companion import PreferenceStore
from barkeeper.config import Settings
from barkeeper.conversations import ConversationStore, SessionStore
from barkeeper.db import Database
from barkeeper.errors import (
    DatabaseUnreachableError,
    LLMAuthenticationError,
    NotFoundError,
    QueryError,
)
from barkeeper.llm import OpenAIChatModel, RetryPolicy
from barkeeper.testing.llm import LLMServer

NOBODY = 987_654_321


def _printed(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


async def test_a_failed_statement_keeps_the_drivers_error(db: Database) -> None:
    conversations = ConversationStore(db)
    with pytest.raises(NotFoundError) as caught:
        await conversations.create_conversation(NOBODY)
    cause = caught.value.__cause__
    assert isinstance(cause, QueryError) and cause.sqlstate == "23503"
    assert type(cause.__cause__).__name__ == "ForeignKeyViolationError"

    with pytest.raises(NotFoundError) as caught:
        await PreferenceStore(db).set_preference(NOBODY, "tone", "gentle")
    assert isinstance(caught.value.__cause__, QueryError)
    with pytest.raises(NotFoundError) as caught:
        await SessionStore(db).get_or_create_session("helper", NOBODY)
    assert isinstance(caught.value.__cause__, QueryError)


async def test_a_connection_error_drops_the_drivers_error(settings: Settings) -> None:
    password = "s3cret-" + "pw"  # never spelt out where a traceback would quote the line
    with pytest.raises(DatabaseUnreachableError) as caught:
        await Database.open(settings, url=f"postgresql://bob:{password}@127.0.0.1:1/app")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert password not in _printed(caught.value)


async def test_a_language_model_error_drops_openais_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    wrong = "sk-wrong-key-fedcba9876543210"
    async with (
        LLMServer(api_key="sk-right-key-0123456789") as srv,
        OpenAIChatModel(
            base_url=srv.base_url, api_key=wrong, retry_policy=RetryPolicy(max_retries=0)
        ) as llm,
    ):
        with pytest.raises(LLMAuthenticationError) as caught:
            await llm.complete([{"role": "user", "content": "Hello"}])
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    printed = _printed(caught.value)
    for part in (wrong, wrong[-4:]):
        assert part not in printed
