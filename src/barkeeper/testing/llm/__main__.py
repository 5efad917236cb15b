"""Run the test LLM server on its own: ``python -m barkeeper.testing.llm --help``.

For benchmarks and manual runs of the bot against a scripted model. It prints
one line, ``listening on http://HOST:PORT/v1``, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from barkeeper.testing.llm._script import FaultKind, load_script
from barkeeper.testing.llm._server import LLMServer, RecordedRequest

_KINDS = ", ".join(kind.value for kind in FaultKind)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m barkeeper.testing.llm``."""
    parser = argparse.ArgumentParser(
        prog="python -m barkeeper.testing.llm",
        description=(
            "A local OpenAI-compatible server (chat completions, embeddings, models) "
            "with scripted answers and injected faults, for tests and benchmarks. "
            "Unscripted chat requests get the last user message echoed back "
            "({} in json_object mode, a minimal schema instance in json_schema mode)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8089, help="port to listen on; 0 picks a free one (8089)"
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY'; others get 401 (default: no check)",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="ID",
        help="a model id listed by GET /v1/models (repeatable)",
    )
    parser.add_argument(
        "--embedding-dimension",
        type=int,
        default=384,
        metavar="N",
        help="embedding size when a request names no 'dimensions' (384)",
    )
    parser.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject KIND into a fraction RATE of requests (repeatable); KIND is one of {_KINDS}",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the random faults (default: random)"
    )
    parser.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="Retry-After sent with random rate-limit faults (1.0)",
    )
    parser.add_argument(
        "--timeout-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a random timeout fault holds a request (30)",
    )
    parser.add_argument(
        "--script",
        metavar="FILE",
        help=(
            "JSON file of scripted answers: a list of replies, or "
            '{"replies": [...], "faults": [{"fault": KIND, "times": N}]}; '
            'a reply is a string, {"content": ...}, {"tool_calls": [{"name", "arguments"}]}, '
            '{"json": value} or {"fault": KIND}'
        ),
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="do not log each request to stderr"
    )
    return parser


def _parse_rates(
    parser: argparse.ArgumentParser, specs: Sequence[str]
) -> dict[FaultKind | str, float]:
    rates: dict[FaultKind | str, float] = {}
    for spec in specs:
        kind, sep, rate = spec.partition("=")
        try:
            if not sep:
                raise ValueError
            rates[FaultKind(kind.strip())] = float(rate)
        except ValueError:
            parser.error(f"--fault-rate wants KIND=RATE with KIND one of {_KINDS}, not {spec!r}")
    return rates


def _log(record: RecordedRequest) -> None:
    fault = f" fault={record.fault.value}" if record.fault else ""
    print(
        f"{record.method} {record.path} -> {record.status} "
        f"prompt_tokens={record.prompt_tokens}{fault}",
        file=sys.stderr,
        flush=True,
    )


async def _serve(server: LLMServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"listening on {server.base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve until SIGINT or SIGTERM.

    Returns:
        The exit code: 0 after a clean stop (a usage error exits with 2).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    rates = _parse_rates(parser, args.fault_rate)
    try:
        server = LLMServer(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            models=tuple(args.models) if args.models else LLMServer.DEFAULT_MODELS,
            embedding_dimension=args.embedding_dimension,
            fault_rates=rates,
            seed=args.seed,
            retry_after=args.retry_after,
            timeout_delay=args.timeout_delay,
            on_request=None if args.quiet else _log,
        )
        if args.script:
            replies, faults = load_script(args.script)
            server.script(*replies)
            for fault, times in faults:
                server.inject(fault, times=times)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(server))
    except OSError as exc:  # the port is taken, the host cannot be bound, …
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
