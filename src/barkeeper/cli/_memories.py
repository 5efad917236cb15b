"""``barkeeper memories``: list, add, forget and search what barkeeper remembers about a user.

USER_ID is the user's Discord id (``users.discord_id``), or with ``--external`` their
id in a non-Discord agent (``users.external_id``). A user barkeeper does not know is
a one-line error, except for ``add``, which creates them. Searches embed the query
with ``BARKEEPER_EMBEDDER``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from barkeeper.cli._common import (
    console,
    err_console,
    id_argument,
    run,
    settings_and_logging,
    styled,
    user_id_or_external,
)
from barkeeper.companion import UserStore
from barkeeper.config import Settings
from barkeeper.db import Database
from barkeeper.errors import NotFoundError
from barkeeper.learning import build_embedder
from barkeeper.llm import load_token_tables
from barkeeper.memory import MEMORY_TYPES, Memory, MemoryStore, MemoryType

__all__ = ["app", "resolve_user"]

T = TypeVar("T")

app = typer.Typer(
    help="List, add, forget and search what barkeeper remembers about one user.",
    no_args_is_help=True,
)

UserIdArg = Annotated[
    str,
    typer.Argument(
        help="The user's Discord id (or, with --external, their external id).",
        show_default=False,
    ),
]
ExternalOpt = Annotated[
    bool, typer.Option("--external", help="USER_ID is an external (non-Discord) user id.")
]
TypeOpt = Annotated[
    str | None,
    typer.Option(
        "--type",
        "-t",
        help=f"Memory type: one of {', '.join(MEMORY_TYPES)}.",
        show_default=False,
    ),
]

# The Discord id is all the CLI knows: the names stay empty until the bot sees the user.
_UPSERT_DISCORD_USER = """
INSERT INTO users (discord_id) VALUES ($1)
ON CONFLICT (discord_id) DO UPDATE SET discord_id = EXCLUDED.discord_id
RETURNING id
"""


def _memory_type(value: str | None) -> MemoryType | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    for kind in MEMORY_TYPES:
        if kind == lowered:
            return kind
    raise typer.BadParameter(f"{value!r} is not a memory type ({', '.join(MEMORY_TYPES)})")


async def resolve_user(db: Database, who: int | str, *, create: bool) -> int:
    """The internal ``users.id`` of a Discord (or external) user id.

    Args:
        db: The database.
        who: A Discord id (an ``int``, see :func:`~barkeeper.cli._common.parse_id`),
            or an external id (a ``str``).
        create: Create the user when unknown (a Discord user gets only the id; the
            names are filled in when the bot sees them).

    Raises:
        NotFoundError: No such user and ``create`` is false.
    """
    users = UserStore(db)
    if isinstance(who, str):
        if create:
            return (await users.get_or_create_external_user(who)).id
        found = await users.get_by_external_id(who)
        if found is None:
            raise NotFoundError(f"no user with external id {who!r}")
        return found.id
    discord_id = who
    if create:
        async with db.acquire() as conn:
            return int(await conn.fetchval(_UPSERT_DISCORD_USER, discord_id))
    found = await users.get_by_discord_id(discord_id)
    if found is None:
        raise NotFoundError(f"no user with Discord id {discord_id}")
    return found.id


def _with_store(settings: Settings, action: Callable[[Database, MemoryStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Database.connect(settings, min_size=1, max_size=2, upgrade=True) as db:
            # Token tables are loaded only by the command that counts tokens (search):
            # building one costs a second or two of CPU that list/add/forget don't need.
            return await action(db, MemoryStore(db, build_embedder(settings)))

    return run(main())


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def _memory_table(title: str, memories: list[Memory], scores: list[float] | None = None) -> Table:
    table = Table(title=title)
    table.add_column("id", justify="right")
    if scores is not None:
        table.add_column("score", justify="right")
    for name in ("type", "content"):
        table.add_column(name)
    for name in ("conf.", "imp."):
        table.add_column(name, justify="right")
    table.add_column("when")
    table.add_column("v", justify="right")
    table.add_column("state")
    table.add_column("expires")
    table.add_column("updated")
    for n, memory in enumerate(memories):
        row: list[str | Text] = [str(memory.id)]
        if scores is not None:
            row.append(f"{scores[n]:.3f}")
        row += [
            memory.memory_type,
            memory.content,
            f"{memory.confidence:.2f}",
            f"{memory.importance:.2f}",
            memory.temporal_relevance,
            str(memory.version),
            "valid" if memory.is_valid else styled("invalidated", "dim"),
            _when(memory.expires_at),
            _when(memory.updated_at),
        ]
        table.add_row(*row)
    return table


@app.command("list")
def list_memories(
    user_id: UserIdArg,
    memory_type: TypeOpt = None,
    include_invalid: Annotated[
        bool, typer.Option("--all", "-a", help="Include invalidated (contradicted) memories.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="Show at most this many.")
    ] = 100,
    external: ExternalOpt = False,
) -> None:
    """List the user's memories, newest first (expired and forgotten ones never show)."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()
    kind = _memory_type(memory_type)

    async def action(db: Database, store: MemoryStore) -> tuple[list[Memory], int]:
        uid = await resolve_user(db, who, create=False)
        memories = await store.list_memories(
            uid,
            memory_types=[kind] if kind else None,
            include_invalid=include_invalid,
            limit=limit,
        )
        return memories, await store.count(uid, include_invalid=include_invalid)

    memories, total = _with_store(settings, action)
    if not memories:
        console.print(f"No memories of {user_id}" + (f" of type {kind}." if kind else "."))
        return
    shown = f"{len(memories)} of {total}" if len(memories) < total else str(len(memories))
    console.print(_memory_table(f"Memories of {user_id} ({shown})", memories))


