"""`python -m adapters.testing ADAPTER MAPPING`: run the contract kit against a fresh reference
local case system, for an adapter installed in the `tongban.adapters` group and a mapping of the
reference system (a starting point for a region's own mapping, or a check after editing one).

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


async def check(name: str, mapping: Path) -> list[str]:
    cls = adapter_class(name)
    settings = {"mapping": str(mapping)}
    try:
        cls.check_config(settings, base=mapping.parent)
        region = load(settings, mapping.parent)
    except ConfigProblem as exc:
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
                    await run_contract(adapter, driver)
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
    args = parser.parse_args(argv)
    failures = asyncio.run(check(args.adapter, args.mapping.resolve()))
    if failures:
        print(f"contract FAILED for {args.adapter} with {args.mapping}:", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    print(f"contract passed: {args.adapter} with {args.mapping}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
