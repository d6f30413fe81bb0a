"""Joint cases (多地联办) and bundles (一件事一次办): one application, several parts.

The receiving gateway keeps a *parent* case that only it holds; each part is an ordinary case
with one handling member, so the federation protocol needs nothing new. The parent's state is
the applicant's one status: it concludes when every part has settled (fan-in), is delivered
when every concluded part is, and its evaluation is passed on to every part. In an ordered
bundle a step starts when the previous one concluded; a failed step cancels the later ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.cases.applications import Application
from gateway.cases.model import Case
from gateway.cases.service import DONE, Actor, CaseService, Tx
from gateway.cases.states import FINAL, CaseState, InvalidTransition, Request, Side
from registry.routing import Route

S = CaseState
SETTLED = DONE | FINAL


async def _set_state(service: CaseService, tx: Tx, parent: Case, target: CaseState,
                     event: str, detail: dict[str, Any]) -> Case:
    moved = replace(parent, state=target, updated_at=service._clock())
    await service.repo.save(tx.conn, moved)
    await service.repo.add_event(tx.conn, parent.case_id, event=event,
                                 from_state=parent.state, to_state=target, actor=service.me,
                                 at=service._clock(), jti=None, detail=detail)
    return moved


async def create_parent(service: CaseService, tx: Tx, app: Application, routes: list[Route],
                        actor: Actor, query_hash: str) -> Case:
    item = routes[0].item.code if app.kind == "joint" else None
    parent = service._new_case(app=app, actor=actor, kind=app.kind, item=item,
                               handler=None, query_hash=query_hash)
    parent = replace(parent, data={**parent.data, "ordered": app.ordered})
    await service.repo.insert(tx.conn, parent)
    parts = []
    for part, chosen in zip(app.parts, routes, strict=True):
        child = service._new_case(app=app, actor=actor, kind="single",
                                  item=chosen.item.code, handler=chosen.handler,
                                  parent_id=parent.case_id, step=part.step, query_hash=None)
        await service.repo.insert(tx.conn, child)
        parts.append(child)
    parent = await _set_state(service, tx, parent, S.SUBMITTED, f"{app.kind}.submit",
                              {"parts": [{"case": c.case_id, "item": c.item_code,
                                          "handler": c.handler, "step": c.step}
                                         for c in parts], "by": actor.label})
    for child in parts:
        if not app.ordered or child.step == 1:
            await service.send_submit(tx, child, actor.label)
    return parent


async def on_part_changed(service: CaseService, tx: Tx, child: Case) -> None:
    assert child.parent_id is not None
    parent = await service.repo.get(tx.conn, child.parent_id, for_update=True)
    if parent is None:
        return
    children = await service.repo.children(tx.conn, parent.case_id)
    if parent.data.get("ordered") and parent.state is S.SUBMITTED:
        if child.state is S.CONCLUDED:
            following = [c for c in children if c.state is None]
            if following:
                await service.send_submit(tx, following[0], service.me)
                return
        elif child.state in FINAL:
            for later in (c for c in children if c.state is None):
                await _set_state(service, tx, later, S.WITHDRAWN, "bundle.cancel",
                                 {"reason": f"step {child.step} ended {child.state.value}"})
            children = await service.repo.children(tx.conn, parent.case_id)
    if parent.state is S.SUBMITTED and all(c.state in SETTLED for c in children):
        if all(c.state is S.WITHDRAWN for c in children):
            await _set_state(service, tx, parent, S.WITHDRAWN, f"{parent.kind}.withdrawn", {})
            return
        await _set_state(service, tx, parent, S.CONCLUDED, f"{parent.kind}.concluded",
                         {"parts": {c.case_id: c.state.value if c.state else None
                                    for c in children}})
    elif parent.state is S.CONCLUDED:
        concluded = [c for c in children if c.state in DONE]
        if concluded and all(c.state in (S.DELIVERED, S.EVALUATED) for c in concluded):
            await _set_state(service, tx, parent, S.DELIVERED, f"{parent.kind}.delivered",
                             {"parts": [c.case_id for c in concluded]})


async def deliver_parent(service: CaseService, tx: Tx, parent: Case, actor: Actor) -> Case:
    if parent.state is not S.CONCLUDED:
        raise InvalidTransition(f"the {parent.kind} case is {_state(parent)}; its result is "
                                "handed over once every part has concluded")
    for child in await service.repo.children(tx.conn, parent.case_id):
        if child.state is S.CONCLUDED and child.delivery_method == "window":
            await service._move(tx, child, "case.deliver", S.DELIVERED,
                                owner=Side.RECEIVER, actor=actor.label, send=True,
                                body={"method": "window"})
    found = await service.repo.get(tx.conn, parent.case_id)
    assert found is not None
    return found


async def evaluate_parent(service: CaseService, tx: Tx, parent: Case, actor: Actor,
                          body: dict[str, Any]) -> Case:
    if parent.state is not S.DELIVERED:
        raise InvalidTransition(f"the {parent.kind} case is {_state(parent)}; it can be "
                                "evaluated once delivered")
    for child in await service.repo.children(tx.conn, parent.case_id):
        if child.state is S.DELIVERED:
            await service._move(tx, child, "case.evaluate", S.EVALUATED,
                                owner=Side.RECEIVER, actor=actor.label, send=True,
                                body=dict(body), data={"evaluation": body})
    moved = replace(parent, data={**parent.data, "evaluation": body})
    return await _set_state(service, tx, moved, S.EVALUATED, f"{parent.kind}.evaluate",
                            {**body, "by": actor.label})


async def withdraw_parent(service: CaseService, tx: Tx, parent: Case, actor: Actor,
                          reason: str) -> Case:
    if parent.state is not S.SUBMITTED:
        raise InvalidTransition(f"the {parent.kind} case is {_state(parent)}; only an "
                                "undecided case can be withdrawn")
    for child in await service.repo.children(tx.conn, parent.case_id):
        if child.state is None:
            await _set_state(service, tx, child, S.WITHDRAWN, "bundle.cancel",
                             {"reason": reason})
        elif child.state not in SETTLED:
            await service._request(tx, child, Request.WITHDRAW, actor,
                                   {"reason": reason})
    found = await service.repo.get(tx.conn, parent.case_id)
    assert found is not None
    return found


def _state(case_: Case) -> str:
    return case_.state.value if case_.state else "not started"
