"""Who handles a case: the member that holds the power to decide (属地办理).

In every mode the handling authority keeps the decision; the receiving window only takes the
application in (收受分离). So routing answers one question before a case is created: which member
decides, and may it decide this item in this mode right now? Everything is refused with a field
and a reason, because the answer goes back to a clerk or an applicant who must fix the request.

Household-bound items (户口迁移, 首次申领居民身份证) can only be decided where the applicant's
household is registered, so the handler is derived from the division code in the ID number, not
chosen. The alliance may admit a county, or only its city or province (a city government often
joins for all its districts), so the nearest admitted level covers the division. ID numbers keep
the division code current when they were issued, so a code abolished since (呈贡县 530121 →
呈贡区 530114) must still find its authority: through a renamed successor in the same city when
one exists, otherwise through the city and province.

Routing runs for every case, and the registry can hold thousands of members, so lookups are dict
accesses; the per-member item index is built lazily, once per registry version.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from registry.catalog import Catalog, CatalogItem
from registry.document import Item, Member, Mode, Role
from registry.snapshot import RegistrySnapshot
from registry.validation import FieldError, InvalidInput, ancestors, division
from trust.errors import ErrorCode

DIVISION_FIELD = "applicant.id_number"
_DIVISION_RE = re.compile(r"^\d{6}$")
_COUNTY_SUFFIXES = ("县", "区", "市", "旗")


@dataclass(frozen=True)
class Route:
    handler: str
    item: CatalogItem
    mode: Mode
    reason: str  # for the clerk, the applicant and the audit log: why this member decides


class RoutingError(InvalidInput):
    """A case cannot be routed as asked. `field` names what to change, `reason` says why.

    A subclass of `InvalidInput` so that every layer that already renders field errors (422
    `invalid-body`) renders these too. Reasons never contain an ID number, only its division.
    """

    code = ErrorCode.INVALID_BODY

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(FieldError(field, reason))


def route(snapshot: RegistrySnapshot, catalog: Catalog, *, item_code: str, mode: Mode | str,
          applicant_division: str | None = None, handler: str | None = None,
          receiver: str | None = None) -> Route:
    """The member that decides `item_code` in `mode`, checked against the registry version.

    `applicant_division` is the first six digits of the applicant's ID number; it decides the
    handler of household-bound items and is ignored otherwise. `receiver` is the member taking
    the application in; it may not be the handler, since that would be local business.
    """
    item = catalog.get(item_code)
    if item is None:
        raise RoutingError("item", f"unknown item code {_clip(item_code)!r}; "
                                   "not in the alliance catalog")
    try:
        wanted = Mode(mode)
    except ValueError:
        raise RoutingError("mode", f"unknown mode {_clip(str(mode))!r}; one of "
                                   f"{_join(m.value for m in Mode)}") from None
    if wanted not in item.modes:
        raise RoutingError("mode", f"{item.code} ({item.name}) cannot be handled in mode "
                                   f"{wanted} anywhere in the alliance; the catalog allows "
                                   f"{_join(item.modes)}")

    if item.household_bound:
        chosen, reason = _household_handler(snapshot, item, applicant_division)
        if handler and handler != chosen:
            raise RoutingError("handler", f"{item.code} ({item.name}) is decided by the "
                                          f"applicant's household authority (户籍地) {chosen}, "
                                          f"not {_clip(handler)}")
        derived = True
    else:
        if not handler:
            raise RoutingError("handler", f"required: name the member that handles "
                                          f"{item.code} ({item.name})")
        chosen, reason, derived = handler, f"handler {handler} named in the request", False

    if receiver is not None and receiver == chosen:
        raise RoutingError("handler", f"{chosen} is also the receiving member; a case handled "
                                      "where it is received is local business, not a "
                                      "cross-region (跨省通办) case")
    _check_handler(snapshot, chosen, item, wanted, derived=derived)
    return Route(handler=chosen, item=item, mode=wanted, reason=reason)


def offering(snapshot: RegistrySnapshot, item_code: str,
             mode: Mode | str | None = None) -> list[Member]:
    """Active handlers that offer `item_code` (in `mode`, if given), for a portal to choose from.

    The item-to-members index is built once per registry version, so this does not scan the
    registry per request.
    """
    members = _index_for(snapshot).offering(item_code)
    if mode is None:
        return [m for m, _ in members]
    return [m for m, entry in members if mode in entry.modes]


def _household_handler(snapshot: RegistrySnapshot, item: CatalogItem,
                       code: str | None) -> tuple[str, str]:
    """The covering member of the applicant's home division, and why it was chosen."""
    if code is None or code == "":
        raise RoutingError(DIVISION_FIELD, f"required: {item.code} ({item.name}) is decided by "
                                           "the applicant's household authority (户籍地), found "
                                           "from the ID number")
    if not _DIVISION_RE.match(code):
        # The value may be a whole ID number passed by mistake: never echo it.
        raise RoutingError(DIVISION_FIELD, "the division part must be 6 digits (GB/T 2260)")
    home = division(code)
    if home is None:
        raise RoutingError(DIVISION_FIELD, f"division code {code} is not in GB/T 2260")
    for candidate in _candidates(code):
        member_id = f"CN-{candidate}"
        if snapshot.member(member_id) is None:
            continue
        place = division(candidate)
        place_name = place.name if place is not None else candidate
        if candidate == code:
            why = f"户籍地 {member_id} (applicant's home division {code} {home.name})"
        elif place is not None and place.level == "county":
            why = (f"户籍地 {member_id}: applicant's home division {code} {home.name} is "
                   f"historical, now {candidate} {place_name}")
        else:
            why = (f"户籍地 {member_id} ({place_name}) covers the applicant's home division "
                   f"{code} {home.name}, which is not a member itself")
        return member_id, why
    raise RoutingError(DIVISION_FIELD, f"no alliance member covers the applicant's home division "
                                       f"{code} ({home.name}) or its city or province; "
                                       f"{item.code} ({item.name}) cannot be handled across "
                                       "regions for this applicant yet")


