"""The ``uir`` command's entry point: ``python -m uir``, ``accelerate launch -m uir`` and the
``uir`` console script all start here.

It imports nothing but the error boundary before entering it, so that a Ctrl-C while the
command's own modules load (``uir.cli``, then torch inside a command) is already the boundary's
one line and exit 130. Only the interpreter's start-up and ``import uir`` (the lazy package
root) come before it.
"""

import sys

from uir.boundary import debugging, guarded


def main() -> int:
    """Load :mod:`uir.cli` and run its :func:`~uir.cli.main` inside the boundary."""

    def run() -> int:
        from uir.cli import main as run_command

        return run_command(owns_process=True)

    return guarded(run, "uir", debugging())


if __name__ == "__main__":
    sys.exit(main())
