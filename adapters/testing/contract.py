"""The contract kit: what any region adapter must do against its local system, checked for real.

The kit drives a running local system through a `LocalDriver` (how an officer acts there, how
to look a case up, how to make it fail) and checks the adapter only through the `RegionAdapter`
contract, so the same checks run for REST, SOAP or any adapter shipped as its own package:

- every case state round-trips: each handling action an officer takes locally comes back from
  `poll` as exactly that action with exactly that body, and `submit` is idempotent;
- a submitted case arrives under the local system's own item code: `items`, given by whoever
  knows the local catalog, says which local code each of ours must become, so a code table in
  the mapping that points an item at the wrong local one fails instead of agreeing with itself;
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


class ContractFailure(AssertionError):
    def __init__(self, failures: Sequence[str]) -> None:
        super().__init__("the adapter breaks the contract:\n- " + "\n- ".join(failures))
        self.failures = list(failures)


@dataclass(frozen=True)
class LocalView:
    """What the local system holds for one of our cases, in our terms."""

    ref: str
    item_code: str  # as the local system holds it (its own code, not ours)
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


def sample_case(case_id: str, item_code: str) -> LocalCase:
    return LocalCase(
        case_id=case_id, item_code=item_code, mode="online", receiver="member-receiver",
        applicant={"kind": "person", "name": "张三", "id_number": "430725199003071234",
                   "phone": "13800138000"},
        form={"reason": "工作调动"},
        materials=[{"code": "M01", "name": "身份证明"}, {"code": "M02", "name": "申请表"}],
        delivery={"method": "post", "address": "湖南省长沙市岳麓区某路 1 号"},
        received_at=1_700_000_000.0)


@dataclass
class Kit:
    adapter: RegionAdapter
    driver: LocalDriver
    items: Mapping[str, str]  # our item code -> the local system's
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
        """A fresh case, the items taken in turn so that each case checks another table row."""
        codes = sorted(self.items)
        code = codes[self.submitted % len(codes)]
        self.submitted += 1
        return sample_case(f"TB-CONTRACT-{uuid.uuid4().hex[:12]}", code)


async def run_contract(adapter: RegionAdapter, driver: LocalDriver, *,
                       items: Mapping[str, str]) -> None:
    """Run every check; raise `ContractFailure` naming each one that failed.

    `items`: the alliance item codes the kit submits, each with the code the local system must
    receive for it. Write it from the local system's own catalog, not from the mapping under
    test: copied from the mapping, a wrong row would agree with itself.
    """
    if not items:
        raise ValueError("run_contract needs at least one item code and its local code")
    kit = Kit(adapter, driver, dict(items))
    await driver.fail(None)
    try:
        kit.cursor = (await adapter.poll(None))[1]
        await kit.drain()  # start after whatever the system already had
    except AdapterError as exc:
        raise ContractFailure([f"setup: polling a healthy system failed: {exc}"]) from None
    for check in (_round_trip, _withdraw, _outage, _duplicates, _malformed):
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
    expected = kit.items[case.item_code]
    if views[0].item_code != expected:
        kit.fail(check, f"item {case.item_code} arrived as {views[0].item_code!r}, not as the "
                        f"local system's {expected!r}")
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

