"""`tongban serve` for a receiving gateway process, optionally without outbox delivery.

    python -m bench.receiver --config tongban.toml [--no-delivery]

Without options this is exactly `tongban serve`. With it, the process serves the
federation endpoint (verify, store, apply, receipt) and still queues its replies, but does not
run the outbox dispatcher: another process of the same member delivers them. Until outbox rows
are claimed (`FOR UPDATE SKIP LOCKED`, issue #7), that is the only safe way to run a second
process of a member on one database: two dispatchers both send the same pending rows (see
bench/run.py `outbox_anomalies`). The gateway has no such switch yet; this wrapper stands in.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway.app
import gateway.serve
from bench import trace
from bench.sqlcount import StatementCounter
from bench.workload import TRANSPORT_TYPE
from gateway.app import create_app
from gateway.cli.main import main as tongban
from gateway.config import GatewayConfig
from gateway.db.engine import make_engine
from gateway.federation.messages import BaseHandler, default_handlers
from gateway.federation.outbox import Dispatcher


async def _no_delivery(_self: Dispatcher) -> None:
    await asyncio.Event().wait()  # until cancelled at shutdown


class TransportOnly(BaseHandler):
    """`bench.transport`: case-bound (case, seq, replay checks), stored and receipted, no case
    machine: what a message costs without the domain, for comparison."""

    case_bound = True


def accept_transport_messages() -> None:
    def with_transport(config: GatewayConfig) -> web.Application:
        handlers = default_handlers()
        handlers.register(TRANSPORT_TYPE, TransportOnly())
        return create_app(config, handlers=handlers)

    setattr(gateway.serve, "create_app", with_transport)  # noqa: B010


def count_statements(output: Path) -> None:
    """Count and time every SQL statement of this process; write them to `output` at exit."""
    counter = StatementCounter()
    counter.time_execute()

    def counted(url: str, **kwargs: Any) -> AsyncEngine:
        return counter.attach(make_engine(url, **kwargs))

    setattr(gateway.app, "make_engine", counted)  # noqa: B010
    atexit.register(lambda: output.write_text(json.dumps(counter.dump())))


def trace_stages() -> None:
    """bench/trace.py in this process too."""
    trace.patch()
    make: Callable[..., web.Application] = getattr(gateway.serve, "create_app")  # noqa: B009

    def traced(config: GatewayConfig, **kwargs: Any) -> web.Application:
        app = make(config, **kwargs)
        trace.attach(app)
        return app

    setattr(gateway.serve, "create_app", traced)  # noqa: B010


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--no-delivery", action="store_true")
    parser.add_argument("--transport-only", action="store_true",
                        help=f"also accept {TRANSPORT_TYPE} messages (stored, no case machine)")
    parser.add_argument("--sql-stats", type=Path, default=None,
                        help="write SQL statement counts and times by kind to this file at exit")
    args = parser.parse_args()
    if args.no_delivery:
        setattr(Dispatcher, "run", _no_delivery)  # noqa: B010 - mypy refuses assigning a method
    if args.transport_only:
        accept_transport_messages()
    if trace.ENABLED:
        trace_stages()
    if args.sql_stats is not None:
        count_statements(args.sql_stats)
    sys.exit(tongban(["serve", "--config", args.config]))


if __name__ == "__main__":
    main()
