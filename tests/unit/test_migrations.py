"""The shipped migrations' head as the commands see it (read off the files)."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from pipeline_coverage.db import migrate


def test_the_head_read_off_the_files_is_alembics() -> None:
    alembic_head = ScriptDirectory.from_config(migrate._config()).get_current_head()
    assert migrate.head_revision() == alembic_head
    assert len(ScriptDirectory.from_config(migrate._config()).get_heads()) == 1
