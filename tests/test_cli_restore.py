"""`uir restore`, `uir eval`, `uir bench` and `uir demo` on a tiny saved RestorerPipeline."""

import csv
import json

import pytest
import torch

from uir.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from uir.commands.restore import describe_restoration
from uir.evaluation import degraded_pairs
from uir.images import load_image, save_image
from uir.testing import tiny_restorer_pipeline

from .conftest import launch_two_cpu_processes


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_restorer_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def unsure_model_dir(tmp_path_factory):
    """A model whose router never reaches its confidence threshold."""
    folder = tmp_path_factory.mktemp("unsure")
    pipe = tiny_restorer_pipeline()
    pipe.router.register_to_config(min_confidence=0.999)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture()
def inputs(tmp_path, sample):
    folder = tmp_path / "in"
    save_image(sample[:, :48, :64], folder / "a.png")
    save_image(sample[:, 20:68, 10:74], folder / "b.png")
    save_image(sample[:, :37, :45], folder / "odd.png")
    (folder / "broken.png").write_bytes(b"not an image at all")
    return folder


def test_restore_folder_skips_the_bad_file_and_writes_the_rest(model_dir, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["restore", str(inputs), "-o", str(out), "--model", str(model_dir), "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert "skipped" in captured.err and "broken.png" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "odd.png"], "partial or temporary files left"
    assert load_image(out / "odd.png").shape == (3, 37, 45)
    assert captured.out.count("detected") == 3 and "confidence" in captured.out


def test_restore_single_file_with_manual_experts(model_dir, inputs, tmp_path, capsys):
    target = tmp_path / "one.png"
    assert main(["restore", str(inputs / "a.png"), "-o", str(target), "--model", str(model_dir),
                 "--weights", "noisy=0.7,hazy=0.3"]) == EXIT_OK
    assert target.is_file() and "noisy 0.70, hazy 0.30" in capsys.readouterr().out
    assert main(["restore", str(inputs / "a.png"), "-o", str(target), "--model", str(model_dir),
                 "--degradation", "noisy", "--overwrite"]) == EXIT_OK


def test_route_again_names_the_classes_after_which_an_image_is_routed_again(model_dir, inputs, tmp_path, capsys):
    """``--route-again`` sets the pipeline's ``routes_again_after``: with every class of the tiny
    model, its routed image is restored a second time and the line says so; ``none`` restores
    once, as the model's own setting (a JPEG only) does for a photo without a JPEG trace."""
    outputs = {}
    for spec in (None, "none", "noisy,hazy,rainy"):
        target = tmp_path / f"{spec}.png"
        extra = [] if spec is None else ["--route-again", spec]
        assert main(["restore", str(inputs / "a.png"), "-o", str(target), "--model", str(model_dir), *extra]) == EXIT_OK
        outputs[spec] = (target.read_bytes(), capsys.readouterr().out)
    assert outputs[None][0] == outputs["none"][0] and "; then " not in outputs[None][1] + outputs["none"][1]
    again = outputs["noisy,hazy,rainy"]
    assert again[0] != outputs[None][0] and "; then detected " in again[1]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("output", ["a.png", "."])
def test_restore_refuses_to_overwrite_an_input(model_dir, inputs, capsys, output):
    (inputs / "broken.png").unlink()
    before = _snapshot(inputs)
    source = str(inputs / "a.png") if output == "a.png" else str(inputs)
    code = main(["restore", source, "-o", str(inputs / output), "--model", str(model_dir)])
    assert code == EXIT_USAGE and "is one of the inputs" in capsys.readouterr().err
    assert _snapshot(inputs) == before
    assert main(["restore", str(inputs / "a.png"), "-o", str(inputs / "a.png"), "--model", str(model_dir),
                 "--overwrite"]) == EXIT_OK
    assert (inputs / "a.png").read_bytes() != before["a.png"]


@pytest.mark.parametrize("spelling", ["relative", "absolute", "dotdot", "symlink"])
@pytest.mark.parametrize("skip_existing", [False, True])
def test_one_file_named_two_ways_is_refused_as_an_input(model_dir, inputs, capsys, monkeypatch, spelling,
                                                         skip_existing):
    (inputs / "broken.png").unlink()
    before = _snapshot(inputs)
    monkeypatch.chdir(inputs)
    (inputs / "sub").mkdir()
    (inputs / "link.png").symlink_to(inputs / "a.png")
    source = {"relative": str(inputs / "a.png"), "absolute": "a.png", "dotdot": "sub/../a.png",
              "symlink": "a.png"}[spelling]
    output = {"relative": "a.png", "absolute": str(inputs / "a.png"), "dotdot": "a.png",
              "symlink": "link.png"}[spelling]
    code = main(["restore", source, "-o", output, "--model", str(model_dir)] + ["--skip-existing"] * skip_existing)
    assert code == EXIT_USAGE and "is one of the inputs" in capsys.readouterr().err
    assert (inputs / "a.png").read_bytes() == before["a.png"]


def test_skip_existing_still_writes_an_output_whose_temporary_was_left_behind(model_dir, inputs, tmp_path):
    from uir.files import PARTIAL_SUFFIX

    out = tmp_path / "out"
    out.mkdir()
    leftover = out / f".a.png.x1{PARTIAL_SUFFIX}"  # a killed run's half-written a.png
    leftover.write_bytes(b"half")
    assert main(["restore", str(inputs / "a.png"), "-o", str(out), "--model", str(model_dir),
                 "--skip-existing"]) == EXIT_OK
    assert load_image(out / "a.png").shape == (3, 48, 64)


def test_restore_refuses_existing_outputs_and_colliding_stems(model_dir, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    save_image(torch.zeros(3, 8, 8), out / "a.png")
    kept = (out / "a.png").read_bytes()
    assert main(["restore", str(inputs / "a.png"), str(inputs / "b.png"), "-o", str(out), "--model",
                 str(model_dir)]) == EXIT_USAGE
    assert "exist already" in capsys.readouterr().err and (out / "a.png").read_bytes() == kept
    assert not (out / "b.png").exists(), "refused before any work"
    other = tmp_path / "other"
    save_image(torch.rand(3, 16, 16), other / "a.jpg")
    code = main(["restore", str(inputs / "a.png"), str(other / "a.jpg"), "-o", str(tmp_path / "both"), "--model",
                 str(model_dir)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "several inputs" in err and "a.jpg" in err and not (tmp_path / "both").exists()


def test_output_that_appears_while_restoring_is_kept(tmp_path):
    """Two processes writing one folder: the exclusive save keeps the first writer's file."""
    from uir.images import save_image as save

    save(torch.zeros(3, 8, 8), tmp_path / "x.png")
    first = (tmp_path / "x.png").read_bytes()
    with pytest.raises(FileExistsError):
        save(torch.ones(3, 8, 8), tmp_path / "x.png", overwrite=False)
    assert (tmp_path / "x.png").read_bytes() == first and [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_stale_temporaries_of_a_killed_run_are_removed(model_dir, inputs, tmp_path):
    """A temporary whose process is gone is removed by the next run, however young (a kill -9
    mid-write used to leave it for an hour); a live process's, or one whose owner cannot be
    told, is kept until it is old."""
    import os
    import subprocess
    import sys
    import time

    from uir.files import PARTIAL_SUFFIX, STALE_AFTER_S, _owner_tag

    host = _owner_tag().rpartition("-")[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "out"
    out.mkdir()
    killed = out / f".a.png.{host}-{dead}.k1{PARTIAL_SUFFIX}"
    running = out / f".b.png.{host}-{os.getpid()}.r1{PARTIAL_SUFFIX}"
    other_host = out / f".c.png.elsewhere-{dead}.h1{PARTIAL_SUFFIX}"
    stale, fresh, foreign = (out / f".d.png.x1{PARTIAL_SUFFIX}", out / f".e.png.x2{PARTIAL_SUFFIX}",
                             out / ".notes.tmp")
    for path in (killed, running, other_host, stale, fresh, foreign):
        path.write_bytes(b"partial")
    old = time.time() - STALE_AFTER_S - 10
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    assert main(["restore", str(inputs / "a.png"), "-o", str(out), "--model", str(model_dir)]) == EXIT_OK
    assert not killed.exists() and not stale.exists()
    assert running.exists() and other_host.exists() and fresh.exists() and foreign.exists()


def test_restore_without_a_router_names_the_flags(inputs, tmp_path, capsys):
    folder = tmp_path / "norouter"
    tiny_restorer_pipeline(router=False).save_pretrained(folder)
    code = main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "x.png"), "--model", str(folder)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "--degradation" in err and "weights=" not in err


@pytest.mark.parametrize("extra, message", [
    (["--degradation", "foggy"], "no expert for foggy"),
    (["--degradation", "noisy", "--weights", "noisy=1"], "not both"),
    (["--weights", "noisy:1"], "NAME=NUMBER"),
    (["--weights", "noisy=0.5,hazy"], "NAME=NUMBER"),
    (["--weights", "noisy=1e30"], "must lie in [0, 1], got 1e+30"),
    (["--weights", "noisy=-1"], "must lie in [0, 1], got -1"),
    (["--weights", "noisy=nan"], "must lie in [0, 1], got nan"),
    (["--weights", "noisy=0.5,noisy=0.2"], "--weights names noisy more than once"),
    (["--degradation", "noisy,noisy"], "--degradation names noisy more than once"),
    (["--route-again", "foggy"], "--route-again: no expert for foggy"),
    (["--route-again", "noisy,noisy"], "--route-again names noisy more than once"),
    (["--route-again", "noisy", "--degradation", "hazy"], "--route-again needs the router choosing"),
])
def test_restore_usage_errors(model_dir, inputs, tmp_path, capsys, extra, message):
    """Each a single line with exit 2 before any work (``--weights noisy=-1`` used to run and
    print "experts: none"; ``--degradation noisy,noisy`` gave noisy a weight of 0.5)."""
    code = main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "x.png"), "--model", str(model_dir), *extra])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_restore_missing_model_is_a_usage_error(inputs, tmp_path, capsys):
    code = main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "x.png"), "--model", str(tmp_path / "nope")])
    assert code == EXIT_USAGE and "cannot load model" in capsys.readouterr().err


