"""Hostile and careless input to every command, two training scripts and the Python API.

Each case must end in one clear line (argparse's usage errors print their usage above it in
the training scripts), the right exit code (2 usage, 1 failed work, 0 done), no traceback, and
no input file changed. The table is walked case by case; a case names what it feeds and the
words its one line must hold.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from uir.boundary import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UsageError, run_script
from uir.cli import main
from uir.images import save_image
from uir.testing import random_expert, save_sample_crops, tiny_restorer_pipeline

from .conftest import load_train_script

USAGE, PARTIAL, OK = EXIT_USAGE, EXIT_PARTIAL, EXIT_OK


def _write_model(folder: Path, edit=None) -> Path:
    tiny_restorer_pipeline().save_pretrained(folder)
    if edit:
        edit(folder)
    return folder


def _edit_json(path: Path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _expert(folder: Path, w, edit=None) -> Path:
    pipe = tiny_restorer_pipeline(names=())
    expert = random_expert("noisy", restorer=pipe.restorer, base_model="tiny-nafnet", seed=5)
    expert.save(folder)
    if edit:
        edit(folder)
    return folder


@pytest.fixture(scope="module")
def w(tmp_path_factory, sample):
    root = tmp_path_factory.mktemp("hostile")
    world = SimpleNamespace(root=root)
    world.model = _write_model(root / "model")
    world.inputs = root / "in"
    save_image(sample[:, :48, :64], world.inputs / "a.png")
    save_image(sample[:, 20:68, 10:74], world.inputs / "b.png")
    (world.inputs / "broken.png").write_bytes(b"not an image")
    world.photos = save_sample_crops(root / "photos", 5, 48, 48)
    world.mixed = save_sample_crops(root / "mixed", 5, 48, 48)
    (world.mixed / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    world.corrupt = root / "corrupt"
    world.corrupt.mkdir()
    for i in range(5):
        (world.corrupt / f"c{i}.png").write_bytes(b"garbage")
    world.empty = root / "empty"
    world.empty.mkdir()
    world.afile = root / "afile.txt"
    world.afile.write_text("a file")
    for name, gt_size, drop in (("pairs_sizes", 40, False), ("pairs_unmatched", 32, True)):
        save_image(sample[:, :32, :32], root / name / "lq" / "x.png")  # x: two sizes in pairs_sizes
        save_image(sample[:, :gt_size, :gt_size], root / name / "gt" / "x.png")
        save_image(sample[:, 8:40, :32], root / name / "lq" / "y.png")
        if not drop:
            save_image(sample[:, 8:40, :32], root / name / "gt" / "y.png")
    (root / "pairs_empty" / "lq").mkdir(parents=True)
    (root / "pairs_empty" / "gt").mkdir(parents=True)

    def model_index(change):
        return lambda folder: _edit_json(folder / "model_index.json", change)

    world.bad_models = {
        "class-name-empty-list": _write_model(root / "m1", model_index(lambda d: d.update(_class_name=[]))),
        "class-name-unknown": _write_model(root / "m2", model_index(lambda d: d.update(_class_name="Nope"))),
        "index-not-json": _write_model(root / "m3", lambda f: (f / "model_index.json").write_text("{oops")),
        "index-a-list": _write_model(root / "m4", lambda f: (f / "model_index.json").write_text("[1, 2]")),
        "router-no-vision-cfg": _write_model(root / "m5", lambda f: _edit_json(
            f / "router" / "config.json", lambda d: d["clip_config"].pop("vision_cfg"))),
        "restorer-weights-truncated": _write_model(root / "m6", lambda f: _truncate(
            f / "restorer" / "diffusion_pytorch_model.safetensors")),
        "restorer-config-unknown-key": _write_model(root / "m7", lambda f: _edit_json(
            f / "restorer" / "config.json", lambda d: d.update(width="wide"))),
        "no-model-index": root / "empty",
    }
    world.bad_experts = {
        "alpha-not-a-number": _expert(root / "e1", world, lambda f: _edit_json(
            f / "restorer" / "adapter_config.json", lambda d: d.update(lora_alpha="abc"))),
        "rank-pattern-a-list": _expert(root / "e2", world, lambda f: _edit_json(
            f / "restorer" / "adapter_config.json", lambda d: d.update(rank_pattern=[1, 2]))),
        "ranks-an-int": _expert(root / "e3", world, lambda f: _edit_json(
            f / "uir_expert.json", lambda d: d.update(ranks=8))),
        "a-pickle-inside": _expert(root / "e4", world, lambda f: (f / "restorer" / "extra.bin").write_bytes(b"x")),
        "weights-truncated": _expert(root / "e5", world, lambda f: _truncate(
            f / "restorer" / "adapter_model.safetensors")),
        "metadata-missing": _expert(root / "e6", world, lambda f: (f / "uir_expert.json").unlink()),
        "format-unknown": _expert(root / "e7", world, lambda f: _edit_json(
            f / "uir_expert.json", lambda d: d.update(format="other/9"))),
        "not-a-folder": world.afile,
    }
    return world


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _run_uir(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse, before the boundary
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.err


def _check(code, err, expected_code, words, last_line_only=False):
    """No traceback, the exit code, at most one error line, and a line that holds ``words``
    (the last line for a training script, whose argparse prints its usage above)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "Loading" not in line]
    assert code == expected_code, (code, err)
    if expected_code != OK:
        assert lines, "an error must say something"
        assert len([line for line in lines if "error:" in line]) <= 1, err
        candidates = lines[-1:] if last_line_only else lines
        assert any(words.lower() in line.lower() for line in candidates), (words, err)


