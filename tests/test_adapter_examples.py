"""Every adapter that ships has an example `[adapter]` table (adapters/examples/NAME-gateway.toml)
that the gateway's own config loader accepts, pasted into a minimal member config.

The adapters are taken from the `tongban.adapters` entry-point group, not from a list kept here,
so registering a new adapter without an example fails this file; and an example is checked the
way `tongban serve` checks it (load_config, then the adapter's own check and the secrets), so a
stale option or a mapping path that does not resolve fails too.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from adapters.mapped import MappedAdapter
from adapters.mapping import load
from gateway import adapter_loading
from gateway.config import check_serving, load_config

EXAMPLES = Path(__file__).parent.parent / "adapters" / "examples"
REGISTERED = sorted(point.name for point in entry_points(group=adapter_loading.GROUP))
# Only what every member config needs besides the adapter: who it is, where its registry is.
MINIMAL = ('[member]\nid = "CN-430300"\n'
           '[registry]\nurl = "https://operator.example/registry/v1"\n\n')
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def example(name: str) -> Path:
    return EXAMPLES / f"{name}-gateway.toml"


def test_every_registered_adapter_has_an_example() -> None:
    assert {"rest", "soap"} <= set(REGISTERED)  # the group is really read
    missing = [name for name in REGISTERED if not example(name).is_file()]
    assert not missing, f"adapters without adapters/examples/<name>-gateway.toml: {missing}"
    strays = {p.name.removesuffix("-gateway.toml") for p in EXAMPLES.glob("*-gateway.toml")}
    assert strays <= set(REGISTERED), f"examples for adapters not registered: {strays}"


@pytest.mark.parametrize("name", REGISTERED)
def test_the_example_loads_with_the_gateway_config_loader(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = example(name).read_text(encoding="utf-8")
    # Only the [adapter] table, so it can be pasted into any member's tongban.toml.
    assert set(tomllib.loads(text)) == {"adapter"}
    # The mapping files the examples name sit next to them; a config folder holds both.
    for mapping in EXAMPLES.glob("*.toml"):
        shutil.copy(mapping, tmp_path / mapping.name)
    path = tmp_path / "tongban.toml"
    path.write_text(MINIMAL + text, encoding="utf-8")

    config = load_config(path)
    check_serving(config)
    assert config.adapter.name == name
    for key, env in config.adapter.secrets.items():
        assert ENV_NAME.fullmatch(env), f"adapter.secrets.{key} = {env!r}: not a variable name"
        monkeypatch.setenv(env, f"value-of-{env}")
    classes = adapter_loading.discover()
    adapter_loading.check(config, classes)  # the adapter's check_config and the secrets

    cls = classes[name]
    if issubclass(cls, MappedAdapter):  # the shipped adapters: the secrets the mapping uses
        region = load(config.adapter.settings, config.base_dir)
        wanted = {region.service.auth_secret,
                  region.webhook.secret if region.webhook is not None else None} - {None}
        assert wanted == set(config.adapter.secrets), (wanted, config.adapter.secrets)