def test_low_confidence_warns(unsure_model_dir, inputs, tmp_path, capsys):
    assert main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "x.png"), "--model",
                 str(unsure_model_dir)]) == EXIT_OK
    assert "low confidence" in capsys.readouterr().err


def test_eval_writes_tables_and_grid(model_dir, inputs, tmp_path, capsys):
    (inputs / "broken.png").unlink()
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model_dir), "--data", str(inputs), "--degradations", "noisy,hazy",
                 "-o", str(out)]) == EXIT_OK
    rows = json.loads((out / "scores.json").read_text())
    assert [r["degradation"] for r in rows] == ["noisy", "hazy", "mean"]
    assert (out / "scores.csv").read_text().startswith("degradation,psnr_in,psnr_out,gain")
    assert (out / "grid.png").is_file() and "| noisy |" in capsys.readouterr().out
    with open(out / "pairs.csv", newline="") as stream:  # one row per image, the means' parts
        pairs = list(csv.DictReader(stream))
    photos = {row["photo"] for row in pairs}
    assert len(pairs) == 2 * len(photos) and "broken.png" not in photos
    for row in rows[:2]:
        mine = [row_ for row_ in pairs if row_["degradation"] == row["degradation"]]
        assert sum(float(r["psnr_out"]) for r in mine) / len(mine) == pytest.approx(row["psnr_out"], abs=1e-6)
        assert sum(r["worse"] == "True" for r in mine) / len(mine) == pytest.approx(row["worse"])
    from uir.pipelines.loading import load_pipeline

    first = pairs[0]  # a.png, noisy: the router's call as the pipeline makes it
    lq = next(degraded_pairs([inputs / first["photo"]], ["noisy"])).lq
    said = load_pipeline(str(model_dir), runtime=True)(lq, output_type="pt")
    assert (first["call"], float(first["confidence"])) == pytest.approx((said.degradations[0], float(said.confidence[0])), abs=1e-4)
    assert first["restoration"] == describe_restoration(said, 0)
    oracle = main(["eval", "--model", str(model_dir), "--data", str(inputs), "--degradations", "snowy",
                   "--oracle", "-o", str(out)])
    assert oracle == EXIT_USAGE


