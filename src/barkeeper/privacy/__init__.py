"""What barkeeper keeps about a user: show it, export it, forget it everywhere.

The user's rows are found from the catalog (see :mod:`barkeeper.privacy._graph`):
the ``users`` row, everything referencing it through foreign keys, the Discord
messages they wrote (their messages in shared channels are theirs too) and everything
referencing those. ``forget`` deletes all of it in one transaction and leaves a
tombstone, so that none of their earlier words is ever stored again (see
:meth:`Privacy.forget`).

Example::

    privacy = Privacy(db)
    who = await privacy.find_user(discord_id=1234)
    print(await privacy.show(who))         # counts per table
    document = await privacy.export(who)   # one JSON-ready dict
    await privacy.forget(who)              # gone, everywhere
"""

from barkeeper.privacy._privacy import DERIVED_TABLES, Privacy, PrivacyReport, UserRef

__all__ = [
    "DERIVED_TABLES",
    "Privacy",
    "PrivacyReport",
    "UserRef",
]
