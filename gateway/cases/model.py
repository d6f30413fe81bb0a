"""What a case is, as the domain code sees it: frozen records, no database rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.cases.states import CaseState, Side
from registry.validation import mask_id, mask_name, mask_phone


@dataclass(frozen=True)
class Applicant:
    """The person or company applying. Personal data: only `masked()` may leave the API."""

    kind: str  # person | company
    name: str
    id_number: str | None = None  # resident ID (person)
    credit_code: str | None = None  # unified social credit code (company)
    phone: str | None = None

    @property
    def identity(self) -> str:
        return self.id_number or self.credit_code or ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "id_number": self.id_number,
                "credit_code": self.credit_code, "phone": self.phone}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Applicant:
        return cls(kind=str(data.get("kind", "person")), name=str(data.get("name", "")),
                   id_number=data.get("id_number"), credit_code=data.get("credit_code"),
                   phone=data.get("phone"))

    def masked(self) -> dict[str, Any]:
        """What views and logs may show (DESIGN.md: personal data masked)."""
        name = mask_name(self.name) if self.kind == "person" else self.name
        phone = mask_phone(self.phone) if self.phone and len(self.phone) >= 7 else None
        return {"kind": self.kind, "name": name,
                "id_number": mask_id(self.id_number) if self.id_number else None,
                "credit_code": self.credit_code, "phone": phone}


@dataclass(frozen=True)
class CaseEvent:
    n: int
    event: str
    from_state: CaseState | None
    to_state: CaseState | None  # None: a request, not a transition
    actor: str
    at: float
    jti: str | None
    detail: Mapping[str, Any]

    @property
    def is_transition(self) -> bool:
        return self.to_state is not None


@dataclass(frozen=True)
class Case:
    case_id: str
    side: Side
    kind: str  # single | joint | bundle
    mode: str
    receiver: str
    handler: str | None
    state: CaseState | None  # None: a bundle step not yet submitted
    applicant_key: str
    applicant: Applicant
    data: Mapping[str, Any]  # form, materials, delivery, outcome, ... (JSON document)
    clock: Mapping[str, Any]  # statutory clock inputs (ISO dates)
    created_at: float
    updated_at: float
    item_code: str | None = None
    parent_id: str | None = None
    step: int | None = None
    portal_client: str | None = None
    query_password_hash: str | None = None
    decision_due: str | None = None
    supplement_due: str | None = None
    overdue: bool = False
    supplement_count: int = 0
    events: tuple[CaseEvent, ...] = field(default=())

    @property
    def is_local(self) -> bool:
        """Received and decided by this same member (e.g. an applicant signed in by SSO who
        applies on the deciding member's own portal): one copy, no messages."""
        return self.kind == "single" and self.receiver == self.handler

    @property
    def counterpart(self) -> str | None:
        """The other gateway of this case (None for a parent case or a local case)."""
        if self.kind != "single" or self.is_local:
            return None
        return self.handler if self.side is Side.RECEIVER else self.receiver

    @property
    def delivery_method(self) -> str:
        delivery = self.data.get("delivery") or {}
        return str(delivery.get("method", "window"))