# --- uir restore --------------------------------------------------------------------------------
def _restore(w, *extra, inputs=None, output=None):
    return ["restore", *(inputs or [str(w.inputs / "a.png")]), "-o", str(output or (w.root / "out" / "r.png")),
            "--model", str(w.model), *extra]


RESTORE_CASES = {
    "batch-size-zero": (lambda w: _restore(w, "--batch-size", "0"), USAGE, "--batch-size"),
    "batch-size-negative": (lambda w: _restore(w, "--batch-size", "-3"), USAGE, "--batch-size"),
    "batch-size-text": (lambda w: _restore(w, "--batch-size", "many"), USAGE, "--batch-size"),
    "tile-size-negative": (lambda w: _restore(w, "--tile-size", "-3"), USAGE, "--tile-size"),
    "tile-size-text": (lambda w: _restore(w, "--tile-size", "big"), USAGE, "--tile-size"),
    "tile-size-tiny": (lambda w: _restore(w, "--tile-size", "3"), USAGE, "at least 16"),
    "top-k-zero": (lambda w: _restore(w, "--top-k", "0"), USAGE, "--top-k"),
    "top-k-more-than-the-experts": (lambda w: _restore(w, "--top-k", "99"), OK, ""),
    "device-cuda": (lambda w: _restore(w, "--device", "cuda"), USAGE, "devices: cpu"),
    "device-cuda-99": (lambda w: _restore(w, "--device", "cuda:99"), USAGE, "devices: cpu"),
    "device-mps": (lambda w: _restore(w, "--device", "mps"), USAGE, "devices: cpu"),
    "device-foo": (lambda w: _restore(w, "--device", "foo"), USAGE, "devices: cpu"),
    "device-empty": (lambda w: _restore(w, "--device", ""), USAGE, "devices: cpu"),
    "weights-above-one": (lambda w: _restore(w, "--weights", "noisy=2"), USAGE, "[0, 1]"),
    "weights-huge": (lambda w: _restore(w, "--weights", "noisy=1e30"), USAGE, "[0, 1]"),
    "weights-negative": (lambda w: _restore(w, "--weights", "noisy=-1"), USAGE, "[0, 1]"),
    "weights-nan": (lambda w: _restore(w, "--weights", "noisy=nan"), USAGE, "[0, 1]"),
    "weights-inf": (lambda w: _restore(w, "--weights", "noisy=inf"), USAGE, "[0, 1]"),
    "weights-no-number": (lambda w: _restore(w, "--weights", "noisy"), USAGE, "NAME=NUMBER"),
    "weights-no-name": (lambda w: _restore(w, "--weights", "=1"), USAGE, "no expert for"),
    "weights-twice": (lambda w: _restore(w, "--weights", "noisy=0.5,noisy=0.5"), USAGE, "more than once"),
    "weights-unknown": (lambda w: _restore(w, "--weights", "foggy=1"), USAGE, "no expert for foggy"),
    "weights-and-degradation": (lambda w: _restore(w, "--weights", "noisy=1", "--degradation", "noisy"), USAGE,
                                "not both"),
    "degradation-twice": (lambda w: _restore(w, "--degradation", "noisy,noisy"), USAGE, "more than once"),
    "degradation-unknown": (lambda w: _restore(w, "--degradation", "foggy"), USAGE, "no expert for foggy"),
    "output-unknown-suffix": (lambda w: _restore(w, output=w.root / "out.xyz"), USAGE, "unknown output format"),
    "output-gif": (lambda w: _restore(w, output=w.root / "out.gif"), USAGE, "unknown output format"),
    "output-no-suffix": (lambda w: _restore(w, output=w.root / "outfile"), USAGE, "unknown output format"),
    "output-under-a-file": (lambda w: _restore(w, output=w.afile / "x.png"), USAGE, "is a file"),
    "output-is-the-input": (lambda w: _restore(w, output=w.inputs / "a.png"), USAGE, "one of the inputs"),
    "output-folder-is-the-inputs": (lambda w: _restore(w, inputs=[str(w.inputs / "a.png"), str(w.inputs / "b.png")],
                                                       output=w.inputs), USAGE, "one of the inputs"),
    "output-exists": (lambda w: _restore(w, output=w.afile.with_name("exists.png")), USAGE, "exist already"),
    "several-inputs-one-file": (lambda w: _restore(w, inputs=[str(w.inputs / "a.png"), str(w.inputs / "b.png")],
                                                   output=w.afile), USAGE, "is a file"),
    "input-missing": (lambda w: _restore(w, inputs=[str(w.root / "nope.png")]), PARTIAL, "nope.png: no such file"),
    "input-empty-folder": (lambda w: _restore(w, inputs=[str(w.empty)]), USAGE, "no input images"),
    "input-glob-matching-nothing": (lambda w: _restore(w, inputs=[str(w.root / "*.nothing")]), USAGE, "no input"),
    "input-corrupt": (lambda w: _restore(w, inputs=[str(w.inputs / "broken.png")]), PARTIAL, "broken.png"),
    "input-a-text-file": (lambda w: _restore(w, inputs=[str(w.afile)]), PARTIAL, "afile.txt"),
    "input-symlink-loop": (lambda w: _restore(w, inputs=[str(w.root / "loop")]), USAGE, "symlink loop"),
    "model-missing": (lambda w: _restore(w, "--model", str(w.root / "no-model")), USAGE, "cannot load model"),
    "model-a-file": (lambda w: _restore(w, "--model", str(w.afile)), USAGE, "cannot load model"),
    "router-missing": (lambda w: _restore(w, "--router", str(w.root / "no-router")), USAGE, "cannot load"),
    "vae-for-a-restorer": (lambda w: _restore(w, "--vae", str(w.root / "no-vae")), USAGE, "cannot load"),
    "experts-missing": (lambda w: _restore(w, "--experts", str(w.root / "no-expert")), USAGE, "no-expert"),
    **{f"model-{name}": ((lambda name: lambda w: _restore(w, "--model", str(w.bad_models[name])))(name), USAGE,
                         "cannot load model") for name in (
        "class-name-empty-list", "class-name-unknown", "index-not-json", "index-a-list", "router-no-vision-cfg",
        "restorer-weights-truncated", "restorer-config-unknown-key", "no-model-index")},
    **{f"expert-{name}": ((lambda name: lambda w: _restore(w, "--experts", str(w.bad_experts[name])))(name), USAGE,
                          "expert") for name in (
        "alpha-not-a-number", "rank-pattern-a-list", "ranks-an-int", "a-pickle-inside", "weights-truncated",
        "metadata-missing", "format-unknown", "not-a-folder")},
}


