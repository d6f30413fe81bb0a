"""The contract kit: what any region adapter must do against its local system, checked for real.

The kit drives a running local system through a `LocalDriver` (how an officer acts there, how
to look a case up, how to make it fail) and checks the adapter only through the `RegionAdapter`
contract, so the same checks run for REST, SOAP or any adapter shipped as its own package:

- every case state round-trips: each handling action an officer takes locally comes back from
  `poll` as exactly that action with exactly that body, and `submit` is idempotent;
- a submitted case arrives in the local system's own codes: its item code (`items`), its mode
  (`modes`), its applicant's kind (`applicant_kinds`) and its delivery method (`delivery`).
  Those tables, given by whoever knows the local system, say which local code each of ours must
  become, so a code table in the mapping that points one of ours at the wrong local code fails
  instead of agreeing with itself. Every row of every table is submitted, on top of the cases
  the other checks make (which take the rows in turn too);
- a local outage is reported as transient (so the gateway retries) and loses nothing: a case
  whose answer was lost is created once, not twice;
- duplicate deliveries are harmless: the same local event always carries the same event id,
  whether polled twice or pushed twice, and a forged or stale push is refused;
- malformed answers (garbage, oversized, XML bombs, missing fields, unknown states) raise a
  permanent `AdapterError` and yield no event, and the feed is intact once the system recovers.

`run_contract` raises `ContractFailure` listing every check that failed.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.base import (
    ACTIONS,
    AdapterError,
    LocalCase,
    LocalEvent,
    PushesNotTaken,
    RegionAdapter,
    WebhookRefused,
)

MALFORMED = ("garbage", "oversized", "xml_bomb", "external_entity", "missing_field",
             "unknown_state")
# The alliance's vocabulary for the coded fields the kit checks (registry Mode,
# gateway/cases/applications.py), repeated here because an adapter package never imports the
# gateway: a table key outside it is a typo the kit names instead of a confusing failure.
MODES = ("online", "proxy", "joint")
APPLICANT_KINDS = ("person", "company")
DELIVERY_METHODS = ("post", "online", "window")


class ContractFailure(AssertionError):
    def __init__(self, failures: Sequence[str]) -> None:
        super().__init__("the adapter breaks the contract:\n- " + "\n- ".join(failures))
        self.failures = list(failures)


@dataclass(frozen=True)
class LocalView:
    """What the local system holds for one of our cases, in our terms."""

    ref: str
    # The coded fields as the local system holds them (its own codes, not ours).
    item_code: str
    mode: str
    applicant_kind: str
    delivery_method: str
    material_codes: tuple[str, ...]
    withdrawn: bool


class LocalDriver(abc.ABC):
    """The kit's hands on a local system, written by whoever knows that system."""

    faults: tuple[str, ...] = ()  # which of MALFORMED the system can be made to produce

    @abc.abstractmethod
    async def perform(self, ref: str, action: str, body: Mapping[str, Any]) -> None:
        """Have an officer do, in the local system, what our `action` with `body` means."""

    @abc.abstractmethod
    async def inspect(self, case_id: str) -> list[LocalView]:
        """Every local case made for `case_id` (more than one is a duplicate)."""

    @abc.abstractmethod
    async def fail(self, kind: str | None) -> None:
        """Misbehave: `unavailable`, `lost_answer` or one of `faults`; None: work again."""

    async def push(self, *, tamper: bool = False, stale: bool = False
                   ) -> tuple[dict[str, str], bytes] | None:
        """The webhook call the system would make now for its whole feed (headers, body), or
        None when it does not push."""
        return None


# One lifecycle per case, together touching every action; bodies in our terms.
Step = tuple[str, dict[str, Any]]
SCRIPTS: dict[str, list[Step]] = {
    "full": [("accept", {"receipt_no": "SL-0001"}), ("review", {}),
             ("suspend", {"reason": "需组织听证", "procedure": "hearing"}), ("resume", {}),
             ("conclude", {"outcome": "approved", "result": "准予许可",
                           "certificate": {"id": "ZZ-2026-0001", "name": "许可证"}}),
             ("deliver", {"tracking": "SF1234567890"})],
    "supplement": [("supplement-request", {"reason": "缺少缴费凭证",
                                           "materials": ["缴费凭证"]}),
                   ("SUPPLY", {}),
                   ("accept", {"receipt_no": "SL-0002"}),
                   ("conclude", {"outcome": "denied", "result": "不符合条件"})],
    "reject": [("reject", {"reason": "不属于本机关管辖"})],
}
assert {a for s in SCRIPTS.values() for a, _ in s} >= set(ACTIONS)


