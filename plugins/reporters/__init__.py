"""Built-in file reporters that draw what a metric or probe plugin computed (the engine's own reporters, in
``rbench.report``, import no plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rbench import hookimpl

if TYPE_CHECKING:
    from rbench.report.reporters import Reporter


@hookimpl
def rbench_reporters() -> list[Reporter]:
    from rbench.plugins.reporters.reliability import Reliability
    from rbench.plugins.reporters.training_curves import TrainingCurves
    from rbench.plugins.reporters.unit_grids import UnitGrids

    return [Reliability(), TrainingCurves(), UnitGrids()]