@pytest.mark.parametrize("case", sorted(RESTORE_CASES))
def test_restore(w, capsys, case):
    build, expected_code, words = RESTORE_CASES[case]
    if case == "output-exists":
        save_image(torch.zeros(3, 8, 8), w.afile.with_name("exists.png"))
    if case == "input-symlink-loop" and not (w.root / "loop").is_symlink():
        (w.root / "loop").symlink_to(w.root / "loop2")
        (w.root / "loop2").symlink_to(w.root / "loop")
    shutil.rmtree(w.root / "out", ignore_errors=True)
    before = _digest(w.inputs)
    code, err = _run_uir(build(w), capsys)
    _check(code, err, expected_code, words)
    assert _digest(w.inputs) == before


# --- uir degrade --------------------------------------------------------------------------------
def _degrade(w, *extra, inputs=None):
    return ["degrade", *(inputs or [str(w.inputs / "a.png")]), "-o", str(w.root / "out" / "d.png"), *extra]


DEGRADE_CASES = {
    "type-unknown": (lambda w: _degrade(w, "--type", "foggy"), USAGE, "foggy"),
    "type-missing": (lambda w: _degrade(w), USAGE, "--type"),
    "type-empty": (lambda w: _degrade(w, "--type", ""), USAGE, "degradation"),
    "param-no-value": (lambda w: _degrade(w, "--type", "noisy", "--param", "sigma"), USAGE, "KEY=VALUE"),
    "param-not-a-number": (lambda w: _degrade(w, "--type", "noisy", "--param", "sigma=loud"), USAGE, "not a number"),
    "param-unknown": (lambda w: _degrade(w, "--type", "noisy", "--param", "colour=3"), USAGE, "colour"),
    "param-out-of-range": (lambda w: _degrade(w, "--type", "noisy", "--param", "sigma=-5"), USAGE, "sigma"),
    "param-for-a-chain": (lambda w: _degrade(w, "--type", "noisy,hazy", "--param", "sigma=5"), USAGE, "single"),
    "severity-unknown": (lambda w: _degrade(w, "--type", "noisy", "--severity", "brutal"), USAGE, "--severity"),
    "seed-text": (lambda w: _degrade(w, "--type", "noisy", "--seed", "abc"), USAGE, "--seed"),
    "output-unknown-suffix": (lambda w: ["degrade", str(w.inputs / "a.png"), "--type", "noisy", "-o",
                                         str(w.root / "d.xyz")], USAGE, "unknown output format"),
    "output-under-a-file": (lambda w: ["degrade", str(w.inputs / "a.png"), "--type", "noisy", "-o",
                                       str(w.afile / "d.png")], USAGE, "is a file"),
    "output-is-the-input": (lambda w: ["degrade", str(w.inputs / "a.png"), "--type", "noisy", "-o",
                                       str(w.inputs / "a.png")], USAGE, "one of the inputs"),
    "no-inputs": (lambda w: ["degrade", "--type", "noisy", "-o", str(w.root / "out" / "d.png")], USAGE, "no input"),
    "input-missing": (lambda w: _degrade(w, "--type", "noisy", inputs=[str(w.root / "nope.png")]), PARTIAL,
                      "nope.png: no such file"),
    "input-corrupt": (lambda w: _degrade(w, "--type", "noisy", inputs=[str(w.inputs / "broken.png")]), PARTIAL,
                      "broken.png"),
    "input-empty-folder": (lambda w: _degrade(w, "--type", "noisy", inputs=[str(w.empty)]), USAGE, "no input"),
}


