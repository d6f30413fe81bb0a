"""What the admin console shows and may do, kept apart from HTTP so it can be tested alone.

Three console roles (clerk logins, `tongban clerk add --role ...`):

- `alliance-admin`: the alliance's administrator. Only valid on the gateway that is the
  alliance operator; there it may do what a member admin does, and suspend or reinstate members
  (through `Alliance.set_status`, the same function as `tongban member suspend|reinstate`).
- `admin`: the member admin of this gateway (the existing role of the `/admin/v1` API): dead
  letters, key rotation.
- `auditor`: reads every page, changes nothing.

Every view masks personal data: a name shows its first character, an ID number its division
code and last four characters, a phone its first three and last four digits.
"""

from __future__ import annotations

import datetime
import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.alliance import Alliance, Published
from gateway.cases.model import Case
from gateway.db.repos import RegistryRepo
from gateway.keystore import KeyStore, Signer
from gateway.registry_client import RegistryHolder
from registry.document import Member, Status
from registry.snapshot import RegistrySnapshot
from registry.versions import verify_version
from trust.anchor import TrustAnchor
from trust.errors import ConfigError, ErrorCode, TongbanError
from trust.keys import Alg, SigningKey

ALLIANCE_ADMIN = "alliance-admin"
MEMBER_ADMIN = "admin"
AUDITOR = "auditor"
CONSOLE_ROLES = (ALLIANCE_ADMIN, MEMBER_ADMIN, AUDITOR)
CHINA = datetime.timezone(datetime.timedelta(hours=8))


class Action(enum.StrEnum):
    VIEW = "view"
    RETRY = "retry"  # requeue dead letters
    ROTATE_KEYS = "rotate-keys"
    SET_MEMBER_STATUS = "set-member-status"  # suspend / reinstate, alliance-wide


_MEMBER_ACTIONS = frozenset({Action.VIEW, Action.RETRY, Action.ROTATE_KEYS})
_GRANTS: dict[str, frozenset[Action]] = {
    ALLIANCE_ADMIN: _MEMBER_ACTIONS | {Action.SET_MEMBER_STATUS},
    MEMBER_ADMIN: _MEMBER_ACTIONS,
    AUDITOR: frozenset({Action.VIEW}),
}


def allowed(role: str | None, action: Action, *, operator: bool) -> bool:
    """One table for the pages (which buttons to draw) and the handlers (what to refuse).

    An `alliance-admin` login on a gateway that is not the operator grants nothing: the
    registry it would change is not there, and a stray account must not act as a member admin.
    """
    if role is None or (role == ALLIANCE_ADMIN and not operator):
        return False
    return action in _GRANTS.get(role, frozenset())


def can_log_in(role: str | None, *, operator: bool) -> bool:
    return allowed(role, Action.VIEW, operator=operator)


# --- registry versions ------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    member: str
    what: str  # added | removed | status | endpoint | keys | items | name | roles
    before: str
    after: str


def _kids(member: Member) -> list[str]:
    return sorted(str(k.get("kid", "?")) for k in member.keys)


def _items(member: Member) -> dict[str, str]:
    return {i.code: ",".join(sorted(m.value for m in i.modes)) for i in member.items}


def _describe(member: Member) -> str:
    return f"{member.name} · {member.status.value} · {member.endpoint}"