def test_eval_on_paired_folders(model_dir, tmp_path, sample):
    for i in range(2):
        crop = sample[:, i * 8 : i * 8 + 32, :32]
        save_image(crop, tmp_path / "pairs" / "gt" / f"{i}.png")
        save_image((crop + 0.1 * torch.randn_like(crop)).clamp(0, 1), tmp_path / "pairs" / "lq" / f"{i}.png")
    assert main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "pairs"), "-o",
                 str(tmp_path / "e")]) == EXIT_OK
    rows = json.loads((tmp_path / "e" / "scores.json").read_text())
    assert rows[0]["degradation"] == "paired" and rows[0]["psnr_in"] > 10
    assert main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "pairs"), "--severity", "severe",
                 "-o", str(tmp_path / "e")]) == EXIT_USAGE  # pairs come degraded


def test_eval_degrades_at_the_severity_asked(model_dir, inputs, tmp_path):
    (inputs / "broken.png").unlink()
    psnr_in = {}
    for level in ("mild", "severe"):
        assert main(["eval", "--model", str(model_dir), "--data", str(inputs), "--degradations", "noisy",
                     "--severity", level, "--grid-rows", "0", "-o", str(tmp_path / level)]) == EXIT_OK
        psnr_in[level] = json.loads((tmp_path / level / "scores.json").read_text())[0]["psnr_in"]
    assert psnr_in["severe"] < psnr_in["mild"] - 3