@pytest.mark.parametrize("case", sorted(DEGRADE_CASES))
def test_degrade(w, capsys, case):
    build, expected_code, words = DEGRADE_CASES[case]
    shutil.rmtree(w.root / "out", ignore_errors=True)
    before = _digest(w.inputs)
    code, err = _run_uir(build(w), capsys)
    _check(code, err, expected_code, words)
    assert _digest(w.inputs) == before


# --- uir eval, eval-router, bench, demo ---------------------------------------------------------
def _eval(w, data, *extra):
    return ["eval", "--model", str(w.model), "--data", str(data), "--degradations", "noisy", "-o",
            str(w.root / "out" / "eval"), *extra]


def _eval_router(w, data, *extra):
    return ["eval-router", str(w.model / "router"), "--data", str(data), "--degradations", "noisy", *extra]


OTHER_CASES = {
    "eval-data-missing": (lambda w: _eval(w, w.root / "nope"), USAGE, "not a folder"),
    "eval-data-a-file": (lambda w: _eval(w, w.afile), USAGE, "not a folder"),
    "eval-data-empty": (lambda w: _eval(w, w.empty), USAGE, "no photos"),
    "eval-data-corrupt-only": (lambda w: _eval(w, w.corrupt), PARTIAL, "nothing could be scored"),
    "eval-one-corrupt-photo": (lambda w: _eval(w, w.mixed), PARTIAL, "1 skipped"),
    "eval-limit-zero": (lambda w: _eval(w, w.photos, "--limit", "0"), USAGE, "--limit"),
    "eval-limit-negative": (lambda w: _eval(w, w.photos, "--limit", "-1"), USAGE, "--limit"),
    "eval-grid-rows-negative": (lambda w: _eval(w, w.photos, "--grid-rows", "-1"), USAGE, "--grid-rows"),
    "eval-top-k-zero": (lambda w: _eval(w, w.photos, "--top-k", "0"), USAGE, "--top-k"),
    "eval-degradation-unknown": (lambda w: ["eval", "--model", str(w.model), "--data", str(w.photos),
                                            "--degradations", "foggy"], USAGE, "foggy"),
    "eval-output-a-file": (lambda w: ["eval", "--model", str(w.model), "--data", str(w.photos), "-o",
                                      str(w.afile)], USAGE, "is a file"),
    "eval-output-under-a-file": (lambda w: ["eval", "--model", str(w.model), "--data", str(w.photos), "-o",
                                            str(w.afile / "x")], USAGE, "is a file"),
    "eval-pairs-unmatched": (lambda w: _eval(w, w.root / "pairs_unmatched"), USAGE, "unmatched"),
    "eval-pairs-empty": (lambda w: _eval(w, w.root / "pairs_empty"), USAGE, "no images"),
    "eval-pairs-of-two-sizes": (lambda w: _eval(w, w.root / "pairs_sizes"), PARTIAL, "differ in size"),
    "eval-device-foo": (lambda w: _eval(w, w.photos, "--device", "foo"), USAGE, "devices: cpu"),
    "eval-model-missing": (lambda w: ["eval", "--model", str(w.root / "nope"), "--data", str(w.photos)], USAGE,
                           "cannot load model"),
    "eval-oracle-without-the-expert": (lambda w: ["eval", "--model", str(w.model), "--data", str(w.photos),
                                                  "--degradations", "snowy", "--oracle", "-o",
                                                  str(w.root / "out" / "e")], USAGE, "--oracle"),
    "eval-router-missing": (lambda w: ["eval-router", str(w.root / "nope"), "--data", str(w.photos)], USAGE,
                            "cannot load router"),
    "eval-router-data-missing": (lambda w: _eval_router(w, w.root / "nope"), USAGE, "not a folder"),
    "eval-router-data-empty": (lambda w: _eval_router(w, w.empty), USAGE, "no photos"),
    "eval-router-corrupt-only": (lambda w: _eval_router(w, w.corrupt), PARTIAL, "nothing could be scored"),
    "eval-router-one-corrupt-photo": (lambda w: _eval_router(w, w.mixed), PARTIAL, "1 skipped"),
    "eval-router-limit-zero": (lambda w: _eval_router(w, w.photos, "--limit", "0"), USAGE, "--limit"),
    "eval-router-repeats-zero": (lambda w: _eval_router(w, w.photos, "--repeats", "0"), USAGE, "--repeats"),
    "eval-router-severity-unknown": (lambda w: _eval_router(w, w.photos, "--severity", "brutal"), USAGE,
                                     "--severity"),
    "eval-router-degradation-unknown": (lambda w: ["eval-router", str(w.model / "router"), "--data",
                                                   str(w.photos), "--degradations", "foggy"], USAGE, "foggy"),
    "bench-size-zero": (lambda w: ["bench", "--model", str(w.model), "--size", "0"], USAGE, "--size"),
    "bench-size-negative": (lambda w: ["bench", "--model", str(w.model), "--size", "-5"], USAGE, "--size"),
    "bench-size-tiny": (lambda w: ["bench", "--model", str(w.model), "--size", "4"], USAGE, "--size"),
    "bench-batch-zero": (lambda w: ["bench", "--model", str(w.model), "--batch", "0"], USAGE, "--batch"),
    "bench-repeats-zero": (lambda w: ["bench", "--model", str(w.model), "--repeats", "0"], USAGE, "--repeats"),
    "bench-device-foo": (lambda w: ["bench", "--model", str(w.model), "--device", "foo"], USAGE, "devices: cpu"),
    "bench-model-missing": (lambda w: ["bench", "--model", str(w.root / "nope"), "--size", "32"], USAGE,
                            "cannot load"),
    "demo-output-a-file": (lambda w: ["demo", "--model", str(w.model), "-o", str(w.afile)], USAGE, "is a file"),
    "demo-output-under-a-file": (lambda w: ["demo", "--model", str(w.model), "-o", str(w.afile / "d")], USAGE,
                                 "is a file"),
    "demo-device-foo": (lambda w: ["demo", "--model", str(w.model), "--device", "foo", "-o",
                                   str(w.root / "out" / "demo")], USAGE, "devices: cpu"),
    "demo-model-missing": (lambda w: ["demo", "--model", str(w.root / "nope"), "-o", str(w.root / "out" / "d")],
                           USAGE, "cannot load model"),
    "unknown-command": (lambda w: ["restore-all"], USAGE, "invalid choice"),
    "degradations-family-unknown": (lambda w: ["degradations", "--family", "nope"], USAGE, "nope"),
}


