"""An interrupted command ends with one line: psycopg's note that it could not roll
back a query the interrupt stopped midway is not printed after it."""

from __future__ import annotations

import logging

import pytest

from pipeline_coverage.cli import _QuietAfterInterrupt


def test_a_rollback_failing_because_of_an_interrupt_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("psycopg.transaction")
    quiet = _QuietAfterInterrupt()
    logger.addFilter(quiet)
    try:
        with caplog.at_level(logging.WARNING, logger="psycopg.transaction"):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                try:  # what psycopg's Transaction.__exit__ meets when it rolls back
                    raise RuntimeError("sending query failed: another command is in progress")
                except RuntimeError:
                    logger.warning("error ignored in rollback of %s: %s", "tx", "busy")
            try:
                raise RuntimeError("the server went away")
            except RuntimeError:
                logger.warning("error ignored in rollback of %s: %s", "tx", "gone")
    finally:
        logger.removeFilter(quiet)
    logged = [r.getMessage() for r in caplog.records if r.name == "psycopg.transaction"]
    assert logged == ["error ignored in rollback of tx: gone"]