def sample_case(case_id: str, item_code: str, *, mode: str = "online",
                applicant_kind: str = "person", delivery_method: str = "post") -> LocalCase:
    """A case as the gateway would hand it over: a company applicant has a credit code and no
    identity number, and only a posted delivery has an address, so each kind and method arrives
    in the shape the local system will really see."""
    applicant: dict[str, Any] = (
        {"kind": "company", "name": "长沙某某科技有限公司", "credit_code": "91110000600037341L"}
        if applicant_kind == "company" else
        {"kind": applicant_kind, "name": "张三", "id_number": "430725199003071234"})
    applicant["phone"] = "13800138000"
    address = "湖南省长沙市岳麓区某路 1 号" if delivery_method == "post" else None
    return LocalCase(
        case_id=case_id, item_code=item_code, mode=mode, receiver="member-receiver",
        applicant=applicant, form={"reason": "工作调动"},
        materials=[{"code": "M01", "name": "身份证明"}, {"code": "M02", "name": "申请表"}],
        delivery={"method": delivery_method, "address": address},
        received_at=1_700_000_000.0)


@dataclass(frozen=True)
class LocalCodes:
    """Ours -> the local system's, for each coded field the kit checks on arrival."""

    items: Mapping[str, str]
    modes: Mapping[str, str]
    applicant_kinds: Mapping[str, str]
    delivery: Mapping[str, str]

    def __post_init__(self) -> None:
        """Refuse tables that would leave a code untested: a swapped row is only caught if
        both of its codes are submitted."""
        if not self.items:
            raise ValueError("run_contract needs at least one item code and its local code")
        if not self.modes:
            raise ValueError("run_contract needs at least one mode and its local code")
        if set(self.applicant_kinds) != set(APPLICANT_KINDS):
            raise ValueError("run_contract needs the local code of both applicant kinds "
                             f"({', '.join(APPLICANT_KINDS)}), got {sorted(self.applicant_kinds)}")
        if len(self.delivery) < 2:
            raise ValueError("run_contract needs at least two delivery methods and their local "
                             f"codes, got {sorted(self.delivery)}")
        for what, table, known in (("mode", self.modes, MODES),
                                   ("delivery method", self.delivery, DELIVERY_METHODS)):
            if unknown := sorted(set(table) - set(known)):
                raise ValueError(f"unknown {what} {', '.join(unknown)}: the alliance's are "
                                 f"{', '.join(known)}")

    def rows(self) -> int:
        """How many cases take every row of every table at least once."""
        return max(len(self.items), len(self.modes), len(self.applicant_kinds),
                   len(self.delivery))

    def case(self, case_id: str, n: int) -> LocalCase:
        """The `n`th case: each table's rows taken in turn, so consecutive cases check other
        rows and any `rows()` consecutive ones check them all."""
        def pick(table: Mapping[str, str]) -> str:
            keys = sorted(table)
            return keys[n % len(keys)]
        return sample_case(case_id, pick(self.items), mode=pick(self.modes),
                           applicant_kind=pick(self.applicant_kinds),
                           delivery_method=pick(self.delivery))


@dataclass
class Kit:
    adapter: RegionAdapter
    driver: LocalDriver
    codes: LocalCodes
    failures: list[str] = field(default_factory=list)
    cursor: str | None = None
    submitted: int = 0

    def fail(self, check: str, message: str) -> None:
        self.failures.append(f"{check}: {message}")

    async def expect_error(self, check: str, call: Callable[[], Awaitable[Any]], *,
                           transient: bool, kind: type[AdapterError] = AdapterError) -> bool:
        try:
            result = await call()
        except AdapterError as exc:
            if not isinstance(exc, kind):
                self.fail(check, f"{type(exc).__name__} instead of {kind.__name__}: {exc}")
                return False
            if exc.transient != transient:
                self.fail(check, f"AdapterError with transient={exc.transient}, expected "
                                 f"{transient}: {exc}")
                return False
            return True
        except Exception as exc:
            self.fail(check, f"{type(exc).__name__} instead of AdapterError: {exc}")
            return False
        self.fail(check, f"no error; the adapter returned {result!r:.200}")
        return False

    async def drain(self) -> list[LocalEvent]:
        """Every event since the kit's cursor, advancing it."""
        events: list[LocalEvent] = []
        for _ in range(50):
            batch, following = await self.adapter.poll(self.cursor)
            events.extend(batch)
            if following == self.cursor or not batch:
                self.cursor = following
                break
            self.cursor = following
        return events

    def new_case(self) -> LocalCase:
        """A fresh case, the code tables' rows taken in turn so that each case checks others."""
        case = self.codes.case(f"TB-CONTRACT-{uuid.uuid4().hex[:12]}", self.submitted)
        self.submitted += 1
        return case