@pytest.mark.parametrize("case", sorted(OTHER_CASES))
def test_eval_bench_demo(w, capsys, case):
    build, expected_code, words = OTHER_CASES[case]
    shutil.rmtree(w.root / "out", ignore_errors=True)
    before = {folder: _digest(folder) for folder in (w.photos, w.mixed, w.corrupt, w.inputs)}
    code, err = _run_uir(build(w), capsys)
    _check(code, err, expected_code, words)
    assert {folder: _digest(folder) for folder in before} == before
    shutil.rmtree(w.root / "out", ignore_errors=True)


# --- training scripts ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(w, tmp_path_factory):
    """A finished run of each script with a checkpoint, and damaged copies of it."""
    root = tmp_path_factory.mktemp("runs")
    train_restorer, train_uir_lora = load_train_script("train_restorer"), load_train_script("train_uir_lora")
    quick = ["--train_data_dir", str(w.photos), "--resolution", "32", "--train_batch_size", "2", "--max_train_steps",
             "1", "--checkpointing_steps", "1", "--validation_steps", "0", "--num_validation_images", "0"]
    train_restorer.main(quick + ["--degradations", "noisy", "--output_dir", str(root / "restorer")])
    train_uir_lora.main(quick + ["--degradations", "noisy", "--pretrained_model_name_or_path", str(w.model),
                                 "--output_dir", str(root / "experts")])
    checkpoint = root / "restorer" / "checkpoint-1"
    damaged = {}
    for name, damage in (("zero-byte", lambda c: (c / "trainable.safetensors").write_bytes(b"")),
                         ("truncated", lambda c: _truncate(c / "trainable.safetensors")),
                         ("state-not-json", lambda c: (c / "state.json").write_text("{")),
                         ("no-optimizer", lambda c: (c / "optimizer.safetensors").unlink())):
        copy = root / f"damaged-{name}"
        shutil.copytree(checkpoint, copy)
        damage(copy)
        damaged[name] = copy
    return SimpleNamespace(root=root, quick=quick, damaged=damaged, restorer=checkpoint,
                           expert=root / "experts" / "checkpoint-1")