def test_eval_routes_again_as_restore_does(model_dir, inputs, tmp_path, capsys):
    """``uir eval --route-again`` scores what ``uir restore --route-again`` writes: each pair's
    output is the pipeline's with that setting, and the per-image line says "then"; with
    ``--oracle`` (no routing) it is a one-line usage error before any folder is made."""
    (inputs / "broken.png").unlink()
    pairs = {}
    for spec in ("none", "noisy,hazy,rainy"):
        assert main(["eval", "--model", str(model_dir), "--data", str(inputs), "--degradations", "noisy",
                     "--grid-rows", "0", "--route-again", spec, "-o", str(tmp_path / spec)]) == EXIT_OK
        with open(tmp_path / spec / "pairs.csv") as table:
            pairs[spec] = list(csv.DictReader(table))
    capsys.readouterr()
    assert all("; then " not in row["restoration"] for row in pairs["none"])
    assert all("; then detected " in row["restoration"] for row in pairs["noisy,hazy,rainy"])
    assert [row["psnr_out"] for row in pairs["none"]] != [row["psnr_out"] for row in pairs["noisy,hazy,rainy"]]
    code = main(["eval", "--model", str(model_dir), "--data", str(inputs), "--oracle", "--route-again", "noisy",
                 "-o", str(tmp_path / "oracle")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "not with --oracle" in err and err.count("\n") == 1
    assert not (tmp_path / "oracle").exists()


def test_bench_and_demo(model_dir, tmp_path, capsys):
    assert main(["bench", "--model", str(model_dir), "--size", "64", "--repeats", "1"]) == EXIT_OK
    table = capsys.readouterr().out
    for stage in ("load pipeline", "router only", "restore, K=1", "restore, K=2 (router)", "restore, K=3 (all)"):
        assert stage in table
    assert "nan" not in table
    assert main(["demo", "--model", str(model_dir), "-o", str(tmp_path / "demo")]) == EXIT_OK
    text = (tmp_path / "demo" / "demo.md").read_text()
    assert text.count("\n") == 12 and (tmp_path / "demo" / "demo.png").is_file()


def test_sixteen_bit_png_keeps_its_depth_and_animation_is_announced(model_dir, tmp_path, capsys):
    import numpy as np
    import png
    from PIL import Image

    from uir.images import image_bit_depth

    levels = np.arange(16, dtype=np.uint16) * 3  # 16 levels that 8 bits would merge into one
    ramp = np.tile(levels, (16, 1))
    png.from_array(np.stack([ramp] * 3, -1).reshape(16, -1), "RGB;16").save(str(tmp_path / "ramp.png"))
    assert len(torch.unique(load_image(tmp_path / "ramp.png"))) == 16
    assert main(["restore", str(tmp_path / "ramp.png"), "-o", str(tmp_path / "out.png"), "--model", str(model_dir),
                 "--degradation", "noisy"]) == EXIT_OK
    assert image_bit_depth(tmp_path / "out.png") == 16
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue", "green")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert main(["restore", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "anim.png"), "--model",
                 str(model_dir)]) == EXIT_OK
    assert "3 frames; only the first" in capsys.readouterr().err