async def run_contract(adapter: RegionAdapter, driver: LocalDriver, *,
                       items: Mapping[str, str], modes: Mapping[str, str],
                       applicant_kinds: Mapping[str, str], delivery: Mapping[str, str]) -> None:
    """Run every check; raise `ContractFailure` naming each one that failed.

    Each table maps our codes to the ones the local system must receive for them: `items` the
    alliance item codes the kit submits, `modes` every mode those items take there (online,
    proxy, joint), `applicant_kinds` both kinds (person, company), `delivery` at least two
    delivery methods (post, online, window). Write them from the local system's own catalog and
    code lists, not from the mapping under test: copied from the mapping, a wrong row would
    agree with itself.
    """
    codes = LocalCodes(dict(items), dict(modes), dict(applicant_kinds), dict(delivery))
    kit = Kit(adapter, driver, codes)
    await driver.fail(None)
    try:
        kit.cursor = (await adapter.poll(None))[1]
        await kit.drain()  # start after whatever the system already had
    except AdapterError as exc:
        raise ContractFailure([f"setup: polling a healthy system failed: {exc}"]) from None
    for check in (_round_trip, _codes, _withdraw, _outage, _duplicates, _malformed):
        try:
            await check(kit)
        except AdapterError as exc:
            kit.fail(check.__name__.strip("_"), f"unexpected AdapterError: {exc}")
        finally:
            await driver.fail(None)
    if kit.failures:
        raise ContractFailure(kit.failures)


async def _submit_once(kit: Kit, check: str, case: LocalCase) -> str | None:
    ref = await kit.adapter.submit(case)
    again = await kit.adapter.submit(case)
    if again != ref:
        kit.fail(check, f"submit is not idempotent: {ref!r} then {again!r}")
    views = await kit.driver.inspect(case.case_id)
    if len(views) != 1 or views[0].ref != ref:
        kit.fail(check, f"expected one local case {ref!r} for {case.case_id}, found "
                        f"{[v.ref for v in views]}")
        return None
    view = views[0]
    for what, table, ours, got in (
            ("item", kit.codes.items, case.item_code, view.item_code),
            ("mode", kit.codes.modes, case.mode, view.mode),
            ("applicant kind", kit.codes.applicant_kinds, case.applicant["kind"],
             view.applicant_kind),
            ("delivery", kit.codes.delivery, case.delivery["method"], view.delivery_method)):
        if got != table[ours]:
            kit.fail(check, f"{what} {ours} arrived as {got!r}, not as the local system's "
                            f"{table[ours]!r}")
    codes = {m["code"] for m in case.materials}
    if not codes <= set(views[0].material_codes):
        kit.fail(check, f"materials {sorted(codes)} did not arrive (local: "
                        f"{list(views[0].material_codes)})")
    return ref


async def _round_trip(kit: Kit) -> None:
    for name, script in SCRIPTS.items():
        check = f"round_trip[{name}]"
        try:
            await _one_lifecycle(kit, check, script)
        except AdapterError as exc:
            kit.fail(check, f"unexpected AdapterError: {exc}")


async def _one_lifecycle(kit: Kit, check: str, script: list[Step]) -> None:
    case = kit.new_case()
    ref = await _submit_once(kit, check, case)
    if ref is None:
        return
    if extra := [e for e in await kit.drain() if e.case_id == case.case_id]:
        kit.fail(check, f"a new case produced events {[e.action for e in extra]}")
    for action, body in script:
        if action == "SUPPLY":
            supplied = [{"code": "M09", "name": "缴费凭证（补）"}]
            await kit.adapter.supplement(ref, case.case_id, supplied)
            views = await kit.driver.inspect(case.case_id)
            if not views or "M09" not in views[0].material_codes:
                kit.fail(check, "supplied materials did not reach the local case")
            if events := [e for e in await kit.drain() if e.case_id == case.case_id]:
                kit.fail(check, f"supplying produced events {[e.action for e in events]}")
            continue
        await kit.driver.perform(ref, action, body)
        events = [e for e in await kit.drain() if e.case_id == case.case_id]
        got = [(e.action, dict(e.body)) for e in events]
        if got != [(action, body)]:
            kit.fail(check, f"after the officer's {action} {body}, poll gave {got}")
            return


async def _codes(kit: Kit) -> None:
    """Every row of every code table, whether or not the lifecycles happened to reach it: with
    26 items and three lifecycles, most items would otherwise never be submitted."""
    for n in range(kit.codes.rows()):
        case = kit.codes.case(f"TB-CONTRACT-{uuid.uuid4().hex[:12]}", n)
        await _submit_once(kit, "codes", case)


