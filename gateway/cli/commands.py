"""What each CLI verb does; `main` only parses arguments and reports errors."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from gateway import adapter_loading, audit
from gateway.alliance import Alliance, AllianceError
from gateway.cases.access import ROLES
from gateway.config import GatewayConfig, check_serving
from gateway.db import migrate
from gateway.db.audit_repo import AuditRepo
from gateway.db.auth_repo import AuthRepo
from gateway.db.cert_repo import CertCheck, CertRepo
from gateway.db.engine import create_schema, make_engine
from gateway.db.repos import OutboxEntry, OutboxRepo, OutboxState, RegistryRepo
from gateway.federation.messages import CASE_ID_RE
from gateway.federation.outbox import enqueue
from gateway.keystore import KeyStore, Signer
from gateway.sso.accounts import add_local_account
from registry.document import MEMBER_ID_RE, Item, Member, Role, Status
from registry.validation import mask_id
from registry.versions import verify_version
from trust.anchor import load_anchor
from trust.audit import GENESIS, AuditEntry, AuditHead, header_digest, sign_head
from trust.credentials import hash_password
from trust.errors import ConfigError, TongbanError
from trust.keys import Alg


def out(line: str = "") -> None:
    print(line, flush=True)


def keystore(config: GatewayConfig) -> KeyStore:
    return KeyStore(config.keys.dir, config.key_passphrase())


async def _with_alliance(config: GatewayConfig, action: Any) -> Any:
    engine = make_engine(config.database.url)
    try:
        await create_schema(engine)
        keys = keystore(config)
        if keys.exists():
            keys.load()
        alliance = Alliance(config=config, engine=engine, keys=keys, clock=time.time)
        return await action(alliance, keys)
    finally:
        await engine.dispose()


def alliance_init(config: GatewayConfig, name: str) -> None:
    async def action(alliance: Alliance, keys: KeyStore) -> None:
        published = await alliance.init(name=name, alg=Alg(config.keys.algorithm))
        out(f"alliance {config.operator.alliance if config.operator else ''} initialised: "
            f"registry version {published.version} published")
        out(f"trust anchor written to {config.trust.anchor}; give this file to every member")

    asyncio.run(_with_alliance(config, action))


async def fetch_jwks(endpoint: str) -> list[dict[str, Any]]:
    url = endpoint.rstrip("/") + "/federation/v1/keys"
    try:
        async with aiohttp.ClientSession() as session, session.get(
            url, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            if resp.status != 200:
                raise AllianceError(f"{url} answered HTTP {resp.status}")
            doc = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise AllianceError(f"cannot fetch keys from {url}: {type(exc).__name__}") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        raise AllianceError(f"{url} did not return a JWK Set with keys")
    return keys


def read_jwks(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AllianceError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise AllianceError(f"{path} is not JSON: {exc.msg}") from None
    keys = doc.get("keys") if isinstance(doc, dict) else doc
    if not isinstance(keys, list) or not keys:
        raise AllianceError(f"{path}: expected a JWK Set {{'keys': [...]}}")
    return keys


def member_add(config: GatewayConfig, *, member_id: str, name: str, endpoint: str,
               province: str | None, roles: Sequence[str], keys_file: Path | None,
               items: Sequence[str]) -> None:
    async def action(alliance: Alliance, _keys: KeyStore) -> None:
        jwks = read_jwks(keys_file) if keys_file else await fetch_jwks(endpoint)
        try:
            member = Member(
                id=member_id, name=name or member_id, province=province or member_id[3:5],
                endpoint=endpoint, status=Status.ACTIVE, keys=tuple(jwks),
                roles=tuple(Role(r) for r in roles or ("handler", "receiver", "sso-issuer")),
                items=tuple(parse_item(s) for s in items))
        except ValueError as exc:
            raise AllianceError(_first_error(exc)) from None
        published = await alliance.add_member(member)
        out(f"{member_id} admitted; registry version {published.version} published, "
            f"{len(published.notified)} member(s) notified")

    asyncio.run(_with_alliance(config, action))


def parse_item(spec: str) -> Item:
    """`CODE:NAME:mode,mode` as given on the command line."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise AllianceError(f"item {spec!r}: expected CODE:NAME:MODES (modes comma-separated)")
    code, name, modes = parts
    try:
        return Item.model_validate({"code": code, "name": name, "modes": modes.split(",")})
    except ValueError as exc:
        raise AllianceError(f"item {spec!r}: {_first_error(exc)}") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(exc)