def test_a_grey_photo_comes_back_grey_and_an_alpha_channel_is_kept(model_dir, sample, tmp_path):
    """The restored file has the input's layout: a grey photo is written as the mean of the
    restored channels, and a photo with an alpha channel keeps it, with the colour whose
    composite over white is what the pipeline restored from the input's composite (as near as a
    colour can: over white at opacity a, composites lie in [1 - a, 1])."""
    import numpy as np
    from PIL import Image

    from uir.images import read_image
    from uir.pipelines import RestorerPipeline

    pixels = (sample[:, :48, :64].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    alpha = np.tile(np.linspace(40, 255, 64).round().astype(np.uint8), (48, 1))
    Image.fromarray(pixels[..., 1]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([pixels, alpha]), "RGBA").save(tmp_path / "rgba.png")
    pipe = RestorerPipeline.from_pretrained(model_dir)
    for name in ("grey.png", "rgba.png"):
        assert main(["restore", str(tmp_path / name), "-o", str(tmp_path / f"out-{name}"), "--model", str(model_dir),
                     "--degradation", "noisy"]) == EXIT_OK
        image, layout = read_image(tmp_path / name)
        expected = pipe(image, weights={"noisy": 1.0}, output_type="pt").images[0]
        restored, kept = read_image(tmp_path / f"out-{name}")
        assert (kept.grey, kept.alpha is not None) == (layout.grey, layout.alpha is not None)
        if layout.grey:
            expected = expected.mean(0, keepdim=True).expand(3, -1, -1)
        else:
            assert torch.equal(kept.alpha, layout.alpha)
            expected = torch.maximum(expected, 1 - layout.alpha)  # over white, no colour composites darker
        # within rounding to 8 bits, amplified by 1/alpha where the colour was un-composited
        assert (restored - expected).abs().max() <= 1.5 / 255
        assert not torch.allclose(restored, image, atol=2 / 255), "the file was not restored"


def test_readme_main_job_runs_and_runs_again(tmp_path, monkeypatch):
    """The README's first command, after its installs: twice in a row, as a user would."""
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "uir degrade --sample" in line)
    commands = [shlex.split(part)[1:] for part in line.split(" && ") if part.startswith("uir ")]
    assert [c[0] for c in commands] == ["degrade", "restore"]
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        for command in commands:
            assert main(command) == EXIT_OK, command
    assert (tmp_path / "outputs" / "restored.png").is_file()


def _launch_two(argv, tmp_path):
    return launch_two_cpu_processes(["-m", "uir", *argv], cwd=tmp_path)


