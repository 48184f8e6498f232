"""Ctrl-C: one line, exit 130, nothing half-written, whether it comes during start-up or while
restoring; and a full standard output is one line, not a crash."""

import os
import signal
import subprocess
import sys
import time

import pytest

from uir.images import load_image, save_image


@pytest.fixture()
def photos(tmp_path, sample):
    for i in range(6):
        save_image(sample[:, : 96 + 8 * i, :128], tmp_path / "in" / f"p{i}.png")
    return tmp_path / "in"


def _wait_until_loading_torch(process, timeout=60.0):
    """Start-up's long part: the child has mapped torch's shared library (read from /proc, so the
    signal lands there whatever the machine's load; a fixed delay could land in the interpreter's
    own start-up, before any uir code runs)."""
    maps, deadline = f"/proc/{process.pid}/maps", time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(maps) as mapped:
            if "libtorch" in mapped.read():
                return
        time.sleep(0.002)
    raise AssertionError("the child did not start loading torch")


def _interrupt(command, when, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Ctrl-C's default action in the child, even when this suite runs where SIGINT is ignored (a
    # background job of a shell without job control): an ignored SIGINT is inherited across exec
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if when == "start-up":
        _wait_until_loading_torch(process)
    else:
        assert " -> " in process.stdout.readline()  # the first image is written
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.parametrize("when", [pytest.param("start-up", marks=pytest.mark.skipif(
    not os.path.exists("/proc/self/maps"), reason="reads /proc")), "restoring"])
def test_ctrl_c_is_one_line_exit_130_and_leaves_no_partial_file(photos, tmp_path, when):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "uir", "restore", str(photos), "-o", str(out), "--batch-size", "1"]
    done = _interrupt(command, when, tmp_path)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1] == "uir: interrupted"
    written = sorted(out.iterdir()) if out.exists() else []
    assert not [p for p in written if p.name.endswith(".uir-partial")], written
    for path in written:  # whatever was written is whole
        assert load_image(path).shape[0] == 3
    if when == "restoring":
        assert 1 <= len(written) < 6


def test_ctrl_c_while_the_command_modules_load_is_one_line_exit_130(monkeypatch, capsys):
    """The entry point (``python -m uir``, the console script) enters the boundary before it
    imports :mod:`uir.cli`, the window a fixed-delay Ctrl-C used to land in."""
    import uir.__main__

    class InterruptedImport:
        def find_spec(self, name, path=None, target=None):
            if name == "uir.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "uir.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", ["uir", "degradations"])
    try:
        code = uir.__main__.main()
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped the boundary")
    assert code == 130
    assert capsys.readouterr().err == "uir: interrupted\n"


@pytest.mark.parametrize("nested", [False, True])
def test_a_ctrl_c_that_a_library_turns_into_another_error_is_still_the_interrupt(capsys, nested):
    """numpy, cut short by a Ctrl-C while it loads, fails the next import with ImportError
    ("cannot load module more than once per process"): the boundary reports the interrupt, also
    from the command's boundary inside the entry point's; an error with no Ctrl-C stays an error."""
    from uir.boundary import guarded

    def library_load():
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise ImportError("cannot load module more than once per process") from None

    def failing():
        raise ImportError("no such module")

    # Python's own Ctrl-C handler, even where this suite runs with SIGINT ignored (a background
    # job of a shell without job control), since the boundary watches only that handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for body, code, line in [(library_load, 130, "uir: interrupted"),
                                 (failing, 1, "uir: error: ImportError: no such module (UIR_DEBUG=1 shows the traceback)")]:
            run = (lambda: guarded(body, "uir")) if nested else body
            assert guarded(run, "uir") == code
            assert capsys.readouterr().err.strip() == line
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_one_line_not_a_crash():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "uir", "degradations"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["uir: error: cannot write the output: no space left on the device"]