def _candidates(code: str) -> list[str]:
    """Division codes that may hold the household authority, nearest first."""
    chain = ancestors(code)
    later = successor(code)
    if later is not None:
        chain.insert(1, later)
    return chain


@lru_cache(maxsize=4096)
def successor(code: str) -> str | None:
    """The current county that continues an abolished one under a new code, if it was renamed.

    GB/T 2260 does not record successors. The common change is a county turned into a district
    or city of the same city (斗门县 440421 → 斗门区 440403), keeping its proper name, so look for
    a current county of the same city with the same name stem. Anything else (merged, moved to
    another city) returns None and the city or province covers it.
    """
    old = division(code)
    if old is None or old.current or old.level != "county":
        return None
    stem = _stem(old.name)
    if len(stem) < 2:
        return None
    for n in range(1, 100):
        candidate = f"{code[:4]}{n:02d}"
        if candidate == code:
            continue
        found = division(candidate)
        if found is not None and found.current and _stem(found.name) == stem:
            return candidate
    return None


def _stem(name: str) -> str:
    return name[:-1] if name.endswith(_COUNTY_SUFFIXES) else name


def _check_handler(snapshot: RegistrySnapshot, member_id: str, item: CatalogItem, mode: Mode,
                   *, derived: bool) -> None:
    # For a derived handler, say why no other member is tried: the decision is not portable.
    why_this = (f"; only the household authority (户籍地) may decide {item.code}"
                if derived else "")
    member = snapshot.member(member_id)
    if member is None:
        raise RoutingError("handler", f"{_clip(member_id)} is not a member of the alliance")
    if not member.is_active:
        raise RoutingError("handler", f"{member_id} is {member.status}; it takes no cases"
                                      f"{why_this}")
    if not member.has_role(Role.HANDLER):
        raise RoutingError("handler", f"{member_id} does not have the handler role{why_this}")
    entry = _index_for(snapshot).offered(member).get(item.code)
    if entry is None:
        raise RoutingError("handler", f"{member_id} does not offer {item.code} ({item.name})"
                                      f"{why_this}")
    if mode not in entry.modes:
        raise RoutingError("mode", f"{member_id} does not offer {item.code} in mode {mode}; "
                                   f"it offers {_join(entry.modes)}")


class _Index:
    """Per registry version: each member's items by code, and each item's members."""

    def __init__(self, snapshot: RegistrySnapshot) -> None:
        self._snapshot = snapshot
        self._by_member: dict[str, dict[str, Item]] = {}
        self._by_item: dict[str, list[tuple[Member, Item]]] | None = None

    def offered(self, member: Member) -> dict[str, Item]:
        found = self._by_member.get(member.id)
        if found is None:
            found = {}
            for entry in member.items:
                found.setdefault(entry.code, entry)  # a duplicate listing: the first one counts
            self._by_member[member.id] = found
        return found

    def offering(self, item_code: str) -> list[tuple[Member, Item]]:
        if self._by_item is None:
            by_item: dict[str, list[tuple[Member, Item]]] = {}
            for member in self._snapshot.members():
                if member.is_active and member.has_role(Role.HANDLER):
                    for entry in self.offered(member).values():
                        by_item.setdefault(entry.code, []).append((member, entry))
            self._by_item = by_item
        return list(self._by_item.get(item_code, ()))


# Keyed by identity, holding the snapshot itself so its id cannot be reused while cached: the
# digest is not a safe key (tests and tools build snapshots with placeholder digests), and a
# snapshot is unhashable. A gateway holds one version at a time, so a few entries suffice.
_CACHE_SIZE = 4
_cache: list[tuple[RegistrySnapshot, _Index]] = []
_cache_lock = threading.Lock()


def _index_for(snapshot: RegistrySnapshot) -> _Index:
    with _cache_lock:
        for held, index in _cache:
            if held is snapshot:
                return index
        index = _Index(snapshot)
        _cache.insert(0, (snapshot, index))
        del _cache[_CACHE_SIZE:]
        return index


def _join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