def registry_diff(old: RegistrySnapshot, new: RegistrySnapshot) -> list[Change]:
    """What changed for whom between two versions, member by member, in id order."""
    changes: list[Change] = []
    before = {m.id: m for m in old.members()}
    after = {m.id: m for m in new.members()}
    for member_id in sorted(before.keys() | after.keys()):
        a, b = before.get(member_id), after.get(member_id)
        if a is None or b is None:
            changes.append(Change(member_id, "added" if a is None else "removed",
                                  "" if a is None else _describe(a),
                                  "" if b is None else _describe(b)))
            continue
        if a.status != b.status:
            changes.append(Change(member_id, "status", a.status.value, b.status.value))
        if a.endpoint != b.endpoint:
            changes.append(Change(member_id, "endpoint", a.endpoint, b.endpoint))
        if a.name != b.name:
            changes.append(Change(member_id, "name", a.name, b.name))
        if sorted(a.roles) != sorted(b.roles):
            changes.append(Change(member_id, "roles", ",".join(sorted(a.roles)),
                                  ",".join(sorted(b.roles))))
        if _kids(a) != _kids(b):
            changes.append(Change(member_id, "keys", " ".join(_kids(a)), " ".join(_kids(b))))
        items_a, items_b = _items(a), _items(b)
        for code in sorted(items_a.keys() | items_b.keys()):
            if items_a.get(code) != items_b.get(code):
                changes.append(Change(member_id, "items", f"{code} {items_a.get(code, '—')}",
                                      f"{code} {items_b.get(code, '—')}"))
    return changes


@dataclass(frozen=True)
class VersionRow:
    version: int
    issued: str
    expires: str
    members: int
    active: int
    digest: str
    problem: str | None  # why the stored version did not verify against the anchor


def when(epoch: float) -> str:
    """Console times are China Standard Time, as the clerks read them."""
    return datetime.datetime.fromtimestamp(epoch, CHINA).strftime("%Y-%m-%d %H:%M:%S")


def version_row(snapshot: RegistrySnapshot) -> VersionRow:
    members = list(snapshot.members())
    return VersionRow(snapshot.version, when(snapshot.claims.iat), when(snapshot.exp),
                      len(members), sum(1 for m in members if m.is_active),
                      snapshot.digest[:12], None)


# --- cases ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaseRow:
    case_id: str
    state: str
    mode: str
    item: str
    receiver: str
    handler: str
    applicant: str  # masked name
    id_number: str  # masked
    phone: str  # masked
    decision_due: str
    overdue: bool
    created: str


def case_rows(cases: Iterable[Case]) -> list[CaseRow]:
    """Overdue cases first, then newest first; personal data only in masked form."""
    rows = []
    for c in cases:
        shown = c.applicant.masked()
        rows.append(CaseRow(
            case_id=c.case_id, state=c.state.value if c.state else "pending", mode=c.mode,
            item=c.item_code or c.kind, receiver=c.receiver, handler=c.handler or "",
            applicant=str(shown["name"]),
            id_number=str(shown["id_number"] or shown["credit_code"] or ""),
            phone=str(shown["phone"] or ""), decision_due=c.decision_due or "",
            overdue=c.overdue, created=when(c.created_at)))
    rows.sort(key=lambda r: not r.overdue)  # stable: the repository's newest-first stays
    return rows


# --- daily volume chart -----------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # the tooltip (<title>): day, series, count


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    days: tuple[tuple[float, str], ...]  # x of each day's label, and the label
    legend: tuple[tuple[str, str, int], ...]  # colour, series name, total
    peak: int
    total: int


