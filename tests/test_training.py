"""The train/ scripts on a tiny SD-turbo and a tiny CLIP: resume, checkpoints, experts, DDP."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import uir.training as training
import uir.training.loop as training_loop
from uir import UIRLoRAPipeline
from uir.data import SingleDegradationBatchSampler
from uir.lora import LoRAExpert
from uir.models.router import DegradationRouter
from uir.networks.drops import DropDetector
from uir.testing import TINY_CLIP, TINY_CONVNET_CLIP, save_sample_crops, save_tiny_sd_turbo

from .conftest import launch_two_cpu_processes, load_train_script

REPO = Path(__file__).resolve().parents[1]

train_router = load_train_script("train_router")
train_uir_lora = load_train_script("train_uir_lora")
train_vae_skips = load_train_script("train_vae_skips")


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_sd_turbo(tmp_path_factory.mktemp("sd-turbo"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four 64x64 crops of the bundled photo: enough for single-type batches of two."""
    return save_sample_crops(tmp_path_factory.mktemp("photos"), 4, 64, 64)


def _common(base_dir, photos, out, steps=4, **extra):
    args = {"pretrained_model_name_or_path": base_dir, "train_data_dir": photos, "output_dir": out,
            "degradations": "noisy,hazy", "max_train_steps": steps, "checkpointing_steps": 1,
            "validation_steps": 0, "train_batch_size": 2, "resolution": 32, "num_validation_images": 0,
            "severity": "default", **extra}
    argv = []
    for key, value in args.items():
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return argv


def _expert_tensors(folder):
    return {f"{name}/{part}/{k}": v for name in ("noisy", "hazy") for part in ("unet", "vae")
            for k, v in load_file(Path(folder) / "experts" / name / part / "adapter_model.safetensors").items()}


