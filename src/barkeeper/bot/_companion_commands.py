"""Slash commands of the companion: ``/mood``, ``/relationship``, ``/connect`` for
everyone; ``/persona`` and ``/features`` for a server's admins. Answers are ephemeral.

Who is an admin of a server: a person in ``BARKEEPER_ADMIN_IDS`` (barkeeper's own
admins, everywhere), or a member with Discord's *Manage Server* permission in that
server (its own admins, there only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from barkeeper.companion import FEATURES, GUILD_DEFAULTS, LEVEL_TITLES, Companion

if TYPE_CHECKING:
    from barkeeper.bot._bot import Barkeeper

__all__ = ["CompanionCog", "is_server_admin"]

_OFF = "The companion is switched off on this bot (BARKEEPER_COMPANION=false)."
_NOT_HERE = "That only works in a server channel."
_ADMINS_ONLY = "Only this server's admins (Manage Server) or barkeeper's admins can do that."

Feature = Literal["mood", "relationships", "styles", "opinions", "followups", "associations"]


def is_server_admin(bot: Barkeeper, interaction: discord.Interaction) -> bool:
    """Whether the person may change the companion's settings of this server."""
    if interaction.user.id in bot.admin_ids:
        return True
    if interaction.guild_id is None:
        return False
    return bool(interaction.permissions.manage_guild)


_STANDING = {
    "new_face": "We've only just met",
    "acquaintance": "We know each other a little",
    "friend": "We're friends",
    "good_friend": "We're good friends",
    "close_friend": "You're one of my closest regulars",
}


