"""PostgreSQL URLs in every form a user will paste, and their masking for display.

Accepted schemes: ``postgresql://``, ``postgres://``, ``postgresql+asyncpg://``,
``postgresql+psycopg_async://``, ``postgresql+psycopg://`` and ``postgresql+psycopg2://``
(SQLAlchemy's driver suffixes are dropped: barkeeper always talks asyncpg). Query
parameters (``sslmode``, ``host=/socket/dir``, ``application_name``, …) are kept.

A password never leaves this module unmasked except through :meth:`DatabaseURL.dsn`,
which is handed to the driver and nowhere else.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from barkeeper.errors import ConfigError

__all__ = ["DatabaseURL", "mask_url", "parse_database_url"]

_SCHEMES = {
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg_async",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgres+asyncpg",
}
_MASK = "***"
_SECRET_PARAMS = {"password", "sslpassword"}


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed PostgreSQL URL. ``repr`` and ``str`` never show the password."""

    user: str | None
    password: str | None = field(repr=False)
    hosts: tuple[str, ...]
    ports: tuple[int | None, ...]
    database: str | None
    params: tuple[tuple[str, str], ...] = ()

    @property
    def host(self) -> str:
        """The first host, or the socket directory from ``?host=``, or ``localhost``."""
        for key, value in self.params:
            if key == "host" and value:
                return value.split(",")[0]
        return self.hosts[0] if self.hosts else "localhost"

    @property
    def port(self) -> int:
        """The first port, else ``?port=``, else 5432."""
        for key, value in self.params:
            if key == "port" and value:
                try:
                    return int(value.split(",")[0])
                except ValueError:
                    break
        if self.ports and self.ports[0] is not None:
            return self.ports[0]
        return 5432

    @property
    def address(self) -> str:
        """``host:port`` for messages (a socket directory is shown as is)."""
        if self.host.startswith("/"):
            return f"{self.host} (unix socket, port {self.port})"
        return f"{self.host}:{self.port}"

    def _render(self, password: str | None, *, mask: bool) -> str:
        netloc = ""
        if self.user is not None:
            netloc = urllib.parse.quote(self.user, safe="")
            if password is not None:
                netloc += ":" + password
            netloc += "@"
        elif password is not None:
            netloc = ":" + password + "@"
        hostspecs = []
        for host, port in zip(self.hosts, self.ports, strict=True):
            spec = f"[{host}]" if ":" in host else urllib.parse.quote(host, safe="")
            if port is not None:
                spec += f":{port}"
            hostspecs.append(spec)
        netloc += ",".join(hostspecs)
        path = "/" + urllib.parse.quote(self.database, safe="") if self.database else ""
        query = ""
        if self.params:
            query = "?" + "&".join(
                urllib.parse.quote(key, safe="")
                + "="
                + (_MASK if mask and key in _SECRET_PARAMS else urllib.parse.quote(value, safe="/"))
                for key, value in self.params
            )
        return f"postgresql://{netloc}{path}{query}"

    def dsn(self) -> str:
        """The URL for asyncpg, password included. Hand it to the driver only."""
        password = urllib.parse.quote(self.password, safe="") if self.password is not None else None
        return self._render(password, mask=False)

    def masked(self) -> str:
        """The URL with its password replaced by ``***``: safe for logs and messages."""
        return self._render(_MASK if self.password else None, mask=True)

    def with_database(self, database: str) -> DatabaseURL:
        """The same server, another database."""
        return DatabaseURL(
            user=self.user,
            password=self.password,
            hosts=self.hosts,
            ports=self.ports,
            database=database,
            params=self.params,
        )

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"DatabaseURL({self.masked()!r})"


_HOST = r"(?:\[[^\]]+\]|[^:,\[\]]*)(?::\d*)?"
_HOSTSPEC = re.compile(rf"{_HOST}(?:,{_HOST})*")


def _split_auth(rest: str) -> tuple[str | None, str]:
    """Split ``user:password@host…`` at the last ``@``: a pasted password may hold ``@/?#``.

    Read from the right, an unencoded ``@``, ``/``, ``?`` or ``#`` in the password stays in
    the password instead of spilling into the host, path or query (where it would be
    shown). The price: an ``@`` in the path or query must be percent-encoded.
    """
    auth, at, hostpart = rest.rpartition("@")
    if not at:
        return None, rest
    return auth, hostpart