def test_interrupted_run_resumes_bitwise(base_dir, photos, tmp_path, monkeypatch):
    train_uir_lora.main(_common(base_dir, photos, tmp_path / "straight", steps=6))

    original = training.save_checkpoint

    class Interrupted(Exception):
        pass

    def save_then_die(*args, **kwargs):
        path = original(*args, **kwargs)
        if args[2] == 3:
            raise Interrupted
        return path

    monkeypatch.setattr(training_loop, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        train_uir_lora.main(_common(base_dir, photos, tmp_path / "resumed", steps=6))
    monkeypatch.setattr(training_loop, "save_checkpoint", original)
    assert not (tmp_path / "resumed" / "experts").exists()
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    train_uir_lora.main(_common(base_dir, photos, tmp_path / "resumed", steps=6, resume_from_checkpoint="latest"))

    straight, resumed = _expert_tensors(tmp_path / "straight"), _expert_tensors(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), f"{key} differs after resume"
    assert any(v.abs().sum() > 0 for k, v in straight.items() if "lora_B" in k), "nothing was trained"


def test_prior_input_trains_the_hazy_expert_on_the_dark_channels_output(base_dir, photos, tmp_path, monkeypatch):
    """``--prior_input``: a type with a classical prior (hazy) trains on P(lq) and its expert is
    saved with the flag the pipeline reads; a type without one (rainy) trains on lq as before."""
    from uir.classical import PRIORS, Prior
    from uir.lora import PRIOR_INPUT_KEY

    seen, dehaze = [], PRIORS["hazy"].restore

    def recording(images):
        seen.append(images.shape[0])
        return dehaze(images)

    monkeypatch.setitem(PRIORS, "hazy", Prior("recording", recording))
    train_uir_lora.main(_common(base_dir, photos, tmp_path / "run", steps=4, prior_input=True,
                                degradations="rainy,hazy"))
    assert seen and all(n == 2 for n in seen), "the hazy batches did not go through the prior"
    flags = {name: LoRAExpert.load(tmp_path / "run" / "experts" / name).prior_input for name in ("rainy", "hazy")}
    assert flags == {"rainy": False, "hazy": True}
    saved = json.loads((tmp_path / "run" / "experts" / "hazy" / "uir_expert.json").read_text())
    assert saved[PRIOR_INPUT_KEY] is True


@pytest.mark.parametrize("script", [train_uir_lora, train_router, train_vae_skips])
@pytest.mark.parametrize("option, message", [
    (["--degradations", "noisy,foggy"], "unknown degradation 'foggy'"),
    (["--repeats", "0"], "must be at least 1, got 0"),
    (["--max_train_seconds", "-5"], "must be a finite number above 0"),
    (["--severity", "extreme"], "invalid choice: 'extreme'"),
    (["--streaming"], "--streaming needs --dataset_name"),
    (["--paired", "noisy"], "--paired expects NAME=LQ_DIR:GT_DIR, got 'noisy'"),
    (["--paired", "noisy=/no/such/lq:/no/such/gt"], "--paired: folder /no/such/lq does not exist"),
    (["--train_data_dir", "/no/such/photos"], "--train_data_dir: folder /no/such/photos does not exist"),
])
def test_bad_options_are_a_usage_error_before_any_work(script, tmp_path, capsys, option, message):
    _assert_usage_error(script, option, message, tmp_path, capsys)


@pytest.mark.parametrize("option, message", [
    (["--prior_input"], "--prior_input: none of snowy, rainy has a classical prior"),
    (["--prior_input", "noisy"], "--prior_input: 'noisy' is not trained here (trained: snowy, rainy)"),
    (["--prior_input", "snowy"], "--prior_input: 'snowy' has no classical prior"),
    (["--veil_bound", "hazy"], "--veil_bound: 'hazy' is not trained here (trained: snowy, rainy)"),
    (["--clean_inputs", "1"], "argument --clean_inputs: clean_inputs must be in [0, 1), got 1"),
])
def test_flagged_types_that_cannot_be_flagged_are_a_usage_error(tmp_path, capsys, option, message):
    _assert_usage_error(train_uir_lora, ["--pretrained_model_name_or_path", str(tmp_path), *option,
                                         "--degradations", "snowy,rainy"], message, tmp_path, capsys)


def test_prior_input_and_veil_bound_name_the_types_they_flag(base_dir, photos, tmp_path):
    """``--prior_input TYPES`` guides only the types named (hazy has a prior, but is not named)
    and ``--veil_bound TYPES`` saves the flag the pipeline reads for those named; the recipe of
    the embedded default uses both this way."""
    from uir.lora import VEIL_BOUND_KEY

    train_uir_lora.main(_common(base_dir, photos, tmp_path / "run", steps=2, degradations="noisy,hazy",
                                prior_input="noisy", veil_bound="hazy"))
    experts = {name: LoRAExpert.load(tmp_path / "run" / "experts" / name) for name in ("noisy", "hazy")}
    assert {name: (e.prior_input, e.veil_bound) for name, e in experts.items()} == {
        "noisy": (True, False), "hazy": (False, True)}
    assert VEIL_BOUND_KEY not in json.loads((tmp_path / "run" / "experts" / "noisy" / "uir_expert.json").read_text())


def test_clean_inputs_reach_the_experts_training_data(base_dir, photos, tmp_path):
    """``--clean_inputs SHARE`` is the share of the synthesised training items left clean; the
    router's trainer, whose labels would then be wrong, has no such option."""
    from uir.training import training_dataset

    args = train_uir_lora.parse_args(_common(base_dir, photos, tmp_path / "run", clean_inputs=0.25))
    assert training_dataset(args, ["noisy", "hazy"]).clean_inputs == 0.25
    assert training_dataset(train_uir_lora.parse_args(_common(base_dir, photos, tmp_path / "run")),
                            ["noisy"]).clean_inputs == 0.0
    with pytest.raises(SystemExit):
        train_router.parse_args(["--output_dir", str(tmp_path / "r"), "--clean_inputs", "0.25"])


def _assert_usage_error(script, option, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--output_dir", str(tmp_path / "out"), *option])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse: the usage, then one error line
    assert ": error: " in last and message in last and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_resume_restores_every_random_state(tmp_path):
    """torch's, numpy's and Python's generators draw after a restore what they drew after the
    save, as in an uninterrupted run (CUDA's too, where present)."""
    import random

    import numpy as np

    def draws():
        cuda = [torch.rand(3, device="cuda")] if torch.cuda.is_available() else []
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(1).tolist(), \
            [random.random(), random.gauss(0, 1)], [t.tolist() for t in cuda]

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn(1), random.gauss(0, 1)  # cached Gaussians are part of the state too
    training.checkpoints.save_rng_state(tmp_path / "rng.safetensors")
    expected = draws()
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    training.checkpoints.load_rng_state(tmp_path / "rng.safetensors")
    assert draws() == expected


def test_checkpoints_hold_only_lora_and_each_step_trains_one_expert(base_dir, photos, tmp_path):
    out = tmp_path / "run"
    train_uir_lora.main(_common(base_dir, photos, out, steps=4, checkpoints_total_limit=10))
    checkpoints = training.checkpoint_dirs(out)
    assert [c.name for c in checkpoints] == [f"checkpoint-{i}" for i in range(1, 5)]
    states = [load_file(c / training.TRAINABLE_FILE) for c in checkpoints]
    assert all(".lora_" in key for key in states[0]), "a frozen base weight went into the checkpoint"
    base_bytes = sum(f.stat().st_size for f in Path(base_dir).rglob("*.safetensors"))
    assert (checkpoints[0] / training.TRAINABLE_FILE).stat().st_size < base_bytes / 2
    assert not any(p.suffix in (".bin", ".pkl", ".pt") for c in checkpoints for p in c.iterdir())
    mask = os.umask(0)
    os.umask(mask)
    usual = 0o666 & ~mask  # not safetensors 0.8's private 0o600, in checkpoints and experts alike
    assert {oct(p.stat().st_mode & 0o777) for p in [*checkpoints[0].iterdir(), *(out / "experts").rglob("*.*")]} == {oct(usual)}

    lines = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    for before, after in zip(states, states[1:]):
        changed = {key.split(".")[1] for key in before if not torch.equal(before[key], after[key])}
        # keys read "unet.<layer>.lora_A.<adapter>.weight"; one adapter name changes per step
        adapters = {key.split(".lora_")[1].split(".")[1] for key in before if not torch.equal(before[key], after[key])}
        assert changed and len(adapters) == 1, f"a step changed experts {adapters}"


def test_each_degradation_gets_its_own_expert_that_loads(base_dir, photos, tmp_path):
    out = tmp_path / "run"
    train_uir_lora.main(_common(base_dir, photos, out, steps=4, checkpointing_steps=0))
    experts = [LoRAExpert.load(out / "experts" / name) for name in ("noisy", "hazy")]
    assert [e.degradation for e in experts] == ["noisy", "hazy"]
    assert experts[0].components["unet"].config["r"] == 8 and experts[0].components["vae"].config["r"] == 4
    pipe = UIRLoRAPipeline.from_sd_turbo(str(base_dir), experts=[out / "experts" / "noisy", out / "experts" / "hazy"])
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    noisy = pipe(x, weights={"noisy": 1.0}, strategy="manual", output_type="pt").images
    hazy = pipe(x, weights={"hazy": 1.0}, strategy="manual", output_type="pt").images
    assert torch.isfinite(noisy).all() and not torch.equal(noisy, hazy)


def test_vae_skips_stage_saves_a_loadable_skip_vae(base_dir, photos, tmp_path):
    out = tmp_path / "vae"
    train_vae_skips.main(_common(base_dir, photos, out, steps=3, train_vae_lora=True, checkpointing_steps=0))
    state = load_file(out / "vae" / "diffusion_pytorch_model.safetensors")
    assert not any("lora" in key for key in state), "the stage-1 LoRA was not merged"
    fresh = UIRLoRAPipeline.from_sd_turbo(str(base_dir))
    trained = UIRLoRAPipeline.from_sd_turbo(str(base_dir), vae=out / "vae")
    skip_keys = [k for k in state if k.startswith("skip_convs.")]
    assert skip_keys and any(not torch.equal(state[k], fresh.vae.state_dict()[k]) for k in skip_keys)
    conv = "encoder.conv_in.weight"
    assert not torch.equal(trained.vae.state_dict()[conv], fresh.vae.state_dict()[conv]), "VAE LoRA not fused"


def test_router_training_options_reach_the_saved_config(tmp_path):
    config = tmp_path / "clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    names = ["jpeg-compressed", "uncompleted", "clean"]
    args = train_router.parse_args(["--clip_model", str(config), "--output_dir", str(tmp_path), "--degradations",
                                    "jpeg-compressed,uncompleted", "--jpeg_max_quality", "30", "--call_missing_pixels",
                                    "--min_confidence", "0.7", "--low_confidence", "identity"])
    saved = train_router.build_router(args, names).config
    assert (saved.jpeg_max_quality, saved.call_missing_pixels, saved.min_confidence, saved.low_confidence) == (
        30, True, 0.7, "identity")


def test_skip_traced_leaves_the_traces_draws_out_of_the_loss(tmp_path, sample):
    import uir.degradations as D
    from uir.degradations.filters import jpeg

    config = tmp_path / "clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    base = ["--clip_model", str(config), "--output_dir", str(tmp_path), "--degradations", "jpeg-compressed,uncompleted"]
    router = train_router.build_router(train_router.parse_args(base + ["--jpeg_max_quality", "30",
                                                                       "--call_missing_pixels"]),
                                       ["jpeg-compressed", "uncompleted", "clean"])
    crop = sample[:, :64, :64]
    holes = D.apply("uncompleted", crop, generator=torch.Generator().manual_seed(0))
    batch = torch.stack([jpeg(crop[None], 10)[0], holes, crop, jpeg(crop[None], 90)[0]])
    assert train_router.untraced(router, batch).tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="--skip_traced"):
        train_router.main(base + ["--skip_traced"])


def test_calibrate_only_fits_a_saved_routers_view_weights_and_trains_nothing(tmp_path, photos):
    from uir.testing import tiny_router

    saved = tiny_router(vocabulary=["noisy", "hazy", "clean"], crop_grid=2)
    saved.save_pretrained(tmp_path / "saved")
    argv = ["--calibrate_only", "--calibration", "views", "--output_dir", str(tmp_path / "out"), "--train_data_dir",
            str(photos), "--degradations", "noisy,hazy", "--calibration_repeats", "2", "--resolution", "32"]
    with pytest.raises(ValueError, match="--router"):
        train_router.main(argv)
    train_router.main(argv + ["--router", str(tmp_path / "saved")])
    router = DegradationRouter.from_pretrained(tmp_path / "out" / "router")
    weights = router.config.view_weights
    assert sorted(weights) == ["clean", "hazy", "noisy"] and weights != {n: [1.0, 1.0] for n in weights}
    assert all(len(pair) == 2 and min(pair) > 0 for pair in weights.values())
    for key, value in saved.state_dict().items():
        assert torch.equal(value, router.state_dict()[key]), f"{key} changed: calibration trains nothing"


@pytest.mark.parametrize("text_tower, tower", [(False, "vit"), (True, "vit"), (False, "convnet")])
def test_router_training_moves_what_it_should_and_calibrates(tmp_path, photos, text_tower, tower):
    config = tmp_path / "clip.json"
    config.write_text(json.dumps(TINY_CLIP if tower == "vit" else TINY_CONVNET_CLIP))
    out = tmp_path / "router"
    argv = ["--clip_model", str(config), "--output_dir", str(out), "--train_data_dir", str(photos),
            "--max_train_steps", "3", "--train_batch_size", "4", "--resolution", "32", "--validation_steps", "0",
            "--checkpointing_steps", "0", "--num_validation_images", "0", "--degradations", "noisy,hazy",
            "--crop_grid", "2"] + (["--train_text_tower", "--clean_twins", "0.5"] if text_tower else [])
    torch.manual_seed(0)
    reference = train_router.build_router(train_router.parse_args(argv), ["noisy", "hazy", "clean"])
    train_router.main(argv)
    router = DegradationRouter.from_pretrained(out / "router")
    assert router.vocabulary == ["noisy", "hazy", "clean"] and router.config.crop_grid == 2
    # twins of weight 0.5 for 2 degraded classes: clean trains at 1 + 2 * 0.5 = 2 times their weight
    assert router.config.logit_bias == ({"clean": pytest.approx(-math.log(2.0))} if text_tower else None)
    before, after = reference.state_dict(), router.state_dict()
    for key in before:
        same = torch.equal(before[key], after[key])
        text = key.startswith("clip.") and not key.startswith("clip.visual.") and key != "clip.logit_scale"
        if key.startswith("clip.visual.") or ".zero_linears." in key or (text and not text_tower):
            assert same, f"{key} should stay frozen"
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("controller.visual."))
    assert not torch.equal(before["logit_scale"], after["logit_scale"]), "trained, then calibrated"
    trained_bank = not torch.allclose(before["degradation_bank"], after["degradation_bank"])
    assert trained_bank == text_tower, "the bank moves exactly when the text tower trains"
    assert torch.allclose(router.degradation_bank, router.encode_texts(router.vocabulary), atol=1e-6)
    if tower == "convnet":  # no blocks to inject into: the content embedding stays CLIP's own
        assert len(router.controller.zero_linears) == 0
        image = torch.rand(1, 3, 40, 40)
        pixels = router._normalise(F.interpolate(image, size=router.input_size))
        assert torch.allclose(router.encode_image(F.interpolate(image, size=router.input_size))[0],
                              F.normalize(router.clip.encode_image(pixels), dim=-1), atol=1e-6)


