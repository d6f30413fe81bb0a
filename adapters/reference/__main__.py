"""`python -m adapters.reference --port N --db FILE [--webhook URL --webhook-secret-env VAR]`

Runs the reference local case system on loopback (or `--host`). Secrets come from environment
variables named on the command line, never from the command line itself, so they do not show
in a process listing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from adapters.reference.app import build_app
from adapters.reference.context import Settings
from adapters.reference.store import Store


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m adapters.reference",
                                description="The reference local case system (REST + SOAP + "
                                            "clerk page).")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--db", type=Path, required=True, help="its SQLite database file")
    p.add_argument("--prefix", default="BJ", help="prefix of its case numbers (办件编号)")
    p.add_argument("--title", default=None, help="the clerk page's heading")
    p.add_argument("--webhook", default=None, help="push the feed to this URL, signed")
    p.add_argument("--webhook-secret-env", default=None,
                   help="environment variable holding the webhook's HMAC secret")
    p.add_argument("--api-key-env", default=None,
                   help="environment variable holding the X-Api-Key the faces require")
    p.add_argument("--admin", action="store_true",
                   help="enable /admin (fault switches, inspection): tests and demos only")
    return p.parse_args(argv)


def _secret(var: str | None, what: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise SystemExit(f"error: {what}: environment variable {var} is not set")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if (args.webhook is None) != (args.webhook_secret_env is None):
        print("error: --webhook and --webhook-secret-env go together", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings(api_key=_secret(args.api_key_env, "--api-key-env"),
                        webhook_url=args.webhook,
                        webhook_secret=_secret(args.webhook_secret_env, "--webhook-secret-env"),
                        admin=args.admin, **({"title": args.title} if args.title else {}))
    try:
        store = Store(args.db, prefix=args.prefix)
    except Exception as exc:  # sqlite3 errors, unreadable paths: one line, no traceback
        print(f"error: --db {args.db}: {exc}", file=sys.stderr)
        return 1
    try:
        web.run_app(build_app(store, settings), host=args.host, port=args.port,
                    print=None, access_log=None)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
