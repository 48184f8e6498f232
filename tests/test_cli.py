import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from uir.cli import main
from uir.images import load_image


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "uir", "--help"], capture_output=True, text=True, check=True)
    assert "degrade" in result.stdout and "info" in result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["degradations"], ["degradations", "--family", "grids"], ["info"]])
def test_listing_commands_import_no_torch(argv):
    """The parser, the catalog and its docs, and ``uir info`` without ``--torch``, load without
    torch (0.1 s against 1.4 s for torch)."""
    script = ("import sys\nfrom uir.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print('torch imported' if 'torch' in sys.modules else 'no torch')")
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "no torch", result.stdout[-500:]
    assert any(text in result.stdout for text in ("usage", "[grids]", "[da-clip]", "sample image"))


def test_degrade_sample(tmp_path, capsys):
    code, out, err = _run(capsys, "degrade", "--sample", "--type", "noisy", "-o", str(tmp_path / "n.png"))
    assert code == 0 and "noisy(sigma=50)" in out
    assert load_image(tmp_path / "n.png").shape == (3, 300, 451)


def test_degrade_takes_the_name_restore_takes(tmp_path, capsys):
    """``--degradation`` (the option ``uir restore`` names its experts by) and the older ``--type``
    are one option: the same draw, byte for byte."""
    for option in ("--degradation", "--type"):
        code, out, _ = _run(capsys, "degrade", "--sample", option, "hazy", "--seed", "2", "-o", str(tmp_path / f"{option}.png"))
        assert code == 0 and "hazy(" in out
    assert (tmp_path / "--degradation.png").read_bytes() == (tmp_path / "--type.png").read_bytes()
    with pytest.raises(SystemExit) as stopped:
        main(["degrade", "--sample", "-o", str(tmp_path / "none.png")])
    assert stopped.value.code == 2 and "required: --degradation/--type" in capsys.readouterr().err


def test_degrade_chain_and_params(tmp_path, capsys):
    code, out, _ = _run(capsys, "degrade", "--sample", "--type", "hazy,jpeg-compressed", "--seed", "3", "-o", str(tmp_path / "c.jpg"))
    assert code == 0 and "hazy(" in out and "jpeg-compressed(quality=10)" in out
    code, out, _ = _run(capsys, "degrade", "--sample", "--type", "gaussian-blur", "--param", "sigma=1.5", "-o", str(tmp_path / "b.png"))
    assert code == 0 and "sigma=1.5" in out