def member_status(config: GatewayConfig, member_id: str, status: Status) -> None:
    async def action(alliance: Alliance, _keys: KeyStore) -> None:
        published = await alliance.set_status(member_id, status)
        out(f"{member_id} is now {status.value}; registry version {published.version} published, "
            f"{len(published.notified)} member(s) notified")

    asyncio.run(_with_alliance(config, action))


def member_sync_keys(config: GatewayConfig, member_id: str, keys_file: Path | None) -> None:
    async def action(alliance: Alliance, _keys: KeyStore) -> None:
        current = await alliance.current()
        member = current.member(member_id)
        if member is None:
            raise AllianceError(f"{member_id} is not a member")
        jwks = read_jwks(keys_file) if keys_file else await fetch_jwks(member.endpoint)
        published = await alliance.set_keys(member_id, jwks)
        kids = ", ".join(str(k.get("kid", "?")) for k in jwks)
        out(f"{member_id} keys set to [{kids}]; registry version {published.version} published")

    asyncio.run(_with_alliance(config, action))


def member_list(config: GatewayConfig) -> None:
    async def action(alliance: Alliance, _keys: KeyStore) -> None:
        current = await alliance.current()
        for m in current.members():
            out(f"{m.id}  {m.status.value:<9}  {','.join(m.roles):<34}  {m.endpoint}  {m.name}")

    asyncio.run(_with_alliance(config, action))


def registry_publish(config: GatewayConfig) -> None:
    async def action(alliance: Alliance, _keys: KeyStore) -> None:
        published = await alliance.republish()
        out(f"registry version {published.version} published, "
            f"{len(published.notified)} member(s) notified")

    asyncio.run(_with_alliance(config, action))


def registry_show(config: GatewayConfig, version: int | None, *, raw: bool = False) -> None:
    async def run() -> None:
        engine = make_engine(config.database.url)
        try:
            await create_schema(engine)
            repo = RegistryRepo(engine)
            stored = await (repo.get(version) if version else repo.latest())
        finally:
            await engine.dispose()
        if stored is None:
            raise AllianceError("no registry version stored" if version is None
                                else f"no registry version {version} stored")
        snapshot = verify_version(stored.jws, load_anchor(config.trust.anchor))
        if raw:
            out(snapshot.jws)
            return
        out(json.dumps(snapshot.claims.model_dump(mode="json", exclude_none=True),
                       ensure_ascii=False, indent=2))

    asyncio.run(run())