def test_two_processes_restore_every_input_once_and_resume(model_dir, tmp_path, sample, capsys):
    """``accelerate launch -m uir restore``: two CPU processes split the inputs, the outputs
    equal one process's, one summary is printed, and --skip-existing resumes a stopped run."""
    folder = tmp_path / "in"
    for i in range(6):
        save_image(sample[:, i * 8 : i * 8 + 40, :48], folder / f"{i}.png")
    assert main(["restore", str(folder), "-o", str(tmp_path / "one"), "--model", str(model_dir)]) == EXIT_OK
    done = _launch_two(["restore", str(folder), "-o", str(tmp_path / "two"), "--model", str(model_dir)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("->") == 6 and done.stderr.count("uir: restored 6, skipped 0 existing") == 1, \
        (done.stdout[-1500:], done.stderr[-1500:])
    assert "on 2 processes" in done.stderr
    for i in range(6):
        assert (tmp_path / "two" / f"{i}.png").read_bytes() == (tmp_path / "one" / f"{i}.png").read_bytes()
    # a stopped run: two outputs missing; the resumed run restores exactly those
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two").iterdir()}

    for name in ("1.png", "4.png"):
        (tmp_path / "two" / name).unlink()
    again = _launch_two(["restore", str(folder), "-o", str(tmp_path / "two"), "--model", str(model_dir),
                         "--skip-existing"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("->") == 2 and "uir: restored 2, skipped 4 existing" in again.stderr
    for name, mtime in kept.items():
        if name not in ("1.png", "4.png"):
            assert (tmp_path / "two" / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    assert (tmp_path / "two" / "4.png").read_bytes() == (tmp_path / "one" / "4.png").read_bytes()


def test_two_processes_evaluate_like_one(model_dir, tmp_path, sample):
    """``accelerate launch -m uir eval``: each process scores a share (the same degradations
    as one process draws) and the main process writes the merged table."""
    import json

    photos = tmp_path / "photos"
    for i in range(5):
        crop = sample[:, i * 8 : i * 8 + 40, :48]
        save_image(crop, photos / f"{i}.png")
        save_image(crop, tmp_path / "pairs" / "gt" / f"{i}.png")
        save_image((crop + 0.1 * torch.randn(crop.shape, generator=torch.Generator().manual_seed(i))).clamp(0, 1),
                   tmp_path / "pairs" / "lq" / f"{i}.png")
    for data in ("photos", "pairs"):
        common = ["eval", "--model", str(model_dir), "--data", str(tmp_path / data), "--degradations", "noisy,hazy"]
        assert main([*common, "-o", str(tmp_path / f"{data}-one")]) == EXIT_OK
        done = _launch_two([*common, "-o", str(tmp_path / f"{data}-two")], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        one, two = (json.loads((tmp_path / f"{data}-{n}" / "scores.json").read_text()) for n in ("one", "two"))
        assert [r["degradation"] for r in two] == [r["degradation"] for r in one]
        for a, b in zip(one, two):
            for key in ("psnr_in", "psnr_out", "ssim_out"):
                assert b[key] == pytest.approx(a[key], abs=1e-4), (data, a["degradation"], key)


@pytest.mark.parametrize("size", ["0", "-3", "four"])
def test_bad_batch_size_is_a_usage_error(model_dir, inputs, tmp_path, capsys, size):
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "x.png"), "--model", str(model_dir),
              "--batch-size", size])
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_USAGE and "--batch-size" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_each_restoration_is_described_by_what_was_done():
    from uir.commands.restore import describe_restoration
    from uir.pipelines.restoring import RestorationOutput

    out = RestorationOutput(images=None, weights=torch.tensor([[0.7, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
                            expert_names=["noisy", "hazy"], clean_weight=torch.tensor([0.3, 1.0, 0.0, 1.0]),
                            degradations=["noisy", "hazy", "rainy", "uncompleted"],
                            confidence=torch.tensor([0.9, 0.3, 0.8, 0.9]), known=torch.tensor([True, False, True, True]),
                            missing=torch.tensor([0.0, 0.0, 0.0, 0.05]))
    assert describe_restoration(out, 0) == "detected noisy (confidence 0.90); experts: noisy 0.70, input kept 0.30"
    assert describe_restoration(out, 1) == "not sure (0.30; likeliest hazy): input returned unchanged"
    assert describe_restoration(out, 2) == "detected rainy (confidence 0.80); base model only"
    assert describe_restoration(out, 3) == "filled 5.0% missing pixels"
    tiny = RestorationOutput(images=None, weights=torch.tensor([[0.0, 1.0]]), expert_names=["noisy", "hazy"],
                             clean_weight=torch.zeros(1), degradations=["hazy"], confidence=torch.tensor([0.9]),
                             known=torch.tensor([True]), missing=torch.tensor([0.00012]))
    assert describe_restoration(tiny, 0) == "filled 0.012% missing pixels; detected hazy (confidence 0.90); experts: hazy 1.00"
    tiny.clean_weight, tiny.weights = torch.ones(1), torch.zeros(1, 2)
    tiny.confidence, tiny.known = torch.tensor([0.5]), torch.tensor([False])
    assert describe_restoration(tiny, 0) == ("filled 0.012% missing pixels; not sure (0.50; likeliest hazy): "
                                             "input returned unchanged")
    hazy = RestorationOutput(images=None, weights=torch.tensor([[0.0, 0.5], [0.0, 0.0]]), expert_names=["noisy", "hazy"],
                             clean_weight=torch.zeros(2), degradations=["hazy", "hazy"],
                             confidence=torch.tensor([0.9, 0.8]), known=torch.tensor([True, True]),
                             prior_weight=torch.tensor([0.5, 1.0]))
    assert describe_restoration(hazy, 0) == ("detected hazy (confidence 0.90); experts: hazy 0.50, "
                                             "dark-channel prior with guided filter 0.50")
    assert describe_restoration(hazy, 1) == ("detected hazy (confidence 0.80); "
                                             "dark-channel prior with guided filter only")
    jpeg = RestorationOutput(images=None, weights=torch.tensor([[1.0], [1.0]]), expert_names=["jpeg-compressed"],
                             clean_weight=torch.zeros(2), degradations=["jpeg-compressed"] * 2,
                             confidence=torch.ones(2), known=torch.tensor([True, True]), chroma_radius=torch.tensor([8, 0]))
    assert describe_restoration(jpeg, 0) == ("detected jpeg-compressed (confidence 1.00); experts: jpeg-compressed 1.00; "
                                             "JPEG chroma re-estimated from the luma (radius 8 px)")
    assert describe_restoration(jpeg, 1) == "detected jpeg-compressed (confidence 1.00); experts: jpeg-compressed 1.00"
