"""Electronic certificates (电子证照, GB/T 36901-36906) issued by one member, relied on by another.

An applicant may present an e-certificate instead of paper (国办发〔2022〕3号: nationwide mutual
recognition). The material then names the certificate (`cert: {id, issuer}`), and the handling
gateway asks the issuing member whether it is genuine, current and the applicant's own:
`cert.verify_request` → `cert.verify_response`, both ordinary signed messages, so the answer is
as trustworthy and as durable as any case message. The officer sees each material's check
result on the case. A member records the certificates it issues when a case concludes with one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cases.model import Case
from gateway.cases.service import CERT_ID_RE, CaseService, Tx
from gateway.db.cert_repo import CertCheck, CertRepo
from gateway.federation.messages import UUID_RE, InboundMessage, InvalidBody
from gateway.federation.outbox import enqueue
from registry.document import Role

log = logging.getLogger(__name__)



class CertService:
    def __init__(self, service: CaseService, repo: CertRepo) -> None:
        self._service = service
        self._repo = repo

    async def request_checks(self, tx: Tx, case_: Case) -> Case:
        """Ask each issuer about the e-certificates a new case relies on."""
        service = self._service
        materials = [dict(m) for m in case_.data.get("materials", [])]
        asked = False
        for material in materials:
            cert = material.get("cert")
            if not isinstance(cert, Mapping) or not cert.get("id") or not cert.get("issuer"):
                continue
            request_id = str(uuid.uuid4())
            issuer = str(cert["issuer"])
            if issuer == service.me:
                valid, reason = await self.verify(tx.conn, str(cert["id"]), case_)
                material["cert"] = {**cert, "status": "valid" if valid else "invalid",
                                    "reason": reason}
            else:
                await self._repo.add_check(tx.conn, CertCheck(
                    request_id, case_.case_id, str(material["code"]), str(cert["id"]), issuer,
                    "pending", None), service._clock())
                await enqueue(tx.conn, service._outbox, dest=issuer,
                              type_="cert.verify_request",
                              body={"request_id": request_id, "cert_id": cert["id"],
                                    "holder": _holder(case_)},
                              now=service._clock())
                tx.wake.add(issuer)
                material["cert"] = {**cert, "status": "pending"}
            asked = True
        if not asked:
            return case_
        updated = replace(case_, data={**case_.data, "materials": materials})
        await service.repo.save(tx.conn, updated)
        return updated

    async def verify(self, conn: AsyncConnection, cert_id: str,
                     holder: Case | Mapping[str, Any]) -> tuple[bool, str]:
        issued = await self._repo.issued(conn, cert_id)
        if issued is None:
            return False, "no such certificate issued by this member"
        if issued.status != "valid":
            return False, f"certificate is {issued.status}"
        identity = holder.applicant.identity if isinstance(holder, Case) else \
            str(holder.get("id_number") or holder.get("credit_code") or "")
        if not identity or self._service.applicant_key(identity) != issued.holder_key:
            return False, "certificate belongs to someone else"
        return True, f"{issued.name}, valid"

    async def issue(self, tx: Tx, case_: Case, certificate: Mapping[str, Any]) -> None:
        """Record an e-certificate this member issues with an approved decision."""
        cert_id = str(certificate["id"])
        item = self._service.catalog.get(case_.item_code or "")
        name = str(certificate.get("name") or (item.name if item else "电子证照"))
        if not await self._repo.issue(tx.conn, cert_id=cert_id, name=name,
                                      holder_key=case_.applicant_key, case_id=case_.case_id,
                                      now=self._service._clock()):
            raise InvalidBody(f"certificate id {cert_id} was already issued")


def _holder(case_: Case) -> dict[str, Any]:
    applicant = case_.applicant
    if applicant.id_number:
        return {"kind": "person", "id_number": applicant.id_number}
    return {"kind": "company", "credit_code": applicant.credit_code}


class CertRequestHandler:
    """The issuer's side: answer whether a certificate is genuine and the holder's own."""

    case_bound = False
    sender_roles: ClassVar[frozenset[Role]] = frozenset()

    def __init__(self, certs: CertService, service: CaseService) -> None:
        self._certs = certs
        self._service = service

    def validate(self, body: Mapping[str, Any]) -> None:
        if not isinstance(body.get("request_id"), str) or not UUID_RE.match(body["request_id"]):
            raise InvalidBody("body.request_id must be a UUID")
        if not isinstance(body.get("cert_id"), str) or not CERT_ID_RE.match(body["cert_id"]):
            raise InvalidBody("body.cert_id must be a certificate id (1-128 of A-Z a-z 0-9 .:_-)")
        if not isinstance(body.get("holder"), Mapping):
            raise InvalidBody("body.holder must name the holder (id_number or credit_code)")

    async def apply(self, conn: AsyncConnection, message: InboundMessage) -> None:
        body = message.body
        valid, reason = await self._certs.verify(conn, str(body["cert_id"]), body["holder"])
        await enqueue(conn, self._service._outbox, dest=message.iss,
                      type_="cert.verify_response",
                      body={"request_id": body["request_id"], "cert_id": body["cert_id"],
                            "valid": valid, "reason": reason},
                      now=self._service._clock())

    async def after_commit(self, message: InboundMessage) -> None:
        self._service._notify(message.iss)


class CertResponseHandler:
    """The asking side: record the issuer's answer on the case's material."""

    case_bound = False
    sender_roles: ClassVar[frozenset[Role]] = frozenset()

    def __init__(self, repo: CertRepo, service: CaseService) -> None:
        self._repo = repo
        self._service = service

    def validate(self, body: Mapping[str, Any]) -> None:
        if not isinstance(body.get("request_id"), str) or \
                not isinstance(body.get("cert_id"), str) or \
                not isinstance(body.get("valid"), bool):
            raise InvalidBody("body.request_id, body.cert_id (strings) and body.valid "
                              "(boolean) are required")

    async def apply(self, conn: AsyncConnection, message: InboundMessage) -> None:
        body = message.body
        check = await self._repo.check(conn, str(body["request_id"]))
        if check is None or check.issuer != message.iss or check.cert_id != body["cert_id"]:
            raise InvalidBody("no such certificate check was asked of this member")
        if check.status != "pending":
            return  # answered already; a second answer changes nothing
        status = "valid" if body["valid"] else "invalid"
        reason = str(body.get("reason") or "")[:500]
        now = self._service._clock()
        await self._repo.answer(conn, check.request_id, status=status, reason=reason, now=now)
        case_ = await self._service.repo.get(conn, check.case_id, for_update=True)
        if case_ is None:
            return
        materials = []
        for material in case_.data.get("materials", []):
            cert = material.get("cert")
            if material.get("code") == check.material and isinstance(cert, Mapping):
                material = {**material, "cert": {**cert, "status": status, "reason": reason}}
            materials.append(material)
        await self._service.repo.save(conn, replace(case_, data={**case_.data,
                                                                 "materials": materials}))
        await self._service.repo.add_event(conn, case_.case_id, event="cert.verify_response",
                                           from_state=case_.state, to_state=None,
                                           actor=message.iss, at=now, jti=message.jti,
                                           detail={"material": check.material,
                                                   "cert_id": check.cert_id, "status": status})
        log.info("case %s: certificate of material %s is %s (%s)", case_.case_id,
                 check.material, status, message.iss)

    async def after_commit(self, message: InboundMessage) -> None:
        return None
