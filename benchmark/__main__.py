"""The ``rbench`` command (its console script) and ``python -m rbench``, for where no console script was installed
(a ``pip --target`` install, as the GPU check script makes on a device machine)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line. It is imported here, not by the console script itself, so that Ctrl-C while its
    modules load (half a second) is the one line it is afterwards, not a traceback of the import. Once the command
    has finished (or been stopped), further Ctrl-C, SIGTERM and SIGHUP are ignored while the interpreter shuts
    down: a second Ctrl-C after the "interrupted" line, or a late SIGTERM to a finished run, printed a traceback
    from a library's exit handler and ended the process by the signal instead of with the command's exit code."""
    try:
        from rbench.cli import main as command_line

        command_line()  # it makes Ctrl-C in a command one line itself; this covers its import and its exit
    except KeyboardInterrupt:
        print("rbench: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        _shutdown_quietly()


def _shutdown_quietly() -> None:
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)


if __name__ == "__main__":
    main()