async def _withdraw(kit: Kit) -> None:
    case = kit.new_case()
    ref = await _submit_once(kit, "withdraw", case)
    if ref is None:
        return
    await kit.adapter.withdraw(ref, case.case_id, "申请人撤回")
    await kit.adapter.withdraw(ref, case.case_id, "申请人撤回")  # a retried call: harmless
    views = await kit.driver.inspect(case.case_id)
    if not views or not views[0].withdrawn:
        kit.fail("withdraw", "the local case is not withdrawn")
    if events := [e for e in await kit.drain() if e.case_id == case.case_id]:
        kit.fail("withdraw", f"our own withdrawal came back as {[e.action for e in events]}")


async def _outage(kit: Kit) -> None:
    case = kit.new_case()
    await kit.driver.fail("unavailable")
    await kit.expect_error("outage: submit while down", lambda: kit.adapter.submit(case),
                           transient=True)
    await kit.expect_error("outage: poll while down", lambda: kit.adapter.poll(kit.cursor),
                           transient=True)
    await kit.driver.fail("lost_answer")  # the call is made, its answer never arrives
    await kit.expect_error("outage: answer lost", lambda: kit.adapter.submit(case),
                           transient=True)
    await kit.driver.fail(None)
    ref = await kit.adapter.submit(case)  # the gateway's retry
    views = await kit.driver.inspect(case.case_id)
    if [v.ref for v in views] != [ref]:
        kit.fail("outage", f"after the retry the local system has {[v.ref for v in views]} "
                           f"for one case (ref {ref!r}): lost or duplicated")


async def _duplicates(kit: Kit) -> None:
    case = kit.new_case()
    ref = await kit.adapter.submit(case)
    before = kit.cursor
    await kit.driver.perform(ref, "accept", {"receipt_no": "SL-DUP"})
    first, _ = await kit.adapter.poll(before)
    second, _ = await kit.adapter.poll(before)
    if [e.event_id for e in first] != [e.event_id for e in second]:
        kit.fail("duplicates", "polling the same cursor twice gave different event ids")
    await kit.drain()
    push = await kit.driver.push()
    if push is None:
        # A system that does not push: the adapter must say so (the gateway answers 404).
        await kit.expect_error("duplicates: push to a polled system refused",
                               _later(kit.adapter.webhook, {}, b"{}"), transient=False,
                               kind=PushesNotTaken)
        return
    headers, body = push
    once = kit.adapter.webhook(headers, body)
    twice = kit.adapter.webhook(headers, body)
    if [e.event_id for e in once] != [e.event_id for e in twice]:
        kit.fail("duplicates", "the same push gave different event ids")
    polled = {e.event_id for e in first if e.case_id == case.case_id}
    pushed = {e.event_id for e in once if e.case_id == case.case_id}
    if not polled or polled != pushed:
        kit.fail("duplicates", f"one local event has id {sorted(polled)} when polled and "
                               f"{sorted(pushed)} when pushed: the gateway would apply it twice")
    for what, kwargs in (("forged", {"tamper": True}), ("stale", {"stale": True})):
        bad = await kit.driver.push(**kwargs)
        assert bad is not None
        await kit.expect_error(f"duplicates: {what} push refused",
                               _later(kit.adapter.webhook, *bad), transient=False,
                               kind=WebhookRefused)


def _later(fn: Callable[..., Any], *args: Any) -> Callable[[], Awaitable[Any]]:
    """A synchronous call (`webhook`) in the shape `expect_error` takes."""
    async def call() -> Any:
        return fn(*args)
    return call


async def _malformed(kit: Kit) -> None:
    case = kit.new_case()
    ref = await kit.adapter.submit(case)
    await kit.driver.perform(ref, "accept", {"receipt_no": "SL-MAL"})
    for kind in kit.driver.faults:
        await kit.driver.fail(kind)
        if kind != "unknown_state":
            await kit.expect_error(f"malformed[{kind}]: submit",
                                   lambda: kit.adapter.submit(kit.new_case()), transient=False)
        await kit.expect_error(f"malformed[{kind}]: poll", lambda: kit.adapter.poll(kit.cursor),
                               transient=False)
    await kit.driver.fail(None)
    events = [e for e in await kit.drain() if e.case_id == case.case_id]
    if [(e.action, dict(e.body)) for e in events] != [("accept", {"receipt_no": "SL-MAL"})]:
        kit.fail("malformed", f"after recovery the feed gave {[e.action for e in events]}, "
                              "not the one accept that was waiting")

