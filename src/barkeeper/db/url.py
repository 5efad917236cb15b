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


def _split_hosts(hostspec: str) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    hosts: list[str] = []
    ports: list[int | None] = []
    if not hostspec:
        return (), ()
    for part in hostspec.split(","):
        match = re.fullmatch(
            r"\[(?P<v6>[^\]]+)\](?::(?P<p6>\d*))?|(?P<h>[^:]*)(?::(?P<p>\d*))?", part
        )
        if match is None:
            raise ConfigError(f"database URL: cannot read host part {part!r}")
        host = match.group("v6") or urllib.parse.unquote(match.group("h") or "")
        port_text = match.group("p6") or match.group("p")
        port = int(port_text) if port_text else None
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"database URL: port {port} is out of range 1-65535")
        hosts.append(host)
        ports.append(port)
    return tuple(hosts), tuple(ports)


def parse_database_url(url: str) -> DatabaseURL:
    """Parse a PostgreSQL URL in any of the accepted forms.

    Args:
        url: e.g. ``postgresql+asyncpg://user:p%40ss@db:5432/app?sslmode=require``.

    Returns:
        The parsed URL; percent-encoded parts are decoded.

    Raises:
        ConfigError: the URL is not a PostgreSQL URL; the message shows it masked.
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigError(
            f"database URL {mask_url(text)!r} is not a PostgreSQL URL: expected one of "
            "postgresql://, postgres://, postgresql+asyncpg://, postgresql+psycopg_async://"
        )
    netloc, _, tail = rest.partition("/")
    if "?" in netloc:  # postgresql://host?sslmode=… with no path
        netloc, _, query_only = netloc.partition("?")
        tail = "?" + query_only
    path, _, query = tail.partition("?")
    user: str | None = None
    password: str | None = None
    if "@" in netloc:
        auth, _, hostspec = netloc.rpartition("@")
        raw_user, colon, raw_password = auth.partition(":")
        user = urllib.parse.unquote(raw_user) if raw_user else None
        password = urllib.parse.unquote(raw_password) if colon else None
    else:
        hostspec = netloc
    hosts, ports = _split_hosts(hostspec)
    try:
        params = tuple(urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    except ValueError as exc:
        raise ConfigError(f"database URL {mask_url(text)!r}: bad query string ({exc})") from None
    database = urllib.parse.unquote(path) if path else None
    return DatabaseURL(
        user=user,
        password=password or None,
        hosts=hosts,
        ports=ports,
        database=database,
        params=params,
    )


_NETLOC_PASSWORD = re.compile(r"(?P<pre>://[^:/@?#]*:)(?P<pw>[^@/?#]*)(?P<post>@)")
_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&](?:ssl)?password=)(?P<pw>[^&#]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """Replace any password in ``url`` with ``***``, even if the URL is malformed.

    Works on text, not on a parsed URL, so that a URL too broken to parse is still
    safe to print.
    """
    masked = _NETLOC_PASSWORD.sub(
        lambda m: m.group("pre") + (_MASK if m.group("pw") else "") + m.group("post"), url
    )
    return _QUERY_PASSWORD.sub(lambda m: m.group("pre") + _MASK, masked)