@app.command()
def add(
    user_id: UserIdArg,
    text: Annotated[str, typer.Argument(help="The fact to remember, in one sentence.")],
    memory_type: TypeOpt = "general",
    importance: Annotated[
        float, typer.Option("--importance", "-i", min=0.0, max=1.0, help="How much it matters.")
    ] = 0.5,
    external: ExternalOpt = False,
) -> None:
    """Add a memory for the user (creating the user if barkeeper does not know them yet)."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()
    kind = _memory_type(memory_type) or "general"

    async def action(db: Database, store: MemoryStore) -> Memory:
        uid = await resolve_user(db, who, create=True)
        return await store.add(
            uid,
            text,
            memory_type=kind,
            importance=importance,
            source="cli",
            changed_by="cli",
            reason="added with barkeeper memories add",
        )

    memory = _with_store(settings, action)
    console.print(f"Added memory {memory.id} for {user_id}: {memory.content}")


@app.command()
def forget(
    user_id: UserIdArg,
    memory_id: Annotated[
        str | None,
        typer.Argument(help="The memory to forget (see `list`).", show_default=False),
    ] = None,
    forget_all: Annotated[
        bool, typer.Option("--all", help="Forget every memory of the user.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    external: ExternalOpt = False,
) -> None:
    """Erase one memory of the user (its text and history), or with --all every one."""
    if (memory_id is None) == (not forget_all):
        raise typer.BadParameter("give either a MEMORY_ID or --all (not both)")
    who = user_id_or_external(user_id, external=external)
    mid = None if memory_id is None else id_argument(memory_id, "MEMORY_ID", "memory id")
    settings = settings_and_logging()

    async def check(db: Database, store: MemoryStore) -> int:
        uid = await resolve_user(db, who, create=False)
        if mid is not None:
            await store.get(uid, mid)  # NotFoundError: not theirs, or gone
            return 1
        return await store.count(uid, include_invalid=True)

    count = _with_store(settings, check)
    if count == 0:
        console.print(f"{user_id} has no memories.")
        return
    what = f"memory {mid}" if mid is not None else f"all {count} memories"
    if not yes and not typer.confirm(f"Forget {what} of {user_id} permanently?", default=False):
        err_console.print("Nothing forgotten.")
        raise typer.Exit(1)

    async def action(db: Database, store: MemoryStore) -> int:
        uid = await resolve_user(db, who, create=False)
        if mid is not None:
            await store.forget(uid, mid, changed_by="cli", reason="barkeeper memories forget")
            return 1
        return await store.forget_all(uid)

    done = _with_store(settings, action)
    console.print(f"Forgot {done} {'memory' if done == 1 else 'memories'} of {user_id}.")


@app.command()
def search(
    user_id: UserIdArg,
    query: Annotated[str, typer.Argument(help="What to look for, in words.")],
    k: Annotated[int, typer.Option("-k", min=1, max=200, help="How many results.")] = 10,
    external: ExternalOpt = False,
) -> None:
    """Search the user's valid memories (full text, meaning, recency and importance)."""
    who = user_id_or_external(user_id, external=external)
    settings = settings_and_logging()
    load_token_tables()  # before the event loop starts: search counts tokens per hit

    async def action(db: Database, store: MemoryStore) -> tuple[list[Memory], list[float]]:
        uid = await resolve_user(db, who, create=False)
        hits = await store.search(uid, query, k=k)
        return [h.item for h in hits], [h.score for h in hits]

    memories, scores = _with_store(settings, action)
    if not memories:
        console.print(f"No memory of {user_id} matches.")
        return
    title = f"Memories of {user_id} for {query!r}"
    console.print(_memory_table(title, memories, scores))


@app.command()
def history(
    user_id: UserIdArg,
    memory_id: Annotated[
        str, typer.Argument(help="The memory (see `list --all`).", show_default=False)
    ],
    external: ExternalOpt = False,
) -> None:
    """Show every version of one of the user's memories: what changed, who did it, why."""
    who = user_id_or_external(user_id, external=external)
    mid = id_argument(memory_id, "MEMORY_ID", "memory id")
    settings = settings_and_logging()

    async def action(db: Database, store: MemoryStore) -> Table:
        uid = await resolve_user(db, who, create=False)
        table = Table(title=f"History of memory {mid}")
        for name in ("v", "change", "by", "reason", "content", "at"):
            table.add_column(name)
        for version in await store.history(uid, mid):
            table.add_row(
                str(version.version),
                version.change,
                version.changed_by,
                version.reason or "",
                version.content,
                _when(version.created_at),
            )
        return table

    console.print(_with_store(settings, action))
