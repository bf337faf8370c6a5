"""The shipped migrations as commands other than ``db upgrade`` see them (without
importing Alembic: a command that only checks a database's revision starts sooner)."""

from __future__ import annotations

import subprocess
import sys

from alembic.script import ScriptDirectory

from pipeline_coverage.db import migrate


def test_the_head_read_off_the_files_is_alembics() -> None:
    alembic_head = ScriptDirectory.from_config(migrate._config()).get_current_head()
    assert migrate.head_revision() == alembic_head
    assert len(ScriptDirectory.from_config(migrate._config()).get_heads()) == 1


def test_the_cli_starts_without_alembic_or_openpyxl() -> None:
    """Every command pays for what the CLI imports at start: Alembic (with SQLAlchemy)
    and openpyxl (with NumPy) are imported by the commands that use them."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, pipeline_coverage.cli, pipeline_coverage.db.migrate;"
         " print(' '.join(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for heavy in ("alembic", "sqlalchemy", "openpyxl", "numpy"):
        assert heavy not in loaded
