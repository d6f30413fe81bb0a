"""`python -m adapters.testing ADAPTER MAPPING [--item OURS=LOCAL ...]`: run the contract kit
against a fresh reference local case system, for an adapter installed in the `tongban.adapters`
group and a mapping of the reference system (a starting point for a region's own mapping, or a
check after editing one).

The reference system has no item catalog of its own (it takes any well-formed local code), so
without `--item` the codes the kit expects to arrive are the mapping's own `[codes.items]`: that
checks the adapter applies the table, not that the table is right. `--item` gives the local
codes from elsewhere (the authority's catalog), which checks the table too.

A region whose local system is not the reference one runs `run_contract` from its own tests with
a `LocalDriver` for that system (docs/adapters.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import aiohttp

from adapters.base import ConfigProblem, RegionAdapter
from adapters.mapping import load
from adapters.testing.contract import ContractFailure, run_contract
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


async def check(name: str, mapping: Path, items: dict[str, str] | None = None) -> list[str]:
    cls = adapter_class(name)
    settings = {"mapping": str(mapping)}
    try:
        cls.check_config(settings, base=mapping.parent)
        region = load(settings, mapping.parent)
    except ConfigProblem as exc:
        return [str(exc)]
    items = items or dict(region.codes.get("items", {}))
    if not items:
        return ["the mapping has no [codes.items] table: give the local item codes with --item"]
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
                    await run_contract(adapter, driver, items=items)
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
    parser.add_argument("--item", action="append", default=[], metavar="OURS=LOCAL",
                        help="an alliance item code and the local code it must arrive as "
                             "(repeatable; default: the mapping's [codes.items])")
    args = parser.parse_args(argv)
    items: dict[str, str] = {}
    for pair in args.item:
        ours, sep, local = pair.partition("=")
        if not sep or not ours or not local:
            parser.error(f"--item {pair!r}: expected OURS=LOCAL, e.g. KSTB-SB-0001=XS-SB-1001")
        items[ours] = local
    failures = asyncio.run(check(args.adapter, args.mapping.resolve(), items))
    if failures:
        print(f"contract FAILED for {args.adapter} with {args.mapping}:", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    print(f"contract passed: {args.adapter} with {args.mapping}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
