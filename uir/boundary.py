"""The error boundary of the ``uir`` command and the ``train/`` scripts.

Whatever goes wrong ends in one line on stderr and an exit code, never a traceback:

* 0: done; 1: some or all of the work failed (each failure named in one line); 2: bad usage
  (:class:`UsageError`: an option, a file or a model that cannot be used), before any work;
  130: interrupted (Ctrl-C), with nothing half-written (uir writes atomically).
* ``--debug`` or ``UIR_DEBUG=1`` lets an unexpected error raise with its traceback.

Argument types shared by the command and the scripts live here too, so that neither imports
the other, and the one process-wide setting their entry points take (:func:`keep_freed_memory`).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import threading
from typing import Callable

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_ENV = "UIR_DEBUG"


class UsageError(Exception):
    """Bad usage: reported in one line with exit code 2, before any work."""


def debugging(argv: list[str] | None = None) -> bool:
    """Whether tracebacks were asked for: ``--debug`` among the arguments or ``UIR_DEBUG=1``."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def end_distributed() -> None:
    """Close a process group the work opened (``uir`` under ``accelerate launch``, a training
    script), whether it ended well or not. A gloo group left for the interpreter's exit to tear
    down sometimes aborts the process after its work is done ("terminate called without an
    active exception", pytorch/pytorch#190489). Costs nothing where torch.distributed was never
    imported."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def guarded(body: Callable[[], int | None], prog: str, debug: bool = False) -> int:
    """Run ``body`` (a command; its return value is the exit code, ``None`` meaning 0) inside the
    boundary, then close any process group it opened (:func:`end_distributed`); see the module
    docstring."""
    try:
        return _guarded(body, prog, debug)
    finally:
        end_distributed()


class _InterruptWatch:
    """Notes whether a Ctrl-C arrived while it is entered, and raises KeyboardInterrupt for it as
    Python does. A library may turn that KeyboardInterrupt into another error (numpy, cut short
    while loading, fails its next import with ImportError "cannot load module more than once");
    the boundary then still reports the interrupt. Only in the main thread, and only where
    SIGINT has Python's own handler (an ignored SIGINT stays ignored); a watch entered inside
    another (the entry point's boundary around the command's) reads the outer one's note."""

    def __init__(self):
        self._fired, self._previous, self._outer = False, None, None

    @property
    def fired(self) -> bool:
        return self._fired or (self._outer is not None and self._outer.fired)

    def _on_sigint(self, signum, frame):
        self._fired = True
        signal.default_int_handler(signum, frame)

    def __enter__(self) -> "_InterruptWatch":
        if threading.current_thread() is not threading.main_thread():
            return self
        handler = signal.getsignal(signal.SIGINT)
        if isinstance(getattr(handler, "__self__", None), _InterruptWatch):
            self._outer = handler.__self__
        elif handler is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _guarded(body: Callable[[], int | None], prog: str, debug: bool) -> int:
    interrupts = _InterruptWatch()
    try:
        with interrupts:
            code = body()
        return EXIT_OK if code is None else int(code)
    except KeyboardInterrupt:
        return _report_interrupt(prog)
    except SystemExit as stop:  # argparse's usage errors (printed already), or sys.exit("message")
        if isinstance(stop.code, str):
            print(f"{prog}: error: {stop.code}", file=sys.stderr)
            return EXIT_PARTIAL
        return EXIT_OK if stop.code is None else int(stop.code)
    except Exception as error:
        if interrupts.fired:  # the Ctrl-C, turned into another error on its way up
            return _report_interrupt(prog)
        if debug and not isinstance(error, (UsageError, MemoryError, OSError)):
            raise
        return _report_error(error, prog)


def _report_interrupt(prog: str) -> int:
    print(f"{prog}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _report_error(error: Exception, prog: str) -> int:
    """One line on stderr for ``error``; the exit code."""
    if isinstance(error, UsageError):
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, BrokenPipeError):  # output piped into a command that stopped reading, e.g. head
        _silence_stdout()
        return EXIT_OK
    if isinstance(error, MemoryError):
        print(f"{prog}: error: out of memory; use smaller images or --tile-size, or fewer at once", file=sys.stderr)
    elif isinstance(error, OSError) and error.errno == errno.ENOSPC and error.filename is None:  # stdout, full device
        _silence_stdout()
        print(f"{prog}: error: cannot write the output: no space left on the device", file=sys.stderr)
    elif isinstance(error, OSError):
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
    else:
        print(f"{prog}: error: {type(error).__name__}: {_one_line(error)} ({DEBUG_ENV}=1 shows the traceback)",
              file=sys.stderr)
    return EXIT_PARTIAL


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit cannot fail a second time."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


