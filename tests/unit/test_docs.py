"""Every command and option of the CLI is documented (a missing line fails here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from pipeline_coverage.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands(command, f"{path} ")
        else:
            yield path, command


COMMANDS = list(commands(cli))


def test_there_are_commands_to_check() -> None:
    assert {
        "db upgrade",
        "db status",
        "db sql",
        "load",
        "run",
        "show",
        "runs",
        "prune",
        "demo",
    } <= {path for path, _ in COMMANDS}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[path for path, _ in COMMANDS])
def test_command_is_in_the_readme(path: str, command: click.Command) -> None:
    assert f"`{path}" in README, f"README.md does not document `{path}`"
    assert command.help, f"`{path}` has no --help text"
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            flag = max(parameter.opts, key=len)
            assert flag in README, f"README.md does not document {path} {flag}"


def test_global_options_and_settings_are_in_the_readme() -> None:
    for text in (
        "--database-url",
        "DATABASE_URL",
        "PIPELINE_COVERAGE_DATA_DIR",
        "PIPELINE_COVERAGE_DEBUG",
        "TEST_DATABASE_URL",
    ):
        assert text in README


def test_every_setting_of_the_server_is_in_the_api_docs() -> None:
    config = (ROOT / "src" / "pipeline_coverage" / "config.py").read_text(encoding="utf-8")
    api_docs = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    names = set(re.findall(r'"(PIPELINE_COVERAGE_[A-Z_]+)"', config))
    assert "PIPELINE_COVERAGE_MAX_BODY_BYTES" in names
    for name in sorted(names - {"PIPELINE_COVERAGE_DATA_DIR"}):
        assert f"`{name}`" in api_docs, f"docs/api.md does not document {name}"