def test_router_labels_by_effect_call_invisible_draws_clean(sample, tmp_path, photos):
    """``--clean_above_psnr``: a draw at least that close to its clean crop (skimage's PSNR is the
    oracle) trains as ``clean``; a visible one keeps its type; without the option nothing moves."""
    from skimage.metrics import peak_signal_noise_ratio

    from uir import degradations

    vocabulary = ["jpeg-compressed", "noisy", "clean"]
    gt = sample[None]
    lq = torch.cat([degradations.apply("jpeg-compressed", gt, quality=q, generator=torch.Generator()) for q in (95, 10)]
                   + [degradations.apply("noisy", gt, sigma=1.0, generator=torch.Generator().manual_seed(0))])
    measured = [peak_signal_noise_ratio(gt[0].numpy(), image.numpy(), data_range=1.0) for image in lq]
    assert measured[0] > 35 > measured[1] and measured[2] > 35
    names = ["jpeg-compressed", "jpeg-compressed", "noisy"]
    labels = train_router.effect_labels(names, lq, gt.expand_as(lq), vocabulary, 35.0)
    assert labels.tolist() == [2, 0, 2]
    threshold = (measured[0] + measured[2]) / 2  # between the two invisible draws: only the closer one is clean
    closer = 0 if measured[0] > measured[2] else 2
    assert train_router.effect_labels(names, lq, gt.expand_as(lq), vocabulary, threshold).tolist() == \
        [2 if i == closer else j for i, j in enumerate([0, 0, 1])]
    assert train_router.effect_labels(names, lq, gt.expand_as(lq), vocabulary, None).tolist() == [0, 0, 1]
    config = tmp_path / "clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    with pytest.raises(ValueError, match="need the clean class"):
        train_router.main(["--clip_model", str(config), "--output_dir", str(tmp_path / "router"),
                           "--train_data_dir", str(photos), "--no_clean_class", "--clean_above_psnr", "35"])