def _config(w, content) -> str:
    path = w.root / f"config-{abs(hash(content))}.json"
    path.write_text(content)
    return str(path)


TRAIN_CASES = {
    "resolution-seven": (["--resolution", "7"], USAGE, "--resolution"),
    "resolution-negative": (["--resolution", "-8"], USAGE, "--resolution"),
    "resolution-zero": (["--resolution", "0"], USAGE, "--resolution"),
    "resolution-not-a-multiple": (["--resolution", "36"], USAGE, "multiple of 8"),
    "resolution-larger-than-every-photo": (["--resolution", "4096"], USAGE, "larger than every photo"),
    "batch-size-zero": (["--train_batch_size", "0"], USAGE, "--train_batch_size"),
    "batch-size-negative": (["--train_batch_size", "-2"], USAGE, "--train_batch_size"),
    "accumulation-zero": (["--gradient_accumulation_steps", "0"], USAGE, "--gradient_accumulation_steps"),
    "learning-rate-nan": (["--learning_rate", "nan"], USAGE, "--learning_rate"),
    "learning-rate-negative": (["--learning_rate", "-1e-3"], USAGE, "--learning_rate"),
    "learning-rate-zero": (["--learning_rate", "0"], USAGE, "--learning_rate"),
    "learning-rate-inf": (["--learning_rate", "inf"], USAGE, "--learning_rate"),
    "learning-rate-text": (["--learning_rate", "fast"], USAGE, "--learning_rate"),
    "max-steps-zero": (["--max_train_steps", "0"], USAGE, "--max_train_steps"),
    "max-steps-negative": (["--max_train_steps", "-5"], USAGE, "--max_train_steps"),
    "scheduler-bogus": (["--lr_scheduler", "bogus"], USAGE, "--lr_scheduler"),
    "warmup-negative": (["--lr_warmup_steps", "-1"], USAGE, "--lr_warmup_steps"),
    "checkpoint-limit-zero": (["--checkpoints_total_limit", "0"], USAGE, "--checkpoints_total_limit"),
    "validation-steps-negative": (["--validation_steps", "-1"], USAGE, "--validation_steps"),
    "workers-negative": (["--dataloader_num_workers", "-1"], USAGE, "--dataloader_num_workers"),
    "max-seconds-zero": (["--max_train_seconds", "0"], USAGE, "--max_train_seconds"),
    "severity-unknown": (["--severity", "brutal"], USAGE, "--severity"),
    "degradations-unknown": (["--degradations", "foggy"], USAGE, "foggy"),
    "data-missing": (["--train_data_dir", "/nonexistent/photos"], USAGE, "does not exist"),
    "data-empty": (lambda w: ["--train_data_dir", str(w.empty)], USAGE, "no photos"),
    "data-corrupt-only": (lambda w: ["--train_data_dir", str(w.corrupt)], USAGE, "no readable photos"),
    "output-dir-a-file": (lambda w: ["--output_dir", str(w.afile)], USAGE, "is a file"),
    "output-dir-under-a-file": (lambda w: ["--output_dir", str(w.afile / "run")], USAGE, "is a file"),
    "streaming-without-dataset": (["--streaming"], USAGE, "--streaming needs --dataset_name"),
    "paired-malformed": (["--paired", "noisy"], USAGE, "NAME=LQ_DIR:GT_DIR"),
    "paired-missing": (["--paired", "noisy=/no/lq:/no/gt"], USAGE, "does not exist"),
    "resume-missing": (["--resume_from_checkpoint", "/nonexistent/checkpoint-9"], USAGE, "no such folder"),
    **{f"resume-{name}": ((lambda name: lambda w, runs: ["--resume_from_checkpoint", str(runs.damaged[name])])(name),
                          USAGE, "--resume_from_checkpoint") for name in ("zero-byte", "truncated", "state-not-json",
                                                              "no-optimizer")},
}
RESTORER_CASES = {
    "config-missing": (lambda w: ["--config", str(w.root / "nope.json")], USAGE, "no such file"),
    "config-not-json": (lambda w: ["--config", _config(w, "{width: 8")], USAGE, "not valid JSON"),
    "config-a-list": (lambda w: ["--config", _config(w, "[8, 8]")], USAGE, "JSON object"),
    "config-unknown-key": (lambda w: ["--config", _config(w, '{"width": 8, "depth": 3}')], USAGE, "takes no depth"),
    "resume-another-architecture": (lambda w, runs: ["--config", _config(w, '{"width": 8, "encoder_blocks": [1], '
                                                      '"middle_blocks": 1, "decoder_blocks": [1]}'),
                                                      "--resume_from_checkpoint", str(runs.restorer)], USAGE,
                                    "another"),
}
EXPERT_CASES = {
    "rank-zero": (["--rank", "0"], USAGE, "--rank"),
    "model-a-file": (lambda w: ["--pretrained_model_name_or_path", str(w.afile)], USAGE, "no such folder"),
    "model-missing-folder": (["--pretrained_model_name_or_path", "./no/such/model"], USAGE, "no such folder"),
    "model-offline-hub-id": (["--pretrained_model_name_or_path", "someone/no-such-model"], USAGE, "cannot reach"),
    "resume-another-degradation": (lambda w, runs: ["--degradations", "hazy", "--resume_from_checkpoint",
                                                    str(runs.expert)], USAGE, "other --degradations"),
}


