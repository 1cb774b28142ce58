"""User-facing errors.

Every error a user can cause (a bad suite, a missing data file, a bad CLI argument) is raised as an
:class:`RbenchError`. The CLI prints its message on one line and exits with code 2, never a traceback.
"""


class RbenchError(Exception):
    """An error caused by input the user controls. ``str(err)`` is the complete one-line message."""

    exit_code = 2


class SuiteError(RbenchError):
    """A suite file is malformed: the message names the file, the key path, the value and the rule."""


class DataError(RbenchError):
    """A data file is missing, corrupt, or cannot be downloaded."""


class PluginError(RbenchError):
    """A plugin is unknown, failed to load, or clashes with another plugin of the same kind and name."""


class StoreError(RbenchError):
    """The artifact store cannot be used (unwritable, corrupt entry that cannot be regenerated)."""


class Interrupted(RbenchError):
    """The run was stopped (Ctrl-C: exit code 130; SIGTERM, SIGHUP: 128 + the signal's number); everything
    finished so far is stored."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class RunFolderRemoved(RbenchError):
    """The run folder went (deleted by someone else) while the run computed: nothing is written, exit code 1; the
    results are in the store."""

    exit_code = 1


class PluginContractError(Exception):
    """A plugin returned something that breaks its contract (wrong dtype, out of the box, over budget,
    non-finite values): the plugin's fault, not the user's input, so it fails the job that ran it (exit 1).
    ``plugin``: the plugin at fault where it is not the job's own (a defense inside the model an attack job
    attacks), as ``kind 'name'``; the failure's line names it instead of the job's plugin."""

    def __init__(self, message: str, *, plugin: str | None = None):
        super().__init__(message)
        self.plugin = plugin  # kept through pickling: BaseException's reduce carries the instance's __dict__
