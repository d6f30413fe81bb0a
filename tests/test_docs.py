"""The user documentation must keep up with the code.

These tests read the config models and the argument parser, so adding an option or a CLI verb
without documenting it fails the suite, and so does documenting one that no longer exists.
"""

from __future__ import annotations

import argparse
import re
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gateway.cli.main import build_parser
from gateway.config import GatewayConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
CLI_MD = ROOT / "docs" / "cli.md"
README_MD = ROOT / "README.md"

INSTALL_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
TEST_COMMAND = ".venv/bin/pytest"

# How docs/configuration.md names the key of a `dict[key, Section]` option.
MAP_KEY_PLACEHOLDERS = {"peers": "<member-id>", "api.clients": "<client-id>"}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `Model`, `Model | None` or `Optional[Model]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for m in map(_model_in, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def _mapped_model(annotation: Any) -> type[BaseModel] | None:
    """The value model of a `dict[key, Model]` field such as `peers`."""
    if typing.get_origin(annotation) is dict:
        _key, value = typing.get_args(annotation)
        return _model_in(value)
    return None


def config_options(model: type[BaseModel] = GatewayConfig,
                   prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf option as (`section.option`, field info), walking nested sections."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        section = _model_in(field.annotation)
        mapped = _mapped_model(field.annotation)
        if section is not None:
            yield from config_options(section, f"{path}.")
        elif mapped is not None:
            yield from config_options(mapped, f"{path}.{MAP_KEY_PLACEHOLDERS[path]}.")
        else:
            yield path, field


def cli_commands(parser: argparse.ArgumentParser | None = None,
                 prefix: str = "tongban") -> Iterator[str]:
    """Every runnable command line, e.g. `tongban serve` and `tongban member suspend`."""
    parser = parser or build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix
        return
    for action in subparsers:
        for name, child in action.choices.items():
            yield from cli_commands(child, f"{prefix} {name}")


def _table_rows(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and not set(line) <= set("|-: "):
            yield [cell.strip() for cell in line.strip("|").split("|")]


def _documented_option_rows(text: str) -> dict[str, list[str]]:
    """Table rows whose first cell is a backticked dotted option, keyed by that option."""
    rows = {}
    for cells in _table_rows(text):
        match = re.fullmatch(r"`([a-z_]+(?:\.[A-Za-z0-9_<>-]+)+)`", cells[0])
        if match:
            rows[match.group(1)] = cells
    return rows


def _comparable_default(field: Any) -> Any:
    default = field.default
    if isinstance(default, Path):
        return str(default)
    return default


def test_every_config_option_is_documented() -> None:
    text = CONFIGURATION_MD.read_text(encoding="utf-8")
    missing = [name for name, _ in config_options() if f"`{name}`" not in text]
    assert not missing, f"docs/configuration.md does not document: {', '.join(missing)}"


def test_configuration_md_documents_no_removed_option() -> None:
    known = {name for name, _ in config_options()}
    rows = _documented_option_rows(CONFIGURATION_MD.read_text(encoding="utf-8"))
    stale = sorted(set(rows) - known)
    assert not stale, f"docs/configuration.md documents options that do not exist: {stale}"


def test_documented_defaults_match_the_models() -> None:
    """The default column holds `required`, `(unset)` or a TOML literal equal to the default."""
    rows = _documented_option_rows(CONFIGURATION_MD.read_text(encoding="utf-8"))
    wrong = []
    for name, field in config_options():
        cells = rows.get(name)
        assert cells is not None and len(cells) >= 4, f"{name}: no table row with a default"
        cell = cells[2]
        if field.default is PydanticUndefined:
            ok = cell == "required"
        elif field.default is None:
            ok = cell == "(unset)"
        else:
            literal = re.fullmatch(r"`(.*)`", cell)
            ok = literal is not None and (
                tomllib.loads(f"v = {literal.group(1)}")["v"] == _comparable_default(field))
        if not ok:
            wrong.append(f"{name}: documented {cell!r}, model default {field.default!r}")
    assert not wrong, "\n".join(wrong)


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_example_configs_parse(tmp_path: Path) -> None:
    blocks = _toml_blocks(CONFIGURATION_MD.read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "expected a member and an operator example"
    configs = []
    for block in blocks:
        configs.append(parse_config(tomllib.loads(block), base=Path(tmp_path), source="docs"))
    assert any(c.is_operator for c in configs), "no operator example"
    assert any(not c.is_operator for c in configs), "no member example"


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_every_cli_command_is_documented(command: str) -> None:
    assert f"`{command}`" in CLI_MD.read_text(encoding="utf-8")


def test_cli_md_documents_no_removed_command() -> None:
    known = set(cli_commands())
    headings = re.findall(r"^#+ `(tongban[^`]*)`", CLI_MD.read_text(encoding="utf-8"),
                          flags=re.MULTILINE)
    assert headings, "docs/cli.md has no command headings"
    stale = sorted(set(headings) - known)
    assert not stale, f"docs/cli.md documents commands that do not exist: {stale}"


def test_readme_names_the_commands_ci_runs() -> None:
    text = README_MD.read_text(encoding="utf-8")
    for command in (INSTALL_COMMAND, TEST_COMMAND, "tongban demo"):
        assert command in text, f"README.md lacks {command!r}"


def test_ci_script_runs_the_readme_commands() -> None:
    """`.ci/run` must do what the README tells a developer to do, or one of them is wrong."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert INSTALL_COMMAND.split(" && ")[1] in script
    assert TEST_COMMAND in script
