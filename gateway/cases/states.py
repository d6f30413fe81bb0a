"""The case lifecycle: one transition table, enforced by both sides of a case.

Two gateways hold a copy of every cross-region case: the *receiver* (the member whose window or
portal took the application; its id prefixes the case id) and the *handler* (the member whose
authority decides). If both could move the case at any time, a withdrawal and a decision sent
at the same moment would each be refused by the other side and the copies would disagree for
ever. So every state has exactly one *owner*, the only side that may leave it:

- before the case is forwarded, and again after the decision when the result is handed over at
  the receiving window, the receiver owns it;
- from the moment the handler has it until the decision, the handler owns it (业务属地 keeps the
  power to decide, 国办发〔2020〕35号).

What the receiver wants while the handler owns the case (withdraw, supply missing materials,
change the delivery address) travels as a *request* (`case.withdraw`, `case.supplement`, a
`case.status` note): it changes no state by itself; the handler applies it and announces the
resulting transition with `case.status`. Every transition is one signed message, and both
copies see the same transitions in the same order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from trust.errors import ErrorCode, TongbanError


class CaseState(enum.StrEnum):
    SUBMITTED = "submitted"
    RECEIVED_AT_WINDOW = "received_at_window"
    FORMALLY_CHECKED = "formally_checked"
    FORWARDED = "forwarded"
    HANDLER_RECEIVED = "handler_received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPPLEMENT_REQUIRED = "supplement_required"
    IN_REVIEW = "in_review"
    SUSPENDED = "suspended"
    CONCLUDED = "concluded"
    DELIVERED = "delivered"
    EVALUATED = "evaluated"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


class Side(enum.StrEnum):
    RECEIVER = "receiver"
    HANDLER = "handler"

    @property
    def other(self) -> Side:
        return Side.HANDLER if self is Side.RECEIVER else Side.RECEIVER


S = CaseState
FINAL = frozenset({S.REJECTED, S.WITHDRAWN, S.CLOSED, S.EVALUATED})
# States in which no decision has been made yet: a withdrawal is still possible (DESIGN.md).
UNDECIDED = frozenset({S.SUBMITTED, S.FORWARDED, S.HANDLER_RECEIVED, S.ACCEPTED,
                       S.SUPPLEMENT_REQUIRED, S.IN_REVIEW, S.SUSPENDED})
# Local steps at the receiving window, before the handler knows the case.
LOCAL_EVENTS = frozenset({"window.intake", "window.formal_check", "window.withdraw"})


class InvalidTransition(TongbanError):
    code = ErrorCode.INVALID_TRANSITION


@dataclass(frozen=True)
class Transition:
    """`event` moves a case from one of `sources` to `target`; only `owner` may send it."""

    event: str
    sources: frozenset[CaseState | None]
    target: CaseState
    owner: Side


def _t(event: str, sources: Iterable[CaseState | None], target: CaseState,
       owner: Side) -> Transition:
    return Transition(event, frozenset(sources), target, owner)


R, H = Side.RECEIVER, Side.HANDLER
TRANSITIONS: tuple[Transition, ...] = (
    # At the receiving window (local; carried to the handler inside case.submit).
    _t("window.intake", [None], S.RECEIVED_AT_WINDOW, R),
    _t("window.formal_check", [S.RECEIVED_AT_WINDOW], S.FORMALLY_CHECKED, R),
    _t("window.withdraw", [S.RECEIVED_AT_WINDOW, S.FORMALLY_CHECKED], S.WITHDRAWN, R),
    # Submission: online from the portal, or forwarded by the window after the formal check.
    _t("case.submit", [None], S.SUBMITTED, R),
    _t("case.submit", [S.FORMALLY_CHECKED], S.FORWARDED, R),
    # The handler takes it in and decides.
    _t("case.status", [S.SUBMITTED, S.FORWARDED], S.HANDLER_RECEIVED, H),
    _t("case.accept", [S.HANDLER_RECEIVED], S.ACCEPTED, H),
    _t("case.reject", [S.HANDLER_RECEIVED], S.REJECTED, H),
    _t("case.supplement_request", [S.HANDLER_RECEIVED], S.SUPPLEMENT_REQUIRED, H),
    _t("case.status", [S.SUPPLEMENT_REQUIRED], S.SUBMITTED, H),  # after case.supplement
    _t("case.status", [S.SUPPLEMENT_REQUIRED], S.CLOSED, H),  # supplement timed out
    _t("case.status", [S.ACCEPTED, S.SUSPENDED], S.IN_REVIEW, H),
    _t("case.status", [S.IN_REVIEW], S.SUSPENDED, H),  # special procedure: clock stops
    _t("case.conclude", [S.ACCEPTED, S.IN_REVIEW], S.CONCLUDED, H),
    _t("case.status", UNDECIDED, S.WITHDRAWN, H),  # after case.withdraw
    # The result reaches the applicant: by post or online (handler), or at the window (receiver).
    _t("case.deliver", [S.CONCLUDED], S.DELIVERED, H),
    _t("case.deliver", [S.CONCLUDED], S.DELIVERED, R),
    _t("case.evaluate", [S.DELIVERED], S.EVALUATED, R),
)


class Request(enum.StrEnum):
    """What the receiver may ask of the handler while the handler owns the case."""

    WITHDRAW = "case.withdraw"
    SUPPLEMENT = "case.supplement"
    NOTE = "case.status"  # a case.status without `state`: e.g. a new delivery address


REQUEST_SOURCES: dict[Request, frozenset[CaseState]] = {
    Request.WITHDRAW: UNDECIDED,
    Request.SUPPLEMENT: frozenset({S.SUPPLEMENT_REQUIRED}),
    # Delivery can change until the decision; after it, whoever delivers has already begun.
    Request.NOTE: UNDECIDED,
}


def find(event: str, state: CaseState | None, target: CaseState | None,
         owner: Side | None = None) -> Transition:
    """The transition `event` makes from `state` (to `target` where the event needs one).

    Raises `InvalidTransition` with a reason a clerk can act on.
    """
    candidates = [t for t in TRANSITIONS if t.event == event
                  and (target is None or t.target is target)
                  and (owner is None or t.owner is owner)]
    if not candidates:
        wanted = f" to {target.value}" if target is not None else ""
        raise InvalidTransition(f"{event}{wanted} is not a transition of the case lifecycle")
    for transition in candidates:
        if state in transition.sources:
            return transition
    where = state.value if state is not None else "a case that does not exist yet"
    allowed = sorted({s.value if s is not None else "(new case)"
                      for t in candidates for s in t.sources})
    return_target = f" to {target.value}" if target is not None else ""
    raise InvalidTransition(f"{event}{return_target} is not allowed from {where}; "
                            f"allowed from: {', '.join(allowed)}")


def check_request(request: Request, state: CaseState) -> None:
    if state not in REQUEST_SOURCES[request]:
        raise InvalidTransition(f"{request.value} is not possible while the case is "
                                f"{state.value}")


def owner_of(state: CaseState) -> Side | None:
    """Which side may move a case out of `state` (None: final state)."""
    owners = {t.owner for t in TRANSITIONS if state in t.sources}
    if not owners:
        return None
    if len(owners) == 1:
        return owners.pop()
    return None  # CONCLUDED: depends on the delivery method, decided by the caller
