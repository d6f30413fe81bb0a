"""`tongban` entry point: argument parsing and one-line error reporting, nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from gateway.cli import commands
from gateway.config import GatewayConfig, load_config
from gateway.logs import configure as configure_logs
from gateway.numbers import whole_number
from registry.document import Status
from trust.errors import TongbanError

EXIT_ERROR = 1
EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    number = whole_number(text)
    if number is None or number < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, required=True,
                        help="the gateway's TOML config file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tongban",
                                     description="Federation gateway for 跨省通办.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("serve", help="run the gateway")
    _config_arg(p)

    p = verbs.add_parser("demo", help="run a local three-city federation and a cross-city case")
    p.add_argument("--dir", type=Path, default=None,
                   help="working folder (default: a fresh temporary folder)")
    p.add_argument("--base-port", type=int, default=0,
                   help="first of three loopback ports (default: free ports)")
    p.add_argument("--keep", action="store_true",
                   help="keep the gateways running afterwards, to try the portal by hand")

    p = verbs.add_parser("send", help="send a test message to a member and wait for its receipt")
    _config_arg(p)
    p.add_argument("--to", required=True, help="recipient member id, e.g. CN-430725")
    p.add_argument("--type", default="cert.verify_request",
                   help="message type (default cert.verify_request, a round trip)")
    p.add_argument("--case", default=None, help="case id (default: a new case of this member)")
    p.add_argument("--body", default="{}", help="JSON object body")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the receipt")

    p = verbs.add_parser("compose", help="write a docker compose set-up (operator + 3 members)")
    p.add_argument("--out", type=Path, required=True, help="an empty folder to write into")
    p.add_argument("--source", type=Path, default=None,
                   help="the tongban source tree to build the image from (default: the "
                        "checkout tongban runs from)")

    p = verbs.add_parser("config", help="configuration helpers")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("check", help="load and validate a config file, its keys and anchor")
    _config_arg(q)

    p = verbs.add_parser("alliance", help="alliance operator commands")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("init", help="create the operator key, trust anchor and registry v1")
    _config_arg(q)
    q.add_argument("--name", default="", help="the operator's display name")

    p = verbs.add_parser("member", help="admit and manage members (alliance admin)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("add", help="admit a member and publish a registry version")
    _config_arg(q)
    q.add_argument("member_id", help="CN- + 6-digit division code")
    q.add_argument("--name", default="", help="display name")
    q.add_argument("--endpoint", required=True, help="base URL of the member's gateway")
    q.add_argument("--province", default=None, help="2-digit province code (default: from id)")
    q.add_argument("--role", action="append", default=[],
                   choices=["sso-issuer", "handler", "receiver"],
                   help="role, repeatable (default: handler, receiver, sso-issuer)")
    q.add_argument("--keys-file", type=Path, default=None,
                   help="JWK Set file (default: fetch ENDPOINT/federation/v1/keys)")
    q.add_argument("--item", action="append", default=[],
                   help="offered item as CODE:NAME:MODES, repeatable")
    for action, text in (("suspend", "suspend a member: it is refused everywhere"),
                         ("reinstate", "make a suspended member active again"),
                         ("revoke", "revoke a member for good")):
        q = sub.add_parser(action, help=text)
        _config_arg(q)
        q.add_argument("member_id")
    q = sub.add_parser("sync-keys", help="take a member's current keys into the registry")
    _config_arg(q)
    q.add_argument("member_id")
    q.add_argument("--keys-file", type=Path, default=None,
                   help="JWK Set file (default: fetch from the member's endpoint)")
    q = sub.add_parser("list", help="list members of the current registry")
    _config_arg(q)

    p = verbs.add_parser("key", help="this member's signing keys (member admin)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("init", "create the first signing key"),
                         ("rotate", "create a new signing key next to the current one"),
                         ("list", "list the signing keys")):
        q = sub.add_parser(action, help=text)
        _config_arg(q)
        if action == "list":
            q.add_argument("--jwks", action="store_true",
                           help="print the public keys as a JWK Set instead")
    q = sub.add_parser("retire", help="stop publishing an old key")
    _config_arg(q)
    q.add_argument("kid")

    p = verbs.add_parser("outbox", help="outgoing messages and dead letters (member admin)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("list", help="list outgoing messages")
    _config_arg(q)
    q.add_argument("--state", choices=["pending", "delivered", "dead"], default=None,
                   help="only messages in this state")
    q.add_argument("--limit", type=_positive_int, default=50, help="at most this many (50)")
    q = sub.add_parser("retry", help="put dead letters back in the queue")
    _config_arg(q)
    target = q.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", type=_positive_int, help="one dead letter, by outbox id")
    target.add_argument("--all", action="store_true", help="every dead letter")

    p = verbs.add_parser("clerk", help="window and handling clerks' accounts (member admin)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("add", help="create a clerk account")
    _config_arg(q)
    q.add_argument("username")
    q.add_argument("--role", required=True,
                   choices=["window", "handler", "admin", "auditor", "alliance-admin",
                            "supervisor"],
                   help="window (receiving), handler (handling authority), admin (member "
                        "admin), auditor (read only), alliance-admin (suspends members; "
                        "operator only) or supervisor")
    q.add_argument("--name", default="", help="display name")
    q.add_argument("--password-env", default=None,
                   help="environment variable holding the password (default: ask)")
    q = sub.add_parser("list", help="list clerk accounts")
    _config_arg(q)
    for action, text in (("disable", "disable an account and end its sessions"),
                         ("enable", "enable a disabled account")):
        q = sub.add_parser(action, help=text)
        _config_arg(q)
        q.add_argument("username")

    p = verbs.add_parser("audit", help="the hash-chained audit trail (auditor)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("export", help="write the trail, with the registry versions, to a file")
    _config_arg(q)
    q.add_argument("--out", type=Path, required=True, help="file to write (must not exist)")
    q = sub.add_parser("verify", help="check an exported trail offline")
    q.add_argument("--anchor", type=Path, required=True, help="trust anchor JSON file")
    q.add_argument("file", type=Path, help="the exported trail")

    p = verbs.add_parser("db", help="the database schema (operator of a gateway)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("upgrade", help="migrate the database to this version's schema")
    _config_arg(q)
    q = sub.add_parser("status", help="show the schema revision against what the code needs")
    _config_arg(q)

    p = verbs.add_parser("applicant", help="accounts of the local demo identity provider")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("add", help="let an applicant log in at this gateway's portal")
    _config_arg(q)
    q.add_argument("--id-number", required=True, help="resident ID number (GB 11643)")
    q.add_argument("--name", required=True, help="the applicant's name")
    q.add_argument("--loa", default="L3", choices=["L2", "L3", "L4", "L5"],
                   help="identity assurance level of this account (default L3)")
    q.add_argument("--password-env", default=None,
                   help="environment variable holding the password (default: ask)")

    p = verbs.add_parser("registry", help="registry versions")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("publish", help="publish a fresh version (operator)")
    _config_arg(q)
    q = sub.add_parser("show", help="print the held registry version")
    _config_arg(q)
    q.add_argument("--version", type=_positive_int, default=None,
                   help="a stored version number")
    q.add_argument("--jws", action="store_true",
                   help="print the signed JWS itself (to export it for `registry verify`)")
    q = sub.add_parser("verify", help="verify a registry JWS (file or URL) against an anchor")
    q.add_argument("--anchor", type=Path, required=True, help="trust anchor JSON file")
    q.add_argument("source", help="file holding the JWS, or a /registry/v1/... URL")
    return parser


def _load(path: Path) -> GatewayConfig:
    return load_config(path)


def dispatch(args: argparse.Namespace) -> None:
    verb, action = args.verb, getattr(args, "action", None)
    if verb == "serve":
        from gateway.serve import serve

        serve(_load(args.config), verbose=args.verbose)
    elif verb == "demo":
        from gateway.demo import run_demo

        run_demo(args.dir, args.base_port, keep=args.keep)
    elif verb == "send":
        commands.send(_load(args.config), to=args.to, type_=args.type, case_id=args.case,
                      body=args.body, wait=args.wait)
    elif verb == "compose":
        commands.compose(args.out, args.source)
    elif verb == "config":
        commands.check_config(_load(args.config))
    elif verb == "alliance":
        commands.alliance_init(_load(args.config), args.name)
    elif verb == "member":
        config = _load(args.config)
        if action == "add":
            commands.member_add(config, member_id=args.member_id, name=args.name,
                                endpoint=args.endpoint, province=args.province, roles=args.role,
                                keys_file=args.keys_file, items=args.item)
        elif action in ("suspend", "reinstate", "revoke"):
            status = {"suspend": Status.SUSPENDED, "reinstate": Status.ACTIVE,
                      "revoke": Status.REVOKED}[action]
            commands.member_status(config, args.member_id, status)
        elif action == "sync-keys":
            commands.member_sync_keys(config, args.member_id, args.keys_file)
        else:
            commands.member_list(config)
    elif verb == "key":
        config = _load(args.config)
        if action == "init":
            commands.key_init(config)
        elif action == "rotate":
            commands.key_rotate(config)
        elif action == "list":
            commands.key_list(config, jwks=args.jwks)
        else:
            commands.key_retire(config, args.kid)
    elif verb == "audit":
        if action == "export":
            commands.audit_export(_load(args.config), args.out)
        else:
            commands.audit_verify(args.file, args.anchor)
    elif verb == "db":
        if action == "upgrade":
            commands.db_upgrade(_load(args.config))
        else:
            commands.db_status(_load(args.config))
    elif verb == "applicant":
        commands.applicant_add(_load(args.config), id_number=args.id_number, name=args.name,
                               loa=args.loa, password_env=args.password_env)
    elif verb == "clerk":
        config = _load(args.config)
        if action == "add":
            commands.clerk_add(config, username=args.username, name=args.name, role=args.role,
                               password_env=args.password_env)
        elif action == "list":
            commands.clerk_list(config)
        else:
            commands.clerk_disable(config, args.username, action == "disable")
    elif verb == "outbox":
        config = _load(args.config)
        if action == "list":
            commands.outbox_list(config, args.state, args.limit)
        else:
            commands.outbox_retry(config, None if args.all else args.id)
    elif verb == "registry":
        if action == "verify":
            commands.registry_verify(args.anchor, args.source)
        elif action == "publish":
            commands.registry_publish(_load(args.config))
        else:
            commands.registry_show(_load(args.config), args.version, raw=args.jws)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logs("text", verbose=args.verbose)
    try:
        dispatch(args)
    except TongbanError as exc:
        commands.fail(exc.detail)
        return EXIT_ERROR
    except SQLAlchemyError as exc:
        # e.g. PostgreSQL unreachable or the database missing: one line, no traceback.
        cause = getattr(exc, "orig", None) or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        commands.fail(f"database: {first}")
        return EXIT_ERROR
    except OSError as exc:
        commands.fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