def _script_cases():
    for case in sorted(TRAIN_CASES):
        for script in ("train_restorer", "train_uir_lora"):
            yield script, case, TRAIN_CASES[case]
    for case in sorted(RESTORER_CASES):
        yield "train_restorer", case, RESTORER_CASES[case]
    for case in sorted(EXPERT_CASES):
        yield "train_uir_lora", case, EXPERT_CASES[case]


@pytest.mark.parametrize("script, case, spec", [pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in _script_cases()])
def test_training_script(w, runs, capsys, monkeypatch, script, case, spec):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    extra, expected_code, words = spec
    if callable(extra):
        extra = extra(w, runs) if extra.__code__.co_argcount == 2 else extra(w)
    model = ["--pretrained_model_name_or_path", str(w.model)] if script == "train_uir_lora" else []
    argv = runs.quick + ["--degradations", "noisy"] + model + ["--output_dir", str(w.root / "out" / "run")] + extra
    before = _digest(w.photos), _digest(runs.restorer)
    code = run_script(load_train_script(script).main, argv, prog=script)
    err = capsys.readouterr().err
    _check(code, err, expected_code, words, last_line_only=True)
    assert (_digest(w.photos), _digest(runs.restorer)) == before
    shutil.rmtree(w.root / "out", ignore_errors=True)


