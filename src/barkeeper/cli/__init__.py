"""barkeeper's command line: ``barkeeper --help``.

User mistakes (a bad setting, an unreachable database) are one clear line on stderr
and a non-zero exit code, never a traceback.

Example::

    from typer.testing import CliRunner
    from barkeeper.cli import app

    result = CliRunner().invoke(app, ["db", "status"])
"""

from barkeeper.cli._app import app, main

__all__ = ["app", "main"]