def _split_hostpart(hostpart: str) -> tuple[str, str, str]:
    """``host:port/db?query#fragment`` → (hostspec, path, query); the fragment is dropped."""
    hostpart = hostpart.partition("#")[0]
    cut = min((i for i in (hostpart.find("/"), hostpart.find("?")) if i >= 0), default=-1)
    if cut < 0:
        return hostpart, "", ""
    hostspec, tail = hostpart[:cut], hostpart[cut:]
    path, _, query = tail.partition("?")
    return hostspec, path.removeprefix("/"), query


def _split_hosts(hostspec: str) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    hosts: list[str] = []
    ports: list[int | None] = []
    if not hostspec:
        return (), ()
    for part in hostspec.split(","):
        match = re.fullmatch(
            r"\[(?P<v6>[^\]]+)\](?::(?P<p6>\d*))?|(?P<h>[^:\[\]]*)(?::(?P<p>\d*))?", part
        )
        if match is None:
            # The host part is never echoed: with a mistyped URL it can be the password.
            raise ConfigError(
                "database URL: cannot read its host part (expected host[:port], comma-separated "
                "for several hosts); percent-encode any : @ / ? # in the user name or password"
            )
        host = match.group("v6") or urllib.parse.unquote(match.group("h") or "")
        port_text = match.group("p6") or match.group("p")
        port = int(port_text) if port_text else None
        if port is not None and not 0 < port < 65536:
            raise ConfigError("database URL: a port is out of range 1-65535")
        hosts.append(host)
        ports.append(port)
    return tuple(hosts), tuple(ports)


def parse_database_url(url: str) -> DatabaseURL:
    """Parse a PostgreSQL URL in any of the accepted forms.

    Args:
        url: e.g. ``postgresql+asyncpg://user:p%40ss@db:5432/app?sslmode=require``.

    Returns:
        The parsed URL; percent-encoded parts are decoded. The user information ends at
        the last ``@``, so a pasted password with an unencoded ``@ / ? #`` is read whole.

    Raises:
        ConfigError: the URL is not a PostgreSQL URL or cannot be read; the message
            repeats no part of the URL (a mistyped one can put the password anywhere).
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        # No part of the URL is shown: a mistyped one can put the password anywhere.
        raise ConfigError(
            "the database URL is not a PostgreSQL URL: expected one of "
            "postgresql://, postgres://, postgresql+asyncpg://, postgresql+psycopg_async://"
        )
    auth, hostpart = _split_auth(rest)
    user: str | None = None
    password: str | None = None
    if auth is not None:
        raw_user, colon, raw_password = auth.partition(":")
        user = urllib.parse.unquote(raw_user) if raw_user else None
        password = urllib.parse.unquote(raw_password) if colon else None
    hostspec, path, query = _split_hostpart(hostpart)
    hosts, ports = _split_hosts(hostspec)
    params = tuple(urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    database = urllib.parse.unquote(path) if path else None
    return DatabaseURL(
        user=user,
        password=password or None,
        hosts=hosts,
        ports=ports,
        database=database,
        params=params,
    )


_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&](?:ssl)?password=)(?P<pw>[^&#]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """Replace any password in ``url`` with ``***``, even if the URL is malformed.

    Works on text, not on a parsed URL, so that a URL too broken to parse is still safe
    to print. The user information ends at the *last* ``@`` (as in
    :func:`parse_database_url`), so a password with an unencoded ``@``, ``/``, ``?`` or
    ``#`` is masked whole; when in doubt, more is masked, never less.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme: mask a ``user:password@host`` all the same
        scheme, rest = "", url
    auth, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, password = auth.partition(":")
        if colon and password:
            auth = f"{user}:{_MASK}"
        hostspec = _split_hostpart(hostpart)[0]
        if _HOSTSPEC.fullmatch(hostspec) is None:
            # what follows the last @ is no host: it may be the end of a password
            hostpart = _MASK
        rest = f"{auth}@{hostpart}"
        url = f"{scheme}{sep}{rest}"
    return _QUERY_PASSWORD.sub(lambda m: m.group("pre") + _MASK, url)