def registry_verify(anchor_path: Path, source: str) -> None:
    anchor = load_anchor(anchor_path)
    if source.startswith(("http://", "https://")):
        async def get() -> str:
            async with aiohttp.ClientSession() as session, session.get(
                source, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                if resp.status != 200:
                    raise AllianceError(f"{source} answered HTTP {resp.status}")
                return (await resp.text()).strip()

        try:
            token = asyncio.run(get())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AllianceError(f"cannot fetch {source}: {type(exc).__name__}") from None
    else:
        try:
            token = Path(source).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise AllianceError(f"cannot read {source}: {exc}") from None
    snapshot = verify_version(token, anchor)
    state = "EXPIRED" if snapshot.is_expired(time.time()) else "valid"
    out(f"registry version {snapshot.version} of {snapshot.claims.alliance}: signature valid, "
        f"{state} until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(snapshot.exp))}, "
        f"{len(snapshot.claims.members)} member(s), digest {snapshot.digest}")


def key_init(config: GatewayConfig) -> None:
    keys = keystore(config)
    if keys.exists():
        raise ConfigError(f"keys.dir: {config.keys.dir} already holds keys; use `key rotate`")
    key = keys.create(Alg(config.keys.algorithm))
    out(f"created {key.alg.value} key {key.kid} in {config.keys.dir}")


def key_rotate(config: GatewayConfig) -> None:
    keys = keystore(config)
    keys.load()
    key = keys.create(Alg(config.keys.algorithm))
    out(f"created {key.alg.value} key {key.kid}; it is published at /federation/v1/keys now and "
        f"used for signing once the registry lists it (ask the operator to sync keys)")


def key_retire(config: GatewayConfig, kid: str) -> None:
    keys = keystore(config)
    keys.load()
    keys.retire(kid)
    out(f"key {kid} retired; ask the operator to sync keys so the registry drops it")


def key_list(config: GatewayConfig, *, jwks: bool = False) -> None:
    keys = keystore(config)
    loaded = keys.load()
    if jwks:  # the public JWK Set, for `member add --keys-file` where no endpoint is reachable
        out(json.dumps(keys.public_jwks(), indent=2))
        return
    for key in loaded:
        out(f"{key.kid}  {key.alg.value}")

def compose(out_dir: Path, source: Path | None) -> None:
    from gateway.deploy import source_tree, write_compose

    source = source or source_tree()
    if source is None or not (source / "docker" / "Dockerfile").is_file():
        raise ConfigError("--source: give the tongban source tree (the folder holding "
                          "docker/Dockerfile) to build the image from")
    context = os.path.relpath(source.resolve(), out_dir.resolve())
    written = write_compose(out_dir, build_context=context)
    out(f"wrote {len(written)} files to {out_dir}: configs for "
        f"{', '.join(p.parent.name for p in written if p.name == 'tongban.toml')}, "
        "local case-system mappings for "
        f"{', '.join(p.parent.name for p in written if p.name == 'local-system.toml')}, "
        f"setup.sh, compose.yaml and .env.example, building the image from {context}; copy "
        ".env.example to .env, set its secrets and start it with `docker compose up --build` "
        "there")


def send(config: GatewayConfig, *, to: str, type_: str, case_id: str | None, body: str,
         wait: float) -> None:
    """Queue one message and wait for its receipt. The default, a certificate check of a
    certificate nobody issued, tests both directions: the peer answers with a message of its
    own (cert.verify_response), which this command waits for too."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AllianceError(f"--body is not JSON: {exc.msg}") from None
    if not isinstance(payload, dict):
        raise AllianceError("--body must be a JSON object")
    if not MEMBER_ID_RE.match(to):
        raise AllianceError("--to must be a member id like CN-430725")
    if case_id is not None and not CASE_ID_RE.match(case_id):
        raise AllianceError("--case must be '<member id>:<UUID>'")
    if type_.startswith("case.") and case_id is None:
        case_id = f"{config.member_id}:{uuid.uuid4()}"
    ping = type_ == "cert.verify_request" and not payload
    if ping:
        payload = {"request_id": str(uuid.uuid4()), "cert_id": "tongban-send-test",
                   "holder": {"kind": "person"}}

    async def run() -> None:
        started = time.monotonic()
        _, status = await queue_and_wait(config, to=to, type_=type_, case_id=case_id,
                                         body=payload, wait=wait,
                                         queued=lambda e: out(
                                             f"queued {type_} to {to} (outbox #{e.id}, "
                                             f"case {case_id or '-'})"),
                                         ping=payload["request_id"] if ping else None)
        out(f"delivered: receipt status {status}, verified")
        if ping:
            answer = await wait_for_answer(config, payload["request_id"],
                                           wait - (time.monotonic() - started))
            out(f"answered by {to}: cert.verify_response ({answer}), signed and verified")

    asyncio.run(run())


async def wait_for_answer(config: GatewayConfig, request_id: str, wait: float) -> str:
    engine = make_engine(config.database.url)
    deadline = time.monotonic() + max(wait, 1.0)
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                check = await CertRepo().check(conn, request_id)
            if check is not None and check.status != "pending":
                return f"{check.status}: {check.reason}"
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    raise AllianceError("the peer took the message but its answer did not arrive in time")


async def queue_and_wait(config: GatewayConfig, *, to: str, type_: str, case_id: str | None,
                         body: dict[str, Any], wait: float,
                         queued: Callable[[OutboxEntry], None] | None = None,
                         ping: str | None = None) -> tuple[OutboxEntry, str]:
    """Queue a message in the member's outbox and wait for the running gateway to deliver it.

    The CLI never delivers by itself: the running gateway owns delivery, so a message sent this
    way gets the same retries, ordering and receipt checks as any other.
    """
    engine = make_engine(config.database.url)
    try:
        await create_schema(engine)
        repo = OutboxRepo(engine)
        async with engine.begin() as conn:
            entry = await enqueue(conn, repo, dest=to, type_=type_, body=body, case_id=case_id,
                                  now=time.time())
            if ping is not None:  # so that the answer is expected, not refused
                await CertRepo().add_check(conn, CertCheck(ping, "-", "-", body["cert_id"], to,
                                                           "pending", None), time.time())
        if queued is not None:
            queued(entry)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            current = await repo.get(entry.id)
            if current is not None and current.state == OutboxState.DELIVERED:
                return current, str(current.receipt_status)
            if current is not None and current.state == OutboxState.DEAD:
                raise AllianceError(f"{type_} to {to} not delivered: {current.last_error}")
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    raise AllianceError(f"no receipt for {type_} to {to} within {wait:g} s; the message stays "
                        f"queued (is `tongban serve` running for {config.member_id}?)")


def outbox_list(config: GatewayConfig, state: str | None, limit: int) -> None:
    async def run() -> list[OutboxEntry]:
        engine = make_engine(config.database.url)
        try:
            await create_schema(engine)
            entries = await OutboxRepo(engine).list_entries(state=state, limit=limit)
        finally:
            await engine.dispose()
        return entries

    for e in asyncio.run(run()):
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.created_at))
        error = f"  {e.last_error}" if e.last_error and e.state != OutboxState.DELIVERED else ""
        out(f"#{e.id:<6} {e.state:<9} {when} to {e.dest} {e.type:<24} "
            f"attempts {e.attempts}{error}")


def outbox_retry(config: GatewayConfig, row_id: int | None) -> None:
    async def run() -> int:
        engine = make_engine(config.database.url)
        try:
            await create_schema(engine)
            return await OutboxRepo(engine).retry_dead(now=time.time(), row_id=row_id)
        finally:
            await engine.dispose()

    count = asyncio.run(run())
    if row_id is not None and count == 0:
        raise AllianceError(f"outbox #{row_id} is not a dead letter")
    out(f"{count} dead letter(s) queued again; the running gateway delivers them")


def read_password(env: str | None) -> str:
    """From the named environment variable, else typed at the terminal (never an argument:
    arguments show up in `ps` and shell history)."""
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise AllianceError(f"--password-env: environment variable {env} is not set")
        return value
    if not sys.stdin.isatty():
        raise AllianceError("no terminal to ask for the password; use --password-env VAR")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise AllianceError("the two passwords differ")
    return first


async def add_clerk(config: GatewayConfig, *, username: str, name: str, role: str,
                    password: str) -> None:
    """Create a clerk account on a member's gateway database (also used by the demo)."""
    if not re.match(r"^[A-Za-z0-9._-]{2,64}$", username):
        raise AllianceError("username: 2-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise AllianceError(f"--role must be one of {', '.join(ROLES)}")
    if role == "alliance-admin" and not config.is_operator:
        raise AllianceError("--role alliance-admin is only for the alliance operator's gateway "
                            "(its config has an [operator] section)")
    if len(password) < 12:
        raise AllianceError("the password must be at least 12 characters")
    engine = make_engine(config.database.url)
    try:
        await create_schema(engine)
        hashed = await asyncio.to_thread(hash_password, password)
        if not await AuthRepo(engine).add_clerk(username=username, name=name or username,
                                                role=role, password_hash=hashed,
                                                now=time.time()):
            raise AllianceError(f"clerk {username} already exists")
    finally:
        await engine.dispose()


def clerk_add(config: GatewayConfig, *, username: str, name: str, role: str,
              password_env: str | None) -> None:
    password = read_password(password_env)
    asyncio.run(add_clerk(config, username=username, name=name, role=role, password=password))
    out(f"clerk {username} ({role}) created on {config.member_id}")


def applicant_add(config: GatewayConfig, *, id_number: str, name: str, loa: str,
                  password_env: str | None) -> None:
    password = read_password(password_env)

    async def run() -> None:
        engine = make_engine(config.database.url)
        try:
            await create_schema(engine)
            await add_local_account(engine, id_number=id_number, name=name, loa=loa,
                                    password=password, now=time.time())
        finally:
            await engine.dispose()

    asyncio.run(run())
    out(f"applicant {mask_id(id_number.strip().upper())} ({loa}) can now log in at "
        f"{config.server.endpoint()}/portal/")


def clerk_list(config: GatewayConfig) -> None:
    async def run() -> list[Any]:
        engine = make_engine(config.database.url)
        try:
            await create_schema(engine)
            return await AuthRepo(engine).clerks()
        finally:
            await engine.dispose()

    for clerk in asyncio.run(run()):
        out(f"{clerk.username:<20} {clerk.role:<10} {'disabled' if clerk.disabled else 'active':<8}"
            f" {clerk.name}")


def clerk_disable(config: GatewayConfig, username: str, disabled: bool) -> None:
    async def run() -> bool:
        engine = make_engine(config.database.url)
        try:
            await create_schema(engine)
            return await AuthRepo(engine).set_disabled(username, disabled)
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        raise AllianceError(f"no clerk {username}")
    out(f"clerk {username} {'disabled; their sessions ended' if disabled else 'enabled'}")


def db_upgrade(config: GatewayConfig) -> None:
    async def run() -> tuple[str | None, str]:
        engine = make_engine(config.database.url)
        try:
            return await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    before, after = asyncio.run(run())
    if before == after:
        out(f"database schema already at {after}")
    else:
        out(f"database schema upgraded from {before or 'empty'} to {after}")


def db_status(config: GatewayConfig) -> None:
    async def run() -> str | None:
        engine = make_engine(config.database.url)
        try:
            return await migrate.current(engine)
        finally:
            await engine.dispose()

    have, need = asyncio.run(run()), migrate.head()
    state = "current" if have == need else "behind: run `tongban db upgrade`"
    out(f"database schema {have or 'empty'}; this gateway needs {need} ({state})")


def audit_export(config: GatewayConfig, out_path: Path) -> None:
    """The trail for an auditor, ending with a head statement signed with this member's key:
    without it, entries cut off at the end of the file could not be told from entries that
    never existed."""
    async def run() -> tuple[list[Any], list[str]]:
        engine = make_engine(config.database.url)
        try:
            await migrate.require_current(engine)
            entries = await AuditRepo.export(engine)
            versions = [v.jws for v in await RegistryRepo(engine).all_versions()]
        finally:
            await engine.dispose()
        return entries, versions

    keys = keystore(config)
    keys.load()  # before anything is written: an export that cannot be signed is useless
    entries, versions = asyncio.run(run())
    held = verify_version(versions[-1], load_anchor(config.trust.anchor)) if versions else None
    key = Signer(config.member_id, keys).current(held)
    exported_at = int(time.time())
    header_line = json.dumps({"format": audit.FORMAT, "member": config.member_id,
                              "exported_at": exported_at, "registry": versions},
                             ensure_ascii=False)
    head = AuditHead(member=config.member_id, exported_at=exported_at, count=len(entries),
                     tip=entries[-1].entry_hash if entries else GENESIS,
                     header_digest=header_digest(header_line))
    with out_path.open("x", encoding="utf-8") as f:  # never overwrite an earlier export
        f.write(header_line + "\n")
        for entry in entries:
            f.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
        f.write(json.dumps({"head": sign_head(head, key)}) + "\n")
    out_path.chmod(0o600)  # the messages inside carry personal data
    out(f"{len(entries)} audit entries and {len(versions)} registry versions written to "
        f"{out_path}, signed with key {key.kid}")


def audit_verify(path: Path, anchor_path: Path) -> None:
    anchor = load_anchor(anchor_path)
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
        header = json.loads(lines[0])
        docs = [json.loads(line) for line in lines[1:]]
        head = docs.pop()["head"] if docs and "head" in docs[-1] else None
        entries = [AuditEntry.from_json(doc) for doc in docs]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise AllianceError(f"{path}: not an audit export ({type(exc).__name__})") from None
    if header.get("format") != audit.FORMAT:
        raise AllianceError(f"{path}: format {header.get('format')!r}, expected "
                            f"{audit.FORMAT}")
    member = str(header.get("member"))
    try:
        snapshots = audit.registry_snapshots(header.get("registry", []), anchor)
        count = audit.verify_trail(entries, snapshots, member)
        audit.verify_head(head if isinstance(head, str) else None, entries, snapshots, member,
                          header_digest(lines[0]))
    except audit.AuditFailure as exc:
        raise AllianceError(f"audit trail broken at {exc}") from None
    out(f"audit trail of {member} verified: {count} entries, chain intact and complete "
        f"(signed head), every message and receipt signature checks against the key its "
        f"signer held at the time, from {len(snapshots)} registry versions")


def check_config(config: GatewayConfig) -> None:
    check_serving(config)
    adapter_loading.check(config, adapter_loading.discover())
    keystore(config).load()
    load_anchor(config.trust.anchor)
    make_engine(config.database.url)
    out(f"config for {config.member_id} is valid")


def fail(message: str) -> None:
    print(f"tongban: error: {message}", file=sys.stderr, flush=True)


__all__ = ["TongbanError"]
