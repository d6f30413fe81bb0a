"""What the REST and SOAP adapters share: a mapping file, a retry policy, and the translation
of our calls and the local events; each subclass only moves documents over its transport."""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from adapters.base import AdapterError, ConfigProblem, LocalCase, LocalEvent, RegionAdapter
from adapters.httpcall import Policy, retrying
from adapters.mapping import RegionMapping, load
from adapters.translate import build, events_from, scalar


class MappedAdapter(RegionAdapter):
    """A local system described by a mapping file (`[adapter.settings] mapping = ...`)."""

    lenient: ClassVar[bool] = False  # XML cannot tell a list of one from one value

    @classmethod
    def check_config(cls, config: Mapping[str, Any], *, base: Path) -> None:
        cls.check_mapping(load(config, base))

    @classmethod
    @abc.abstractmethod
    def check_mapping(cls, mapping: RegionMapping) -> None:
        """Refuse what this transport cannot do with the mapping (`ConfigProblem`)."""

    def __init__(self, config: Mapping[str, Any], *, base: Path,
                 session: aiohttp.ClientSession, secrets: Mapping[str, str]) -> None:
        super().__init__(config, base=base, session=session, secrets=secrets)
        self.mapping = load(config, base)
        self.check_mapping(self.mapping)
        service = self.mapping.service
        self.policy = Policy(timeout=service.timeout, attempts=service.attempts,
                             backoff=service.backoff, max_answer_bytes=service.max_answer_bytes)
        self.clock: Callable[[], float] = time.time

    def auth_headers(self) -> dict[str, str]:
        service = self.mapping.service
        if service.auth_header is None or service.auth_secret is None:
            return {}
        value = self.secrets.get(service.auth_secret)
        if not value:
            raise AdapterError(f"the mapping wants secret {service.auth_secret!r} for "
                               f"{service.auth_header}; [adapter.secrets] does not give it",
                               transient=False)
        return {service.auth_header: value}

    # --- the transport -------------------------------------------------------------------
    @abc.abstractmethod
    async def send(self, call: str, doc: Mapping[str, Any], *, ref: str | None,
                   case_id: str) -> Any:
        """Make one call (`submit`, `supplement`, `withdraw`); return the answer's tree."""

    @abc.abstractmethod
    async def fetch_events(self, cursor: str | None) -> Any:
        """Ask for the events since `cursor`; return the answer's tree."""

    # --- the contract --------------------------------------------------------------------
    async def submit(self, case: LocalCase) -> str:
        doc = build(self.mapping.submit.fields, dataclasses.asdict(case), self.mapping)
        answer = await retrying(self.policy, lambda: self.send("submit", doc, ref=None,
                                                               case_id=case.case_id))
        assert self.mapping.submit.reply_ref is not None  # checked with the mapping
        return scalar(answer, self.mapping.submit.reply_ref, what="local reference",
                      lenient=self.lenient)

    async def supplement(self, ref: str, case_id: str,
                         materials: Sequence[Mapping[str, Any]]) -> None:
        record = {"ref": ref, "case_id": case_id, "materials": [dict(m) for m in materials]}
        doc = build(self.mapping.supplement.fields, record, self.mapping)
        await retrying(self.policy, lambda: self.send("supplement", doc, ref=ref,
                                                      case_id=case_id))

    async def withdraw(self, ref: str, case_id: str, reason: str) -> None:
        record = {"ref": ref, "case_id": case_id, "reason": reason}
        doc = build(self.mapping.withdraw.fields, record, self.mapping)
        await retrying(self.policy, lambda: self.send("withdraw", doc, ref=ref,
                                                      case_id=case_id))

    async def poll(self, cursor: str | None) -> tuple[list[LocalEvent], str | None]:
        answer = await retrying(self.policy, lambda: self.fetch_events(cursor))
        events = events_from(answer, self.mapping, lenient=self.lenient)
        following = scalar(answer, self.mapping.events.next_cursor, what="next cursor",
                           lenient=self.lenient)
        return events, following


def problem(where: str, message: str) -> ConfigProblem:
    return ConfigProblem(f"adapter.settings.mapping: {where}: {message}")
