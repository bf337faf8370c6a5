"""The names embedders imported from here before history had one home
(:mod:`pipeline_coverage.history`)."""

from pipeline_coverage.history import (
    MAX_DAY_OF_QUARTER,
    MAX_QUARTERS,
    QuarterPoint,
    SamePoint,
    same_point_of_quarter,
)

__all__ = [
    "MAX_DAY_OF_QUARTER",
    "MAX_QUARTERS",
    "QuarterPoint",
    "SamePoint",
    "same_point_of_quarter",
]