PALETTE = ("#b22222", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def daily_volume(cases: Sequence[tuple[float, str, str]], *, today: datetime.date,
                 days: int = 14) -> dict[tuple[datetime.date, str], int]:
    """Cases per (China date, series) over the last `days` days; the series is
    "mode · member" where the member is the one that received the case."""
    first = today - datetime.timedelta(days=days - 1)
    counts: dict[tuple[datetime.date, str], int] = defaultdict(int)
    for created_at, mode, member in cases:
        day = datetime.datetime.fromtimestamp(created_at, CHINA).date()
        if first <= day <= today:
            counts[(day, f"{mode} · {member}")] += 1
    return dict(counts)


def volume_chart(counts: dict[tuple[datetime.date, str], int], *, today: datetime.date,
                 days: int = 14, width: int = 700, height: int = 240) -> Chart:
    """Stacked bars, one per day, laid out here so the page needs no script (CSP)."""
    series = sorted({s for _, s in counts})
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    dates = [today - datetime.timedelta(days=days - 1 - i) for i in range(days)]
    totals = [sum(counts.get((d, s), 0) for s in series) for d in dates]
    peak = max(totals, default=0)
    left, bottom, top = 30.0, 20.0, 10.0
    slot = (width - left) / days
    scale = (height - bottom - top) / peak if peak else 0.0
    bars: list[Bar] = []
    for i, d in enumerate(dates):
        base = height - bottom
        for s in series:
            n = counts.get((d, s), 0)
            if not n:
                continue
            h = n * scale
            base -= h
            bars.append(Bar(left + i * slot + slot * 0.15, base, slot * 0.7, h, colours[s],
                            f"{d.isoformat()} {s}: {n}"))
    labels = tuple((left + i * slot + slot / 2, d.strftime("%m-%d")) for i, d in enumerate(dates))
    legend = tuple((colours[s], s, sum(n for (_, k), n in counts.items() if k == s))
                   for s in series)
    return Chart(width, height, tuple(bars), labels, legend, peak, sum(totals))


# --- acting: the same domain functions as the CLI -----------------------------------------

class ConsoleError(TongbanError):
    code = ErrorCode.INVALID_BODY


async def versions(repo: RegistryRepo, anchor: TrustAnchor, limit: int = 30) -> list[VersionRow]:
    """The newest stored versions first; one that does not verify is listed with why."""
    rows = []
    for stored in await repo.recent(limit):
        try:
            rows.append(version_row(verify_version(stored.jws, anchor)))
        except TongbanError as exc:
            rows.append(VersionRow(stored.version, "", "", 0, 0, stored.digest[:12],
                                   exc.detail))
    return rows


async def version(repo: RegistryRepo, anchor: TrustAnchor, number: int) -> RegistrySnapshot:
    stored = await repo.get(number)
    if stored is None:
        raise TongbanError(f"no registry version {number} stored here",
                           code=ErrorCode.NOT_FOUND)
    return verify_version(stored.jws, anchor)


async def set_member_status(alliance: Alliance, holder: RegistryHolder,
                            notify: Callable[[], None], member_id: str,
                            status: str) -> Published:
    """Suspend or reinstate through `Alliance.set_status` (as `tongban member suspend`), then
    take up the new version at once and wake delivery so members hear of it now."""
    if status not in (Status.ACTIVE, Status.SUSPENDED):
        raise ConsoleError("status must be active or suspended (revocation is CLI-only)")
    published = await alliance.set_status(member_id, Status(status))
    await holder.refresh()
    notify()
    return published


@dataclass(frozen=True)
class KeyRow:
    kid: str
    alg: str
    listed: bool  # the current registry lists it for this member
    signing: bool  # the key this gateway signs with now


def key_rows(keys: KeyStore, signer: Signer, snapshot: RegistrySnapshot | None,
             member_id: str) -> list[KeyRow]:
    current = signer.current(snapshot).kid if keys.keys else None
    return [KeyRow(k.kid, k.alg.value,
                   snapshot is not None and snapshot.get_key(member_id, k.kid) is not None,
                   k.kid == current) for k in keys.keys]


def rotate_key(keys: KeyStore, alg: str) -> SigningKey:
    """As `tongban key rotate`: the new key is published at once, signs once listed."""
    return keys.create(Alg(alg))


def retire_key(keys: KeyStore, signer: Signer, snapshot: RegistrySnapshot | None,
               kid: str) -> None:
    """As `tongban key retire`, but never the key signing now: peers would refuse every
    message until the registry listed another key."""
    if keys.keys and signer.current(snapshot).kid == kid:
        raise ConsoleError(f"key {kid} signs this gateway's messages now; retire it once the "
                           f"registry lists a newer key")
    try:
        keys.retire(kid)
    except ConfigError as exc:
        raise ConsoleError(exc.detail) from None
