"""Built-in file reporters that draw what a metric or probe plugin computed (the engine's own reporters, in
``rbench.report``, import no plugin)."""

from rbench import hookimpl


@hookimpl
def rbench_reporters():
    from rbench.plugins.reporters.reliability import Reliability
    from rbench.plugins.reporters.training_curves import TrainingCurves
    from rbench.plugins.reporters.unit_grids import UnitGrids

    return [Reliability(), TrainingCurves(), UnitGrids()]
