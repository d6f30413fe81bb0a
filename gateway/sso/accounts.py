"""Accounts of the local demo identity provider, made by `tongban applicant add`.

A real deployment signs applicants in through its region's identity provider (OIDC); this
small one lets a local federation show the whole path with a password and an assurance level
per account. The account is keyed by the same pseudonym of the ID number as the cases.
"""

from __future__ import annotations

import asyncio
import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.auth_repo import AuthRepo
from gateway.db.sso_repo import Account, SsoRepo
from registry.validation import InvalidInput, check_resident_id
from trust import credentials, sso
from trust.errors import ErrorCode, TongbanError

PSEUDONYM_SECRET = "applicant-pseudonym"  # noqa: S105 - the name of a stored secret


async def applicant_key_function(engine: AsyncEngine) -> tuple[str, object]:
    secret = await AuthRepo(engine).secret(PSEUDONYM_SECRET, credentials.new_secret())
    return secret, lambda identity: credentials.pseudonym(secret, identity)


async def add_local_account(engine: AsyncEngine, *, id_number: str, name: str, loa: str,
                            password: str, now: float) -> None:
    try:
        number = check_resident_id(id_number, "id_number", today=datetime.date.today()).number
    except InvalidInput as exc:
        raise TongbanError(exc.detail, code=ErrorCode.INVALID_BODY) from None
    if loa not in sso.LOA_LEVELS:
        raise TongbanError(f"--loa must be one of {', '.join(sso.LOA_LEVELS)}",
                           code=ErrorCode.INVALID_BODY)
    if not name.strip():
        raise TongbanError("--name is required", code=ErrorCode.INVALID_BODY)
    if len(password) < 8:
        raise TongbanError("the password must be at least 8 characters",
                           code=ErrorCode.INVALID_BODY)
    secret = await AuthRepo(engine).secret(PSEUDONYM_SECRET, credentials.new_secret())
    hashed = await asyncio.to_thread(credentials.hash_password, password)
    account = Account(credentials.pseudonym(secret, number), number, name.strip(), loa, hashed)
    if not await SsoRepo(engine).add_account(account, now):
        raise TongbanError("an account for this ID number exists already",
                           code=ErrorCode.INVALID_BODY)