class CompanionCog(commands.Cog):
    """The companion's commands."""

    def __init__(self, bot: Barkeeper) -> None:
        self.bot = bot

    @property
    def _companion(self) -> Companion | None:
        return self.bot.agent.companion

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True)

    async def _ready(
        self, interaction: discord.Interaction, feature: str | None = None, off_here: str = ""
    ) -> Companion | None:
        """The companion, or ``None`` once the person is told why it cannot answer.

        Args:
            interaction: The command being answered.
            feature: The companion feature the command needs, if any.
            off_here: What to say when ``feature`` is switched off in this place.
        """
        companion = self._companion
        if companion is None:
            await self._say(interaction, _OFF)
            return None
        if feature is not None and not await companion.feature_on(interaction.guild_id, feature):
            await self._say(interaction, off_here)
            return None
        return companion

    # --- everyone ---------------------------------------------------------------------

    @app_commands.command(name="mood", description="How barkeeper feels here, in words")
    async def mood(self, interaction: discord.Interaction) -> None:
        companion = await self._ready(
            interaction, "mood", "I keep my moods to myself here: the mood is switched off."
        )
        if companion is None:
            return
        guild = interaction.guild_id
        mood = await companion.moods.get_mood(guild, companion.now())
        where = "here" if guild is not None else "in our DMs"
        quiet = (
            " It's mild enough that it doesn't change how I talk."
            if mood.intensity < companion.persona.tuning.mood_effect_threshold
            else ""
        )
        await self._say(interaction, f"Right now, {where}, I'm {mood.describe()}.{quiet}")

    @app_commands.command(name="relationship", description="Where you stand with barkeeper")
    async def relationship(self, interaction: discord.Interaction) -> None:
        companion = await self._ready(
            interaction,
            "relationships",
            "I don't keep track of how well I know people here: it's switched off.",
        )
        if companion is None:
            return
        guild = interaction.guild_id
        user = await self.bot.user_for(interaction.user)
        rel = await companion.relationships.get_relationship(user.id, guild, companion.now())
        level = rel.level(companion.persona)
        talks = rel.total_interactions
        said = (
            "we haven't talked yet"
            if talks == 0
            else f"we've talked {talks} time" + ("s" if talks != 1 else "")
        )
        where = "here" if guild is not None else "in our DMs"
        await self._say(
            interaction,
            f"{_STANDING[level]} {where}: {LEVEL_TITLES[level]}, {rel.score:.0f} out of 100 "
            f"({said}).",
        )

    @app_commands.command(
        name="connect", description="Let barkeeper mention what you have in common with others"
    )
    @app_commands.describe(
        mode="on: in this server, things you share with others who turned it on may come up"
    )
    async def connect(self, interaction: discord.Interaction, mode: Literal["on", "off"]) -> None:
        companion = await self._ready(interaction)
        guild = interaction.guild_id
        if companion is None:
            return
        if guild is None:
            await self._say(interaction, _NOT_HERE)
            return
        user = await self.bot.user_for(interaction.user)
        if mode == "off":
            gone = await companion.settings.set_connected(user.id, guild, False)
            await self._say(
                interaction,
                "Connections are off for you in this server: I won't link what you told me "
                f"with anyone else's here ({gone} link{'s' if gone != 1 else ''} removed).",
            )
            return
        await companion.settings.set_connected(user.id, guild, True)
        text = (
            "Connections are on for you in this server: when you and another member who "
            "also turned them on share something (never anything sensitive), I may mention it."
        )
        if not await companion.feature_on(guild, "associations"):
            text += (
                " This server's admins have not turned the feature on yet, so nothing "
                "happens for now."
            )
        await self._say(interaction, text)

    # --- a server's admins ------------------------------------------------------------

    async def _admin(self, interaction: discord.Interaction) -> tuple[Companion, int] | None:
        """The companion and the server, or ``None`` once the person is told why not."""
        companion = await self._ready(interaction)
        if companion is None:
            return None
        if interaction.guild_id is None:
            await self._say(interaction, _NOT_HERE)
            return None
        if not is_server_admin(self.bot, interaction):
            await self._say(interaction, _ADMINS_ONLY)
            return None
        return companion, interaction.guild_id

    @app_commands.command(name="persona", description="Who barkeeper is in this server or channel")
    @app_commands.describe(
        action="show, set or reset",
        name="The persona to use (set); /persona show lists them",
        scope="server (the default for every channel) or channel (this channel only)",
    )
    async def persona(
        self,
        interaction: discord.Interaction,
        action: Literal["show", "set", "reset"],
        name: app_commands.Range[str, 1, 80] | None = None,
        scope: Literal["server", "channel"] = "server",
    ) -> None:
        admitted = await self._admin(interaction)
        if admitted is None:
            return
        companion, guild = admitted
        channel = interaction.channel_id if scope == "channel" else None
        catalog = companion.personas
        settings = companion.settings
        if action == "set":
            chosen = catalog.get(name)
            if chosen is None:
                await self._say(
                    interaction,
                    f"I don't know a persona called {name!r}. Choose one of: "
                    + ", ".join(catalog.names())
                    + ".",
                )
                return
            await settings.set_persona(guild, channel, chosen.name)
            where = "this channel" if channel is not None else "this server"
            await self._say(interaction, f"From now on I'm {chosen.name} in {where}.")
            return
        if action == "reset":
            await settings.set_persona(guild, channel, None)
            where = (
                "this channel follows the server's" if channel else "this server uses the default"
            )
            await self._say(interaction, f"Persona reset: {where} ({catalog.default.name}).")
            return
        place = await settings.get(guild, interaction.channel_id)
        current = catalog.get(place.persona) or catalog.default
        source = (
            "this channel's choice"
            if place.channel_persona
            else "the server's choice"
            if place.guild_persona
            else "the default"
        )
        await self._say(
            interaction,
            f"Here I'm {current.name} ({source}). Personas you can choose: "
            + ", ".join(catalog.names())
            + ".",
        )

    @app_commands.command(name="features", description="Switch barkeeper's companion features here")
    @app_commands.describe(
        feature="The feature to switch (leave out to list them)", mode="on or off"
    )
    async def features(
        self,
        interaction: discord.Interaction,
        feature: Feature | None = None,
        mode: Literal["on", "off"] | None = None,
    ) -> None:
        admitted = await self._admin(interaction)
        if admitted is None:
            return
        companion, guild = admitted
        settings = companion.settings
        if feature is not None and mode is not None:
            switches = await settings.set_feature(guild, feature, mode == "on")
        else:
            place = await settings.get(guild)
            switches = {f: bool(place.switches.get(f, GUILD_DEFAULTS[f])) for f in FEATURES}
        lines = ["Companion features in this server:"]
        for name in FEATURES:
            state = "on" if switches[name] else "off"
            if switches[name] and name not in settings.global_features:
                state = "off (switched off for the whole bot by its operator)"
            lines.append(f"- {name}: {state}")
        await self._say(interaction, "\n".join(lines))