def test_clean_twins_train_each_draws_own_clean_crop_as_clean(sample, tmp_path):
    """``--clean_twins W``: the loss is eq. 3's cross-entropy over the draws plus W times that of
    the clean crops of the draws not labelled clean (a clean draw has no twin), against ``clean``."""
    from uir import degradations

    config = tmp_path / "clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    base = ["--clip_model", str(config), "--output_dir", str(tmp_path), "--degradations", "noisy,hazy"]
    vocabulary = ["noisy", "hazy", "clean"]
    torch.manual_seed(0)
    router = train_router.build_router(train_router.parse_args(base), vocabulary)
    gt = torch.stack([sample[:, :64, :64], sample[:, 64:128, :64], sample[:, :64, 64:128]])
    names = ["noisy", "clean", "hazy"]
    lq = torch.stack([degradations.apply(n, g, generator=torch.Generator().manual_seed(0)) if n != "clean" else g
                      for n, g in zip(names, gt)])
    batch = {"lq": lq, "gt": gt, "degradation": names}
    draws = F.cross_entropy(router.logits(lq), torch.tensor([0, 2, 1]))
    twins = F.cross_entropy(router.logits(gt[[0, 2]]), torch.tensor([2, 2]))
    plain = train_router.router_loss(router, batch, train_router.parse_args(base))
    paired = train_router.router_loss(router, batch, train_router.parse_args(base + ["--clean_twins", "0.5"]))
    assert torch.allclose(plain, draws) and torch.allclose(paired, draws + 0.5 * twins)
    with pytest.raises(ValueError, match="need the clean class"):
        train_router.main(base + ["--no_clean_class", "--clean_twins", "1"])
    with pytest.raises(SystemExit):  # a one-line usage error, as for every weight
        train_router.parse_args(base + ["--clean_twins", "0"])


