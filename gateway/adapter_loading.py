"""Finding and making the region adapter a gateway's config names.

Adapters are discovered through the `tongban.adapters` entry-point group (so a region's adapter
can ship as its own package) and must subclass `adapters.base.RegionAdapter`; the set found is
passed to the app factory, which keeps it on an AppKey, and tests pass fakes the same way.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import aiohttp

from adapters.base import ConfigProblem, RegionAdapter
from gateway.config import GatewayConfig
from trust.errors import ConfigError

GROUP = "tongban.adapters"


def discover() -> dict[str, type[RegionAdapter]]:
    found: dict[str, type[RegionAdapter]] = {}
    for point in entry_points(group=GROUP):
        loaded = point.load()
        if not (isinstance(loaded, type) and issubclass(loaded, RegionAdapter)):
            raise ConfigError(f"entry point {GROUP}:{point.name} ({point.value}) is not a "
                              "RegionAdapter subclass")
        found[point.name] = loaded
    return found


def check(config: GatewayConfig, classes: dict[str, type[RegionAdapter]]) -> None:
    """Fail at start, naming the option, when the configured adapter cannot work."""
    name = config.adapter.name
    if not name:
        return
    cls = classes.get(name)
    if cls is None:
        installed = ", ".join(sorted(classes)) or "none"
        raise ConfigError(f"adapter.name: no adapter {name!r} is installed (installed: "
                          f"{installed})")
    try:
        cls.check_config(config.adapter.settings, base=config.base_dir)
    except ConfigProblem as exc:
        raise ConfigError(str(exc)) from None
    config.adapter.secret_values()


def build(config: GatewayConfig, classes: dict[str, type[RegionAdapter]],
          session: aiohttp.ClientSession) -> RegionAdapter | None:
    if not config.adapter.name:
        return None
    check(config, classes)
    cls = classes[config.adapter.name]
    return cls(config.adapter.settings, base=config.base_dir, session=session,
               secrets=config.adapter.secret_values())