#: the largest freed block a process keeps for reuse (:func:`keep_freed_memory`): 1 GiB
KEPT_BLOCK_BYTES = 1 << 30


def keep_freed_memory(largest: int = KEPT_BLOCK_BYTES) -> bool:
    """Ask glibc's malloc to keep freed blocks of up to ``largest`` bytes for the process's next
    allocations instead of handing them back to the kernel, which zeroes every fresh page on
    first touch. Returns whether malloc took it (False off glibc: nothing changes).

    Every restoration allocates and frees image-sized maps; returned to the kernel and taken
    again, they page-faulted about 80 000 times a 512x512 call (0.15 s of kernel time), and
    ``uir eval`` spent a third of its time in the kernel (docs/performance.md). Kept, the process
    stays near its peak resident memory, and fragments: the 12 Mpx ``uir restore`` peaked at
    2.8 GB instead of 2.3, over the 2.5 GB target, so of the ``uir`` commands only ``uir eval``
    asks for it (:func:`uir.cli.main`); a ``train/`` script run as a program does too
    (:func:`run_script`: 20 drop-detector steps on CPU took 18-19 s instead of 22-24). Only a
    process's own entry point calls it: it lasts for the process."""
    import ctypes

    try:  # the process's own symbols: glibc's where it runs on glibc
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD of malloc.h
    return bool(mallopt(mmap_threshold, largest)) and bool(mallopt(trim_threshold, largest))


def run_script(main: Callable[[list[str] | None], object], argv: list[str] | None = None,
               prog: str | None = None) -> int:
    """A ``train/`` script's ``main(argv)`` inside the boundary: ``sys.exit(run_script(main))``.
    Run so, without ``argv``, the script is the program and owns its process, which then keeps
    its freed memory for reuse (:func:`keep_freed_memory`); with ``argv`` (a caller's process)
    nothing process-wide changes."""
    if argv is None:
        keep_freed_memory()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debugging(argv)
    argv = [a for a in argv if a != "--debug"]
    name = prog or os.path.basename(sys.argv[0] or "train")
    return guarded(lambda: main(argv) and None, name, debug)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (exit 2), like every other error;
    ``--help`` still prints the whole usage. Its subparsers are of this class too."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- argument types (argparse ``type=``): a one-line usage error for a bad value -------------
def whole_number(value: str, minimum: int, expected: str = "a whole number") -> int:
    """A whole number >= ``minimum``."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
    return number


def positive_int(value: str) -> int:
    """A whole number >= 1 (counts, sizes, steps)."""
    return whole_number(value, 1)


def positive_float(value: str) -> float:
    """A finite number > 0 (learning rates, scales)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {value}")
    return number


def checked_number(check: Callable[[float], float]) -> Callable[[str], float]:
    """An argparse type from ``check``, a function that returns the number it accepts and raises
    a one-line ``ValueError`` otherwise: the option is refused with that line before any work,
    by the same check that guards the value where it is used."""
    def parse(value: str) -> float:
        try:
            return check(float(value))
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def pixel_share(option: str) -> Callable[[float], float]:
    """A check of ``option``, a share of an image's pixels: it returns a number in (0, 1] and
    raises a one-line ``ValueError`` naming ``option`` otherwise (a router's ``drop_share`` and
    ``shadow_share``; with :func:`checked_number`, their training scripts' options)."""
    def check(share: float) -> float:
        if not 0 < share <= 1:
            raise ValueError(f"{option} must be a share of the pixels in (0, 1], got {share}")
        return share

    return check


__all__ = ["DEBUG_ENV", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "KEPT_BLOCK_BYTES", "OneLineParser",
           "UsageError", "checked_number", "debugging", "guarded", "keep_freed_memory", "pixel_share", "positive_float",
           "positive_int", "run_script", "whole_number"]