# --- the Python API -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe():
    return tiny_restorer_pipeline()


API_CASES = {
    "image-1d": (lambda p: p(np.zeros(8, dtype=np.float32)), ValueError),
    "image-5d": (lambda p: p(torch.zeros(1, 1, 3, 8, 8)), ValueError),
    "image-one-channel-too-many": (lambda p: p(torch.zeros(1, 5, 8, 8)), ValueError),
    "image-nan": (lambda p: p(torch.full((1, 3, 8, 8), float("nan"))), ValueError),
    "image-empty": (lambda p: p(torch.zeros(1, 3, 0, 8)), ValueError),
    "image-a-string": (lambda p: p("photo.png"), (ValueError, TypeError)),
    "image-empty-list": (lambda p: p([]), ValueError),
    "weights-negative": (lambda p: p(torch.rand(1, 3, 8, 8), weights={"noisy": -1.0}), ValueError),
    "weights-too-large": (lambda p: p(torch.rand(1, 3, 8, 8), weights={"noisy": 1e30}), ValueError),
    "weights-unknown": (lambda p: p(torch.rand(1, 3, 8, 8), weights={"foggy": 1.0}), ValueError),
    "weights-shape": (lambda p: p(torch.rand(1, 3, 8, 8), weights=torch.ones(5)), ValueError),
    "top-k-zero": (lambda p: p(torch.rand(1, 3, 8, 8), top_k=0), ValueError),
    "strategy-unknown": (lambda p: p(torch.rand(1, 3, 8, 8), strategy="vote"), ValueError),
    "output-type-unknown": (lambda p: p(torch.rand(1, 3, 8, 8), output_type="jpeg"), ValueError),
    "tile-size-tiny": (lambda p: p(torch.rand(1, 3, 64, 64), tile_size=3), ValueError),
    "batch-size-zero": (lambda p: p(torch.rand(1, 3, 8, 8), batch_size=0), ValueError),
    "tile-overlap-negative": (lambda p: p(torch.rand(1, 3, 64, 64), tile_size=32, tile_overlap=-1), ValueError),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_python_api(pipe, case):
    call, error = API_CASES[case]
    with pytest.raises(error) as raised:
        call(pipe)
    assert "\n" not in str(raised.value) and str(raised.value)


def test_the_table_holds_at_least_150_cases():
    scripts = sum(1 for _ in _script_cases())
    total = len(RESTORE_CASES) + len(DEGRADE_CASES) + len(OTHER_CASES) + scripts + len(API_CASES)
    assert total >= 150, total


@pytest.mark.parametrize("failure", [None, UsageError("bad option"), RuntimeError("broke")])
def test_the_boundary_closes_a_process_group_the_work_opened(tmp_path, failure):
    """Every exit through the boundary, good or bad, destroys a gloo process group the work left
    open: left for the interpreter's exit, one sometimes aborted the process in C++ ("terminate
    called without an active exception") after its work was done."""
    import torch.distributed as dist

    def work():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
        assert dist.is_initialized()
        if failure is not None:
            raise failure

    code = run_script(lambda argv: work(), [], prog="script")
    assert code == (EXIT_OK if failure is None else EXIT_USAGE if isinstance(failure, UsageError) else EXIT_PARTIAL)
    assert not dist.is_initialized()