def test_group_size_keeps_runs_of_one_type(tmp_path, photos):
    from uir.data import SyntheticDegradationDataset

    dataset = SyntheticDegradationDataset(sorted(photos.iterdir()) * 3, ["noisy", "hazy", "rainy"], crop_size=16)
    sampler = SingleDegradationBatchSampler(dataset, batch_size=2, group_size=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 18  # 12 items per type: 6 batches, 2 runs of 3
    for start in range(0, len(batches), 3):
        kinds = {dataset.degradation_index(i) for batch in batches[start : start + 3] for i in batch}
        assert len(kinds) == 1
    mixed = SingleDegradationBatchSampler(dataset, batch_size=4, mix_types=True, seed=1)
    assert any(len({dataset.degradation_index(i) for i in batch}) > 1 for batch in mixed)


def test_two_process_ddp_matches_one_process_with_accumulation(base_dir, photos, tmp_path):
    """accelerate's own launcher, two CPU processes over gloo; the same optimizer steps as one
    process that accumulates two batches (same items, same averaged gradient)."""
    script = str(REPO / "train" / "train_uir_lora.py")
    two = tmp_path / "two"
    result = launch_two_cpu_processes([script] + _common(base_dir, photos, two, steps=4))
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((two / "checkpoint-4" / training.checkpoints.STATE_FILE).read_text())
    assert state["num_processes"] == 2 and (two / "checkpoint-4" / "rng-1.safetensors").is_file()

    one = tmp_path / "one"
    train_uir_lora.main(_common(base_dir, photos, one, steps=4, gradient_accumulation_steps=2))
    losses = [[json.loads(line)["loss"] for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
              for run in (two, one)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    a, b = _expert_tensors(two), _expert_tensors(one)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=2e-5), key


def test_experts_train_on_a_finished_pipeline_and_replace_its_own(photos, tmp_path):
    """A pipeline that already holds experts (like the embedded default) is trained on its base
    alone; the new expert records the base's fingerprint and replaces the old one on load."""
    from uir.pipelines.loading import load_pipeline
    from uir.testing import tiny_restorer_pipeline

    finished = tiny_restorer_pipeline(names=("noisy", "hazy"))
    finished.save_pretrained(tmp_path / "finished")
    out = tmp_path / "run"
    train_uir_lora.main(_common(tmp_path / "finished", photos, out, steps=2, degradations="noisy"))
    expert = LoRAExpert.load(out / "experts" / "noisy")
    assert expert.extra["base_fingerprint"] == finished.base_fingerprint
    for dtype in (torch.float16, torch.bfloat16):  # the trained expert fits its base in every dtype
        cast = load_pipeline(tmp_path / "finished", experts=[out / "experts" / "noisy"], dtype=dtype)
        assert sorted(cast.experts.names) == ["hazy", "noisy"] and cast.dtype == dtype
    pipe = load_pipeline(tmp_path / "finished", experts=[out / "experts" / "noisy"])
    assert sorted(pipe.experts.names) == ["hazy", "noisy"]
    new = pipe.experts.experts[pipe.experts.names.index("noisy")]
    assert all(torch.equal(new.components["restorer"].state_dict[k], v)
               for k, v in expert.components["restorer"].state_dict.items())


def test_a_killed_final_save_leaves_no_half_written_pipeline(photos, tmp_path, monkeypatch, train_script):
    from uir.pipelines import RestorerPipeline

    train_restorer = train_script("train_restorer")
    argv = ["--train_data_dir", str(photos), "--output_dir", str(tmp_path / "run"), "--degradations", "noisy",
            "--max_train_steps", "1", "--train_batch_size", "2", "--resolution", "32", "--validation_steps", "0",
            "--num_validation_images", "0", "--checkpointing_steps", "0"]
    original = RestorerPipeline.save_pretrained

    def save_then_die(self, directory, **kwargs):
        original(self, directory, **kwargs)
        raise KeyboardInterrupt  # the kill arrives after the weights, before the rename

    monkeypatch.setattr(RestorerPipeline, "save_pretrained", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_restorer.main(argv)
    assert not (tmp_path / "run" / "pipeline").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".pipeline")]
    monkeypatch.setattr(RestorerPipeline, "save_pretrained", original)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    train_restorer.main(argv)
    assert RestorerPipeline.from_pretrained(tmp_path / "run" / "pipeline").experts.names == []


def test_time_budget_shortens_the_run_and_stretches_the_schedule(tmp_path, photos, monkeypatch):
    from argparse import Namespace

    from diffusers.optimization import get_scheduler

    def schedule(steps):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        return get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=10, num_training_steps=steps)

    args = Namespace(max_train_steps=1000, lr_scheduler="cosine", lr_warmup_steps=10)
    scheduler = schedule(1000)
    assert training_loop.fit_to_budget(args, scheduler, 40, 0.1, 6.0) == 100 == args.max_train_steps
    reference = schedule(100).lr_lambdas[0]
    assert [scheduler.lr_lambdas[0](s) for s in (5, 40, 70, 100)] == [reference(s) for s in (5, 40, 70, 100)]
    assert training_loop.fit_to_budget(args, scheduler, 40, 0.1, 1e6) == 100, "a budget never lengthens a run"
    # end to end: a budget too small for any more steps stops right after the timed steps
    monkeypatch.setattr(training_loop, "BUDGET_PROBE_STEPS", 2)
    config = tmp_path / "clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    out = tmp_path / "router"
    train_router.main(["--clip_model", str(config), "--output_dir", str(out), "--train_data_dir", str(photos),
                       "--max_train_steps", "50", "--max_train_seconds", "0.001", "--train_batch_size", "2",
                       "--resolution", "32", "--validation_steps", "0", "--checkpointing_steps", "0",
                       "--num_validation_images", "0", "--degradations", "noisy", "--calibration_repeats", "0"])
    steps = [json.loads(line)["step"] for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 5 + 2 + 1 and (out / "router" / "config.json").is_file()


def test_train_restorer_takes_any_registered_backbone(photos, tmp_path, train_script):
    """``--backbone srresnet``: the registry builds the base, and an expert trained on it adapts
    the layers the backbone's ``expert_targets`` names."""
    from accelerate.state import AcceleratorState, GradientState

    from uir.models import SRResNet
    from uir.pipelines import RestorerPipeline

    quick = ["--train_data_dir", str(photos), "--degradations", "noisy", "--max_train_steps", "1",
             "--train_batch_size", "2", "--resolution", "32", "--validation_steps", "0", "--num_validation_images", "0",
             "--checkpointing_steps", "0"]
    config = tmp_path / "srresnet.json"
    config.write_text('{"channels": 8, "num_blocks": 2}')
    train_script("train_restorer").main(quick + ["--backbone", "srresnet", "--config", str(config),
                                                 "--output_dir", str(tmp_path / "base")])
    base = RestorerPipeline.from_pretrained(tmp_path / "base" / "pipeline")
    assert isinstance(base.restorer, SRResNet) and base.restorer.config.scale == 1
    assert base.restorer.config.channels == 8
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    train_script("train_uir_lora").main(quick + ["--pretrained_model_name_or_path", str(tmp_path / "base" / "pipeline"),
                                                 "--output_dir", str(tmp_path / "expert")])
    weights = load_file(tmp_path / "expert" / "experts" / "noisy" / "restorer" / "adapter_model.safetensors")
    adapted = {key.split(".lora_")[0].rsplit(".", 1)[-1] for key in weights}
    assert adapted == set(SRResNet.expert_targets)


def test_device_synthesis_degrades_each_batch_in_the_training_loop(photos, tmp_path, monkeypatch, train_script):
    """``--synthesis device``: the workers hand over clean crops and seeds, and the loop degrades
    each batch on the accelerator's device before the loss sees it."""
    from uir.data import SyntheticDegradationDataset

    degraded = []
    original = SyntheticDegradationDataset.degrade_batch

    def spy(self, batch, device):
        assert "lq" not in batch
        out = original(self, batch, device)
        degraded.append((out["lq"].shape, str(device), not torch.equal(out["lq"], out["gt"])))
        return out

    monkeypatch.setattr(SyntheticDegradationDataset, "degrade_batch", spy)
    train_script("train_restorer").main([
        "--train_data_dir", str(photos), "--output_dir", str(tmp_path / "run"), "--degradations", "noisy,hazy",
        "--max_train_steps", "2", "--train_batch_size", "2", "--resolution", "32", "--validation_steps", "0",
        "--num_validation_images", "0", "--checkpointing_steps", "0", "--synthesis", "device"])
    assert degraded == [(torch.Size([2, 3, 32, 32]), "cpu", True)] * 2
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_fit_expected_gains_measures_each_candidate_and_saves_the_table(tmp_path, train_script):
    """``train/fit_expected_gains.py``: every routed photo gets the candidates its top class
    allows (the expert's, when it has one; the classical prior's, for hazy), each gain is the
    PSNR change the candidate makes, and the table saved in the router's config is the one
    those samples give; each sample also names the photo's true class and the router's confidence,
    and is binned by confidence and, for noise, by the severity measured on the image."""
    from uir.classical import PRIORS, SEVERITY_MEASURES, measured_severities
    from uir.lora.strategies import expected_gain_table, gain_bin
    from uir.pipelines.loading import load_pipeline
    from uir.testing import tiny_restorer_pipeline

    tiny_restorer_pipeline(names=("noisy", "hazy", "rainy")).save_pretrained(tmp_path / "model")
    photos = save_sample_crops(tmp_path / "photos", 3, 40, 40)
    train_script("fit_expected_gains").main(["--model", str(tmp_path / "model"), "--train_data_dir", str(photos),
                                             "--output_dir", str(tmp_path / "out")])
    record = json.loads((tmp_path / "out" / "expected_gains.json").read_text())
    by_image = {}
    for name, known, candidate, gain, true, confidence in record["samples"]:
        by_image.setdefault(len(by_image) if candidate == "base" else len(by_image) - 1, (name, []))[1].append(candidate)
    assert len(by_image) == 3 * 3  # photos x vocabulary, none with missing pixels
    for name, candidates in by_image.values():
        expected = ["base", *(["prior"] if name in PRIORS else []), "expert", "half",
                    *(["prior-expert"] if name in PRIORS else [])]
        assert candidates == expected
    assert record["table"] == json.loads(json.dumps(expected_gain_table(record["samples"])))
    pipe = load_pipeline(str(tmp_path / "out" / "pipeline"))
    assert pipe.router.config.expected_gains == record["table"]
    from uir.evaluation import degraded_pairs
    from uir.metrics import psnr

    first = next(degraded_pairs(sorted(photos.iterdir()), pipe.router.vocabulary, seed=0, severity="random"))
    base = pipe(first.lq, weights={}, fill_missing=False, output_type="pt").images
    with torch.no_grad():
        routed = pipe.router(first.lq)
    cell = gain_bin(bool(routed.known[0]), measured_severities(routed.names[:1], first.lq)[0])
    assert record["samples"][0] == [routed.names[0], cell, "base",
                                    pytest.approx((psnr(base, first.gt) - psnr(first.lq, first.gt)).item()),
                                    first.name, pytest.approx(float(routed.confidence[0]))]
    assert {sample[4] for sample in record["samples"]} == set(pipe.router.vocabulary)
    # noise is binned by the severity measured on the image, the other classes by confidence alone
    assert all(("/" in cell) == (name in SEVERITY_MEASURES) for name, cell, *_ in record["samples"])
    assert {cell for name, cell, *_ in record["samples"] if name == "noisy"}, "some photo is called noisy"


def test_fit_expected_gains_leaves_out_what_the_detectors_restore(tmp_path, train_script):
    """A photo where the router's shadow detector finds a shadow is lifted by the pipeline, never
    given to the table: with a detector that finds one everywhere no sample is measured, with one
    that finds none every photo is."""
    from uir.testing import detector_router, tiny_restorer_pipeline

    names = ("noisy", "hazy", "shadowed")
    photos = save_sample_crops(tmp_path / "photos", 2, 40, 40)
    counts = {}
    for bias in (6.0, -6.0):
        pipe = tiny_restorer_pipeline(names=names, router=False)
        pipe.register_modules(router=detector_router("shadow_detector", bias, vocabulary=list(names)))
        pipe.save_pretrained(tmp_path / f"model{bias}")
        train_script("fit_expected_gains").main(["--model", str(tmp_path / f"model{bias}"), "--train_data_dir",
                                                 str(photos), "--output_dir", str(tmp_path / f"out{bias}")])
        record = json.loads((tmp_path / f"out{bias}" / "expected_gains.json").read_text())
        counts[bias] = sum(candidate == "base" for _, _, candidate, *_ in record["samples"])
    assert counts == {6.0: 0, -6.0: 2 * 3}


def test_fit_expected_gains_measures_split_chains_with_each_first_step_forced(tmp_path, train_script, monkeypatch):
    """With ``--split_cells``, a photo degraded by a split call's mixture (``low-light+noisy``) that
    the pipeline splits gets one sample per candidate of noise in the ``split`` bin: the PSNR change of the whole chain
    with that first step (the prior: the prior, mapped back from the clipped mean, then the
    low-light call by the table); the router's table is left as it was; a photo the pipeline does
    not split gives none."""
    from uir.classical import PRIORS, unclip_noise
    from uir.evaluation import degraded_pairs
    from uir.metrics import psnr
    from uir.models.router import RouterOutput
    from uir.testing import tiny_restorer_pipeline, tiny_router

    script = train_script("fit_expected_gains")
    names = ("noisy", "hazy", "low-light")
    table = {"noisy": {"known": {"expert": [9.0, 0.1, 30]}}, "low-light": {"known": {"expert": [5.0, 0.1, 30]}}}
    pipe = tiny_restorer_pipeline(names=names, router=False)
    pipe.register_modules(router=tiny_router([*names, "clean"], min_confidence=0.7, expected_gains=table))
    pipe.set_progress_bar_config(disable=True)
    assert script.split_chains(pipe) == {"low-light+noisy": "noisy"}
    reading = {"s": torch.tensor([[0.55, 0.05, 0.40, 0.00]])}
    monkeypatch.setattr(pipe.router, "forward", lambda images, found=None: RouterOutput.read(
        reading["s"], pipe.router.vocabulary, pipe.router.config.min_confidence))
    photos = save_sample_crops(tmp_path / "photos", 2, 40, 40)
    assert script.measured_gains(pipe, sorted(photos.iterdir()), 0, 1, 50.0)[1] == []  # asked for by --split_cells
    drawn = script.measured_gains(pipe, sorted(photos.iterdir()), 0, 1, 50.0, split_cells=True)[1]
    assert [pair.name for pair in drawn] == ["low-light+noisy"] * 2
    chains = list(degraded_pairs(sorted(photos.iterdir()), ["low-light+noisy"], seed=0, severity="random"))
    samples = script.measured_split_gains(pipe, chains, table, 50.0)
    assert [(name, cell, candidate) for name, cell, candidate, *_ in samples] == [
        ("noisy", "split", candidate) for candidate in ("base", "prior", "expert", "half", "prior-expert")] * 2
    pair = chains[1]
    first = unclip_noise(pair.lq, PRIORS["noisy"].restore(pair.lq))
    chain = pipe(first, weights={"low-light": 1.0}, fill_missing=False, output_type="pt").images
    assert samples[6][3] == pytest.approx(float(psnr(chain, pair.gt) - psnr(pair.lq, pair.gt)), abs=1e-4)
    assert samples[6][4:] == ("low-light+noisy", pytest.approx(0.95))
    assert pipe.router.config.expected_gains == table
    reading["s"] = torch.tensor([[0.90, 0.05, 0.05, 0.00]])
    assert script.measured_split_gains(pipe, chains, table, 50.0) == []


def test_fit_prior_blend_scores_each_share_and_saves_the_best_in_the_expert(tmp_path, train_script):
    """``train/fit_prior_blend.py``: each share b is scored by the mean PSNR of (1 - b) f(x) + b P(x)
    over the photos and seeds (f the expert at weight 1, P the dark channel), and the best share
    is saved in the expert, whose weights are unchanged; a share that gains less than
    ``--min_gain`` over the expert alone is not; a type without a prior is refused."""
    from uir.boundary import UsageError
    from uir.classical import PRIORS
    from uir.evaluation import degraded_pairs
    from uir.metrics import psnr
    from uir.pipelines.loading import load_pipeline
    from uir.testing import tiny_restorer_pipeline

    tiny_restorer_pipeline(names=("noisy", "hazy"), router=False).save_pretrained(tmp_path / "model")
    photos = save_sample_crops(tmp_path / "photos", 2, 40, 40)
    train_script("fit_prior_blend").main(["--model", str(tmp_path / "model"), "--degradation", "hazy",
                                          "--train_data_dir", str(photos), "--seeds", "0,1", "--shares", "0.5,1",
                                          "--min_gain", "-100", "--output_dir", str(tmp_path / "out")])
    record = json.loads((tmp_path / "out" / "prior_blend.json").read_text())
    model = load_pipeline(str(tmp_path / "model"))
    expected = {}
    for share in (0.0, 0.5, 1.0):
        scores = []
        for seed in (0, 1):
            for pair in degraded_pairs(sorted(photos.iterdir()), ["hazy"], seed=seed):
                expert = model(pair.lq, weights={"hazy": 1.0}, output_type="pt").images
                scores.append(float(psnr((1 - share) * expert + share * PRIORS["hazy"].restore(pair.lq).clamp(0, 1), pair.gt)))
        expected[str(share)] = sum(scores) / len(scores)
    assert record["mean_psnr"] == pytest.approx(expected, abs=1e-4)
    best = max(expected, key=expected.get)
    assert record["share"] == float(best)
    fitted = load_pipeline(str(tmp_path / "out" / "pipeline"))
    assert [e.prior_blend for e in fitted.expert_list.experts] == [0.0, float(best)]
    for before, after in zip(model.expert_list.experts, fitted.expert_list.experts):
        state = before.components["restorer"].state_dict
        assert all(torch.equal(state[k], after.components["restorer"].state_dict[k]) for k in state)
    train_script("fit_prior_blend").main(["--model", str(tmp_path / "model"), "--degradation", "hazy",
                                          "--train_data_dir", str(photos), "--seeds", "0", "--shares", "1",
                                          "--min_gain", "100", "--output_dir", str(tmp_path / "none")])
    assert json.loads((tmp_path / "none" / "prior_blend.json").read_text())["share"] == 0.0
    assert [e.prior_blend for e in load_pipeline(str(tmp_path / "none" / "pipeline")).expert_list.experts] == [0.0, 0.0]
    with pytest.raises(UsageError, match="'snowy' has no classical prior"):
        train_script("fit_prior_blend").main(["--model", str(tmp_path / "model"), "--degradation", "snowy",
                                              "--train_data_dir", str(photos), "--output_dir", str(tmp_path / "no")])


def test_fit_prior_blend_toward_the_input_fits_the_input_share_after_the_prior_share(tmp_path, train_script):
    """``--toward input``: each share a is scored by the mean PSNR of (1 - a) y + a x, y what the
    pipeline returned before ((1 - b) f(x) + b P(x), the expert's prior share b kept), and the
    best is saved as ``input_blend`` beside the unchanged ``prior_blend``; the saved pipeline then
    returns that blend. A type without a prior can be fitted toward its input."""
    from uir.evaluation import degraded_pairs
    from uir.lora import PRIOR_BLEND_KEY
    from uir.metrics import psnr
    from uir.pipelines.loading import load_pipeline
    from uir.testing import tiny_restorer_pipeline

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy", "snowy"), router=False)
    pipe.experts.experts[1].extra[PRIOR_BLEND_KEY] = 0.5
    pipe.save_pretrained(tmp_path / "model")
    photos = save_sample_crops(tmp_path / "photos", 2, 40, 40)
    common = ["--model", str(tmp_path / "model"), "--train_data_dir", str(photos), "--toward", "input",
              "--shares", "0.5,1", "--min_gain", "-100"]
    train_script("fit_prior_blend").main([*common, "--degradation", "hazy", "--seeds", "0,1",
                                          "--output_dir", str(tmp_path / "out")])
    record = json.loads((tmp_path / "out" / "input_blend.json").read_text())
    model = load_pipeline(str(tmp_path / "model"))
    expected, pairs = {}, [pair for seed in (0, 1) for pair in degraded_pairs(sorted(photos.iterdir()), ["hazy"], seed=seed)]
    before = [model(pair.lq, weights={"hazy": 1.0}, output_type="pt").images for pair in pairs]
    for share in (0.0, 0.5, 1.0):
        scores = [float(psnr((1 - share) * y + share * pair.lq, pair.gt)) for y, pair in zip(before, pairs)]
        expected[str(share)] = sum(scores) / len(scores)
    assert record["mean_psnr"] == pytest.approx(expected, abs=1e-4) and len(set(expected.values())) == 3
    best = float(max(expected, key=expected.get))
    fitted = load_pipeline(str(tmp_path / "out" / "pipeline"))
    assert [(e.prior_blend, e.input_blend) for e in fitted.expert_list.experts] == [(0.0, 0.0), (0.5, best), (0.0, 0.0)]
    after = fitted(pairs[0].lq, weights={"hazy": 1.0}, output_type="pt").images
    assert torch.allclose(after, (1 - best) * before[0] + best * pairs[0].lq, atol=1e-6)
    train_script("fit_prior_blend").main([*common, "--degradation", "snowy", "--seeds", "0",
                                          "--output_dir", str(tmp_path / "snowy")])
    assert json.loads((tmp_path / "snowy" / "input_blend.json").read_text())["toward"] == "input"


def test_seed_summary_gives_mean_and_sd_and_a_per_seed_mean_over_types(tmp_path, train_script, capsys):
    """train/summarize_seeds.py: the statistics module's mean and sample sd over the seeds; a
    run without a ``mean`` row gets each seed's mean over its degradations, one with it keeps it."""
    import json
    import statistics

    summarize = train_script("summarize_seeds")
    runs = {"a-seed0": {"noisy": 20.0, "hazy": 10.0}, "a-seed1": {"noisy": 22.0, "hazy": 13.0},
            "b-seed0": {"noisy": 30.0, "mean": 99.0}}
    for run, psnr in runs.items():
        (tmp_path / run).mkdir()
        rows = [{"level": "moderate", "degradation": k, "psnr_out": v} for k, v in psnr.items()]
        (tmp_path / run / "eval.json").write_text(json.dumps(rows))
    scores = summarize.collect(tmp_path)
    assert scores["a"][("moderate", "noisy")] == [20.0, 22.0]
    assert scores["a"][("moderate", "mean")] == [15.0, 17.5]
    assert scores["b"] == {("moderate", "noisy"): [30.0], ("moderate", "mean"): [99.0]}
    summarize.main([str(tmp_path), "--arms", "a"])
    line = [x for x in capsys.readouterr().out.splitlines() if " mean " in x][0]
    assert line.split()[-3:] == [f"{statistics.mean([15.0, 17.5]):.2f}", "+-", f"{statistics.stdev([15.0, 17.5]):.2f}"]


def test_split_photos_links_the_three_parts_of_the_validation_split(tmp_path, train_script, capsys):
    """``train/split_photos.py``: train, validation and held-out folders of links to exactly the
    photos of :func:`uir.data.validation_split`, none in two parts; a second run changes nothing."""
    from uir.data import validation_split

    photos = save_sample_crops(tmp_path / "photos", 12, 16, 16, step=(4, 6))
    script = train_script("split_photos")
    expected = dict(zip(("train", "validation", "held-out"), validation_split(photos)))
    assert all(expected.values()), "each part should hold photos"

    def split_and_read() -> dict:
        script.main(["--data", str(photos), "--output_dir", str(tmp_path / "split")])
        return {name: sorted(p.resolve() for p in (tmp_path / "split" / name).iterdir()) for name in expected}

    linked = split_and_read()
    assert linked == {name: sorted(p.resolve() for p in files) for name, files in expected.items()}
    assert sum(map(len, linked.values())) == len(set().union(*linked.values()))
    assert split_and_read() == linked
    assert "validation: " in capsys.readouterr().out


@pytest.mark.parametrize("script, target, share, options", [
    ("train_drop_detector", "raindrop", "drop_share", ["--resolution", "64", "--drop_share", "0.02"]),
    ("train_shadow_detector", "shadowed", "shadow_share", ["--shadow_share", "0.1"]),
])
def test_detector_trains_into_a_copy_of_the_router(photos, tmp_path, train_script, script, target, share, options):
    """``train_drop_detector.py`` and ``train_shadow_detector.py`` (on whole photos): the detector
    learns (its loss falls) and is saved inside a copy of the given router, which then loads with
    it and its share; the router's own weights are untouched, and no other detector is added."""
    from uir.testing import TINY_DETECTOR, tiny_router

    attribute = script.removeprefix("train_")
    tiny_router(seed=0).save_pretrained(tmp_path / "router")
    config = tmp_path / "detector.json"
    config.write_text(json.dumps(TINY_DETECTOR))
    train_script(script).main([
        "--router", str(tmp_path / "router"), "--config", str(config), "--train_data_dir", str(photos),
        "--output_dir", str(tmp_path / "run"), "--degradations", f"noisy,{target}", "--max_train_steps", "12",
        "--train_batch_size", "4", "--validation_steps", "0", "--num_validation_images", "0",
        "--checkpointing_steps", "0", "--learning_rate", "5e-3", *options])
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    saved = DegradationRouter.from_pretrained(tmp_path / "run" / "router")
    assert saved.config[share] == float(options[-1]) and getattr(saved, attribute).net.intro.out_channels == 4
    original = load_file(tmp_path / "router" / "diffusion_pytorch_model.safetensors")
    state = load_file(tmp_path / "run" / "router" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(state[k], v) for k, v in original.items())
    assert {k.split(".")[0] for k in state if k.split(".")[0].endswith("_detector")} == {attribute}
    with pytest.raises(SystemExit):  # refused before training, not when the router is saved
        train_script(script).parse_args(["--router", str(tmp_path / "router"), "--output_dir", str(tmp_path / "bad"),
                                         f"--{share}", "0"])


def test_drop_detector_trains_further_from_the_one_the_router_holds(photos, tmp_path, train_script):
    """``--init_detector`` starts from the detector in ``--router``: one step at a learning rate
    of ~0 saves it back unchanged, where a new detector would differ everywhere. Without a
    detector to start from, or with ``--config``, the script refuses."""
    from uir.testing import tiny_router

    router = tiny_router(seed=0)
    router.register_to_config(drop_detector_config={"width": 4, "encoder_blocks": [1], "middle_blocks": 1,
                                                    "decoder_blocks": [1]}, drop_share=0.02)
    router.drop_detector = DropDetector(**router.config.drop_detector_config)
    with torch.no_grad():  # weights no new detector could draw
        for parameter in router.drop_detector.parameters():
            parameter.add_(0.5)
    router.save_pretrained(tmp_path / "router")
    tiny_router(seed=0).save_pretrained(tmp_path / "plain")
    script = train_script("train_drop_detector")
    options = ["--train_data_dir", str(photos), "--degradations", "noisy,raindrop", "--max_train_steps", "1",
               "--train_batch_size", "2", "--resolution", "32", "--validation_steps", "0",
               "--num_validation_images", "0", "--checkpointing_steps", "0", "--learning_rate", "1e-30"]
    script.main(["--router", str(tmp_path / "router"), "--init_detector", "--output_dir", str(tmp_path / "run"),
                 *options])
    before = {k: v for k, v in load_file(tmp_path / "router" / "diffusion_pytorch_model.safetensors").items()
              if k.startswith("drop_detector.")}
    after = load_file(tmp_path / "run" / "router" / "diffusion_pytorch_model.safetensors")
    assert before and all(torch.allclose(after[k], v, atol=1e-6) for k, v in before.items())
    with pytest.raises(ValueError, match="holds no drop detector"):
        script.main(["--router", str(tmp_path / "plain"), "--init_detector", "--output_dir", str(tmp_path / "bad"),
                     *options])
    with pytest.raises(SystemExit):
        script.parse_args(["--router", str(tmp_path / "router"), "--init_detector", "--config", "x.json",
                           "--output_dir", str(tmp_path / "bad")])