def test_bad_files_are_skipped_and_others_written(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(src / "good.png")
    (src / "broken.png").write_bytes(b"garbage")
    Image.new("RGB", (1, 1)).save(src / "tiny.png")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(src / "deep.png")
    Image.fromarray(np.full((32, 32, 4), 200, np.uint8), "RGBA").save(src / "alpha.png")
    code, out, err = _run(capsys, "degrade", str(src), "--type", "noisy", "-o", str(tmp_path / "out"))
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alpha.png", "deep.png", "good.png"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("uir: skipped") for line in lines)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["degrade", "--sample", "--type", "foggy", "-o", "x.png"], "unknown degradation 'foggy'"),
        (["degrade", "--sample", "--type", "noisy", "--param", "sigma=900", "-o", "x.png"], "outside its range"),
        (["degrade", "--sample", "--type", "noisy", "--param", "sigma", "-o", "x.png"], "KEY=VALUE"),
        (["degrade", "--type", "noisy", "-o", "x.png"], "no input images"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_info_and_listing(capsys):
    code, out, _ = _run(capsys, "info")
    assert code == 0 and "torch" in out and "sample image" in out and "see uir info --torch" in out
    code, out, _ = _run(capsys, "info", "--torch")
    assert code == 0 and "device cpu (torch threads:" in out and "torch hub checkpoints" in out
    code, out, _ = _run(capsys, "degradations", "--family", "da-clip")
    assert code == 0 and out.count("[da-clip]") == 10
    assert ":func:" not in out and "``" not in out and "mild 15, moderate 25, severe 50" in out
    assert "mild 0.5 to 1.167" in out and "mild -30 to 30" in out and "-30-30" not in out


def test_eval_router_prints_accuracy_and_a_confusion_matrix_over_its_vocabulary(tmp_path, capsys, photos_dir):
    import re

    from uir.evaluation import router_accuracy, router_confusion
    from uir.models.router import DegradationRouter
    from uir.testing import tiny_router

    router = tiny_router(vocabulary=["noisy", "hazy", "clean"])
    router.save_pretrained(tmp_path / "router")
    code, out, _ = _run(capsys, "eval-router", str(tmp_path / "router"), "--data", str(photos_dir), "--limit", "2",
                        "--repeats", "1")
    assert code == 0
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"noisy", "hazy", "clean", "overall"} <= set(rows)
    counts = [[int(c) for c in re.findall(r"\| (\d+) ", rows[name] + " ")] for name in ("noisy", "hazy", "clean")]
    assert all(sum(row) == 2 for row in counts), "each type: 2 photos, 1 draw, one prediction each"
    files = sorted(p for p in photos_dir.iterdir() if p.suffix == ".png")[:2]
    loaded = DegradationRouter.from_pretrained(tmp_path / "router")
    confusion = router_confusion(loaded, files, ["noisy", "hazy", "clean"], seed=1, severity=None)
    assert [[confusion[n].get(p, 0) for p in loaded.vocabulary] for n in ("noisy", "hazy", "clean")] == counts
    accuracy = router_accuracy(confusion)
    assert accuracy["overall"] == pytest.approx(sum(counts[i][i] for i in range(3)) / 6)


_REALLOCATING = """
import resource, torch
from uir.boundary import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(16):  # a 64 MiB map taken, written and freed, as each restoration does
        torch.empty(1 << 24).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

returned = faults()
kept = keep_freed_memory()
faults()  # the first blocks after the switch are fresh, until the heap holds one that fits
print(returned, kept, faults())
"""


def test_keeping_freed_memory_ends_the_page_faults_of_maps_taken_again():
    """:func:`uir.boundary.keep_freed_memory`: a 64 MiB map freed and taken again no longer
    comes back from the kernel as fresh pages (a minor fault per 4 KiB page before, none after
    here), checked in a process of its own, since the switch lasts for the process."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    result = subprocess.run([sys.executable, "-c", _REALLOCATING], capture_output=True, text=True, check=True)
    returned, kept, after = result.stdout.split()
    if int(returned) < 16 * 8192:
        pytest.skip(f"the kernel maps this process's blocks in huge pages ({returned} faults): no fresh 4 KiB pages to show")
    assert kept == "True"
    assert int(after) * 16 < int(returned)  # under one block's 16 384 pages, against 16 blocks' before


@pytest.mark.parametrize("argv, owns_process, kept", [
    (["eval", "--data", "no/such/folder"], True, True),
    (["eval", "--data", "no/such/folder"], False, False),
    (["restore", "no/such/photo.png", "-o", "out.png"], True, False),
])
def test_only_uir_eval_run_as_its_own_process_keeps_freed_memory(monkeypatch, tmp_path, argv, owns_process, kept):
    """``uir eval`` from the ``uir`` entry point asks for :func:`~uir.boundary.keep_freed_memory`
    (before any work; here it then fails on its data); called from Python, or for ``uir restore``,
    whose 12 Mpx peak it would raise, the process's malloc is left alone."""
    import uir.cli

    calls = []
    monkeypatch.setattr(uir.cli, "keep_freed_memory", lambda: calls.append(True))
    monkeypatch.chdir(tmp_path)
    assert uir.cli.main(argv, owns_process=owns_process) != 0
    assert calls == ([True] if kept else [])


def test_a_train_script_keeps_freed_memory_only_when_it_is_the_program(monkeypatch):
    """:func:`uir.boundary.run_script`: ``sys.exit(run_script(main))``, the script as the program,
    asks for :func:`~uir.boundary.keep_freed_memory` before ``main`` runs; a caller passing
    ``argv`` (its own process) does not."""
    import uir.boundary

    calls = []
    monkeypatch.setattr(uir.boundary, "keep_freed_memory", lambda: calls.append("kept"))
    monkeypatch.setattr(sys, "argv", ["train_something.py", "--flag"])
    assert uir.boundary.run_script(lambda argv: calls.append(argv)) == 0
    assert calls == ["kept", ["--flag"]]
    calls.clear()
    assert uir.boundary.run_script(lambda argv: calls.append(argv), ["--flag"]) == 0
    assert calls == [["--flag"]]
