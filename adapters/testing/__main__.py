"""`python -m adapters.testing ADAPTER MAPPING [--item OURS=LOCAL ...] [--mode OURS=LOCAL ...]
[--applicant-kind OURS=LOCAL ...] [--delivery OURS=LOCAL ...]`: run the contract kit against a
fresh reference local case system, for an adapter installed in the `tongban.adapters` group and
a mapping of the reference system (a starting point for a region's own mapping, or a check after
editing one).

The reference system has no item catalog of its own (it takes any well-formed local code), and
its two faces speak different codes for modes, applicant kinds and delivery methods, so without
the options the codes the kit expects to arrive are the mapping's own `[codes.items]`,
`[codes.modes]`, `[codes.applicant_kinds]` and `[codes.delivery]`: that checks the adapter
applies the tables, not that the tables are right. Each option gives one table from elsewhere
(the authority's catalog, the face's documentation) in place of the mapping's, which checks
that table too.

A region whose local system is not the reference one runs `run_contract` from its own tests with
a `LocalDriver` for that system (docs/adapters.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path

import aiohttp

from adapters.base import ConfigProblem, RegionAdapter
from adapters.mapping import load
from adapters.testing.contract import ContractFailure, LocalCodes, run_contract
from adapters.testing.reference import ReferenceDriver, ReferenceSystem

API_KEY = "contract-kit-api-key"
WEBHOOK_SECRET = "contract-kit-webhook-secret-0123456789"  # noqa: S105 - a throwaway test value


def adapter_class(name: str) -> type[RegionAdapter]:
    for point in entry_points(group="tongban.adapters"):
        if point.name == name:
            loaded = point.load()
            if isinstance(loaded, type) and issubclass(loaded, RegionAdapter):
                return loaded
            raise SystemExit(f"error: {point.value} is not a RegionAdapter subclass")
    raise SystemExit(f"error: no adapter {name!r} in the tongban.adapters entry-point group")


# Option, the mapping's code table it stands in for, an example.
TABLES = {"item": ("items", "KSTB-SB-0001=XS-SB-1001"), "mode": ("modes", "online=WB"),
          "applicant_kind": ("applicant_kinds", "person=GR"), "delivery": ("delivery", "post=YJ")}


async def check(name: str, mapping: Path,
                given: Mapping[str, dict[str, str]] | None = None) -> list[str]:
    """The failed checks (none: passed). `given`: a table per option name in TABLES, in place
    of the mapping's own."""
    cls = adapter_class(name)
    settings = {"mapping": str(mapping)}
    try:
        cls.check_config(settings, base=mapping.parent)
        region = load(settings, mapping.parent)
    except ConfigProblem as exc:
        return [str(exc)]
    tables: dict[str, dict[str, str]] = {}
    for option, (table, _example) in TABLES.items():
        tables[table] = dict((given or {}).get(option) or region.codes.get(table, {}))
        if not tables[table]:
            flag = "--" + option.replace("_", "-")
            return [f"the mapping has no [codes.{table}] table: give the local codes with {flag}"]
    try:
        LocalCodes(**tables)  # refused before a reference system is started for nothing
    except ValueError as exc:
        return [str(exc)]
    auth = region.service.auth_secret
    pushes = region.webhook is not None
    with tempfile.TemporaryDirectory(prefix="tongban-contract-") as folder:
        system = await ReferenceSystem(Path(folder) / "local.sqlite",
                                       api_key=API_KEY if auth else None).start()
        try:
            async with aiohttp.ClientSession() as http:
                secrets = {"webhook_secret": WEBHOOK_SECRET, **({auth: API_KEY} if auth else {})}
                adapter = cls({**settings, "base_url": system.url}, base=mapping.parent,
                              session=http, secrets=secrets)
                driver = ReferenceDriver(system.url, http, api_key=API_KEY if auth else None,
                                         webhook_secret=WEBHOOK_SECRET if pushes else None)
                try:
                    await run_contract(adapter, driver, **tables)
                except ContractFailure as failure:
                    return failure.failures
        finally:
            await system.close()
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.testing",
                                     description="Run the adapter contract kit against a fresh "
                                                 "reference local case system.")
    parser.add_argument("adapter", help="entry-point name, e.g. rest or soap")
    parser.add_argument("mapping", type=Path, help="a mapping file of the reference system")
    for option, what in (("item", "an alliance item code"),
                         ("mode", "a mode (online, proxy, joint)"),
                         ("applicant_kind", "an applicant kind (person, company; give both)"),
                         ("delivery", "a delivery method (post, online, window; two or more)")):
        table, _example = TABLES[option]
        parser.add_argument("--" + option.replace("_", "-"), dest=option, action="append",
                            default=[], metavar="OURS=LOCAL",
                            help=f"{what} and the local code it must arrive as (repeatable; "
                                 f"replaces the mapping's [codes.{table}], the default)")
    args = parser.parse_args(argv)
    given: dict[str, dict[str, str]] = {}
    for option, (_table, example) in TABLES.items():
        for pair in getattr(args, option):
            ours, sep, local = pair.partition("=")
            if not sep or not ours or not local:
                parser.error(f"--{option.replace('_', '-')} {pair!r}: expected OURS=LOCAL, "
                             f"e.g. {example}")
            given.setdefault(option, {})[ours] = local
    failures = asyncio.run(check(args.adapter, args.mapping.resolve(), given))
    if failures:
        print(f"contract FAILED for {args.adapter} with {args.mapping}:", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    print(f"contract passed: {args.adapter} with {args.mapping}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
