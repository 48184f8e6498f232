"""Diffusion-training-enhanced IR (paper 004): time conditioning, diffusion, t_mat, GEF, TIT, MoE."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from uir.boundary import UsageError
from uir.dte import (
    DiffusionProcess,
    GEFObjective,
    TimeConditionedRestorer,
    generation_sensitive_layers,
    importance_regularizer,
    incremental_stages,
    layer_decay,
    match_timestep,
    orthogonality_loss,
    parameter_importance,
    per_sample_gradients,
    read_out,
    restore,
    time_sequential_order,
    to_diffusion_space,
    w_decay,
)
from uir.models import NAFNet
from uir.lira import LIRANetwork
from uir.testing import naive_orthogonality_loss, save_sample_crops

from .conftest import load_train_script


train_dte = load_train_script("train_dte")


def tiny(seed=0, dtype=torch.float32, moe=0) -> TimeConditionedRestorer:
    torch.manual_seed(seed)
    backbone = NAFNet(width=4, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,))
    model = TimeConditionedRestorer.wrap(backbone, embedding_dim=8)
    if moe:
        model.add_moe_adapters(moe, hidden=2)
    with torch.no_grad():  # a "trained" network: no parameter left at its zero init
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype)


def images(n=3, size=8, seed=1, dtype=torch.float32):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- time conditioning and MoE adapters ---------------------------------------------------------
def test_wrapping_and_adding_moe_adapters_leave_a_trained_network_unchanged():
    torch.manual_seed(0)
    backbone = NAFNet(width=4, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,))
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = images()
    model = TimeConditionedRestorer.wrap(backbone, embedding_dim=8)
    assert torch.equal(model(x, 3), backbone(x))  # zero-initialised modulation
    with torch.no_grad():
        for p in model.modulations.parameters():
            p.add_(0.1 * torch.randn_like(p))
    before = model(x, 3)
    assert not torch.allclose(model(x, 3), model(x, 7))  # the timestep now matters
    model.add_moe_adapters(10, hidden=2)
    assert len(model.moe) == len(model.block_names) and model.moe[0].num_experts == 10
    assert torch.equal(model(x, 3), before)  # zero-initialised output scale
    # one training step moves the scale off zero, and the adapters then change the output
    optimizer = torch.optim.SGD(model.moe.parameters(), lr=0.5)
    F.l1_loss(model(x, 3), x.flip(0)).backward()
    optimizer.step()
    assert not torch.allclose(model(x, 3), before)


def _same_weights_and_outputs(a, b, *inputs, **kwargs):
    """The round trip is exact in the weights; the outputs agree to float precision, not bit for
    bit: tensors read back from safetensors need not be 64-byte aligned, and with one OpenMP
    thread the convolution kernels then sum in another order (6e-8 apart under autograd)."""
    ours, theirs = a.state_dict(), b.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    torch.testing.assert_close(a(*inputs, **kwargs), b(*inputs, **kwargs), rtol=0, atol=1e-6)


def test_round_trip_is_exact_with_adapters_and_another_backbone(tmp_path):
    model = tiny(moe=3)
    model.save_pretrained(tmp_path / "nafnet")
    loaded = TimeConditionedRestorer.from_pretrained(tmp_path / "nafnet")
    x = images()
    _same_weights_and_outputs(loaded, model, x, 4)
    assert loaded.config.moe_experts == 3
    # LIRA: explicit blocks, a backbone keyword (task) passed through
    lira = LIRANetwork(channels=8, num_experts=2, num_blocks=2)
    with torch.no_grad():  # its output conv starts at zero: make the output depend on the features
        for p in lira.parameters():
            p.add_(0.1 * torch.randn_like(p))
    wrapped = TimeConditionedRestorer.wrap(lira, embedding_dim=8)  # its time_condition_blocks
    x = images(2, 16)
    assert torch.equal(wrapped(x, 5, task=0), lira(x, task=0))
    with torch.no_grad():
        wrapped.modulations[0].bias.fill_(0.3)
    wrapped.save_pretrained(tmp_path / "lira")
    again = TimeConditionedRestorer.from_pretrained(tmp_path / "lira")
    _same_weights_and_outputs(again, wrapped, x, 5, task=0)
    assert not torch.allclose(again(x, 5, task=0), lira(x, task=0))


def test_bad_inputs_are_named():
    model = tiny()
    with pytest.raises(ValueError, match="0..50"):
        model(images(), 51)
    with pytest.raises(ValueError, match="shape"):
        model(images(3), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="no modules"):
        TimeConditionedRestorer(backbone_config={"width": 4}, blocks=["nowhere"])
    with pytest.raises(ValueError, match="already"):
        tiny(moe=2).add_moe_adapters(2)


def test_depth_layers_cover_every_parameter_in_forward_order():
    model = tiny(moe=2)
    layers = model.depth_layers()
    names = [n for layer in layers for n in layer]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert layers[0][0].startswith("time_embedding") and "backbone.intro.weight" in layers[0]
    assert layers[-1] == ["backbone.ending.weight", "backbone.ending.bias"]
    # the first block's modulation sits right after that block's own layers
    first_block = model.block_names[0]
    position = next(i for i, layer in enumerate(layers) if "modulations.0.weight" in layer)
    assert f"backbone.{first_block}.beta" in layers[position]


# --- diffusion and timestep matching ---------------------------------------------------------------
def test_reverse_step_matches_diffusers_ddpm_scheduler():
    process = DiffusionProcess()
    model = tiny()
    x_t = to_diffusion_space(images())
    oracle = DDPMScheduler(num_train_timesteps=50, beta_start=1e-4 * 20, beta_end=0.02 * 20, clip_sample=False)
    for t in (50, 17, 1):
        eps = model(x_t, t)
        expected = oracle.step(eps, t - 1, x_t, generator=torch.Generator().manual_seed(5)).prev_sample
        got = process.reverse_step(model, x_t, t, torch.Generator().manual_seed(5))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    noise = torch.randn_like(x_t)
    t = torch.tensor([1, 25, 50])
    abar = oracle.alphas_cumprod[t - 1][:, None, None, None]
    torch.testing.assert_close(process.add_noise(x_t, noise, t), abar.sqrt() * x_t + (1 - abar).sqrt() * noise)
    additive = DiffusionProcess(noise_model="additive")
    torch.testing.assert_close(additive.add_noise(x_t, noise, t), x_t + (1 - abar).sqrt() * noise)
    assert process.alphas_cumprod[-1] < 1e-3  # rescaled betas: x_T is nearly pure noise
    with pytest.raises(ValueError, match="1..50"):
        process.add_noise(x_t, noise, torch.tensor([0, 1, 2]))


class Oracle(torch.nn.Module):
    """A "network" that outputs its prediction target exactly: eps or x0 of a known pair."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, x, t):
        return self.output


@pytest.mark.parametrize("noise_model", ["ddpm", "additive"])
def test_both_prediction_types_read_out_the_clean_image_and_the_noise(noise_model):
    x0 = to_diffusion_space(images(3))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([1, 2, 30])
    for prediction_type, target in (("epsilon", noise), ("sample", x0)):
        process = DiffusionProcess(noise_model=noise_model, prediction_type=prediction_type)
        x_t = process.add_noise(x0, noise, t)
        # the x0-hat read-out of an exact eps prediction, and a residual denoiser's output, are x0
        torch.testing.assert_close(process.estimate_clean(target, x_t, t), x0, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(process.estimate_noise(target, x_t, t), noise, rtol=1e-4, atol=1e-4)
        assert process.prediction_loss(target, x0, noise, t).abs().max() == 0
        torch.testing.assert_close(read_out(Oracle(target), process, x_t, t), x0, rtol=1e-4, atol=1e-4)
    eps_model = TimeConditionedRestorer.wrap(NAFNet(width=4, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,)),
                                             embedding_dim=8, prediction_type="epsilon", noise_model=noise_model)
    assert DiffusionProcess.for_model(eps_model).noise_model == noise_model
    with pytest.raises(ValueError, match="t = 0"):
        restore(eps_model, images(1), 0)
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionProcess(prediction_type="velocity")


def test_a_sample_predicting_model_steps_like_diffusers_with_prediction_type_sample():
    model = tiny()  # prediction_type "sample": its output is x0
    process = DiffusionProcess.for_model(model)
    assert process.prediction_type == "sample"
    x_t = to_diffusion_space(images())
    oracle = DDPMScheduler(num_train_timesteps=50, beta_start=1e-4 * 20, beta_end=0.02 * 20, clip_sample=False,
                           prediction_type="sample")
    for t in (50, 17, 2):
        expected = oracle.step(model(x_t, t), t - 1, x_t, generator=torch.Generator().manual_seed(5)).prev_sample
        got = process.reverse_step(model, x_t, t, torch.Generator().manual_seed(5))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_t_mat_search_is_deterministic_and_is_the_argmin():
    model, process = tiny(), DiffusionProcess()
    clean = images(4, 8)
    degraded = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    first = match_timestep(model, process, degraded, clean, batch_size=3)
    again = match_timestep(model, process, degraded, clean, batch_size=4)
    assert first.t_mat == again.t_mat and first.errors == pytest.approx(again.errors, rel=1e-6)  # batching: float rounding only
    assert first.t_mat == 1 + min(range(50), key=first.errors.__getitem__)
    noisy_a = match_timestep(model, process, degraded, clean, torch.Generator().manual_seed(7))
    noisy_b = match_timestep(model, process, degraded, clean, torch.Generator().manual_seed(7))
    assert noisy_a == noisy_b
    # one step at t changes x by exactly the scheduler's posterior mean minus x
    x, y = to_diffusion_space(degraded), to_diffusion_space(clean)
    step = process.reverse_step(model, x, 6) - x
    assert first.errors[5] == pytest.approx((step - (y - x)).pow(2).mean().item(), rel=1e-5)


# --- GEF regularisers -------------------------------------------------------------------------------
def test_l_reg_matches_its_closed_form_value_and_gradient():
    model = tiny(dtype=torch.float64)
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(0)
    reference = {n: p.detach() + 0.01 * torch.randn(p.shape, generator=generator, dtype=p.dtype) for n, p in params.items()}
    importance = {n: torch.rand(p.shape, generator=generator, dtype=p.dtype) for n, p in params.items()}
    layers = model.depth_layers()
    weights = layer_decay(layers, lam=0.2, a=0.05)
    assert weights[layers[0][0]] == 0.2 and weights[layers[3][0]] == pytest.approx(0.2 * math.exp(-0.15))
    value = importance_regularizer(model, reference, importance, weights)
    value.backward()
    expected = 0.0
    for n, p in params.items():
        delta, i, w = p.detach() - reference[n], importance[n], weights[n]
        expected += w * (i * delta.abs() + i**2 * delta**2).sum()
        torch.testing.assert_close(p.grad, w * (i * delta.sign() + 2 * i**2 * delta))
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)


def test_l_orthog_and_its_gradient_match_a_naive_autograd_reference():
    model = tiny(dtype=torch.float64)
    process = DiffusionProcess()
    layers = model.depth_layers()
    names = generation_sensitive_layers(layers, t_mat=6, a=0.05)
    assert len(names) < len(list(model.parameters()))
    x_t = to_diffusion_space(images(2, dtype=torch.float64))
    t_gen, noise = torch.tensor([3, 40]), torch.randn_like(x_t)
    lq, gt = images(3, seed=4, dtype=torch.float64), images(3, seed=5, dtype=torch.float64)
    t_rec = torch.full((3,), 6)

    def gen_sample(forward, x, t, eps):
        return process.prediction_loss(forward(x, t), None, eps, t).sum()

    def rec_sample(forward, x, t, y):
        return F.l1_loss((forward(x, t) + 1) / 2, y)

    fast = orthogonality_loss(per_sample_gradients(model, names, gen_sample, x_t, t_gen, noise),
                              per_sample_gradients(model, names, rec_sample, to_diffusion_space(lq), t_rec, gt))
    fast_grads = torch.autograd.grad(fast, list(model.parameters()), allow_unused=True)
    forward = lambda x, t: model(x, t)  # noqa: E731
    slow = naive_orthogonality_loss(
        model, names,
        [gen_sample(forward, x_t[i : i + 1], t_gen[i : i + 1], noise[i : i + 1]) for i in range(2)],
        [rec_sample(forward, to_diffusion_space(lq[i : i + 1]), t_rec[i : i + 1], gt[i : i + 1]) for i in range(3)])
    slow_grads = torch.autograd.grad(slow, list(model.parameters()), allow_unused=True)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    compared = 0
    for a, b in zip(fast_grads, slow_grads):
        if b is None:
            assert a is None or not a.abs().any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
        compared += int(b.abs().sum() > 0)
    assert compared > len(names) // 2  # the loss's gradient reaches the parameters
    with pytest.raises(ValueError, match="form"):
        orthogonality_loss(torch.ones(1, 3), torch.ones(1, 3), form="sideways")
    orthogonal = orthogonality_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), form="orthogonal")
    aligned = orthogonality_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]]), form="eq8")
    assert orthogonal.item() == pytest.approx(1.0) and aligned.item() == pytest.approx(1.0)  # |s|+|d| and (1-s)+|d|, d = 1


def test_orthogonality_readings_weights_and_term_gradient_norms():
    """Issue 31's readings of L_orthog: the authors' form is 1 - cos of the mean (batch)
    gradients with no d term; detached, it is logged and trains nothing; its weight scales it;
    and each term's gradient norm is that of an autograd call on the term alone."""
    g = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    r = torch.tensor([[0.0, 3.0], [2.0, 1.0]])
    mean_g, mean_r = g.mean(0), r.mean(0)
    expected = 1 - mean_g @ mean_r / (mean_g.norm() * mean_r.norm())
    assert orthogonality_loss(g, r, form="authors").item() == pytest.approx(expected.item())
    model, process = tiny(), DiffusionProcess()
    lq, gt = images(4), images(4, seed=3)
    terms = {}
    for key, options in {"trained": {}, "weighted": {"orthogonality_weight": 0.1},
                         "detached": {"detach_orthogonality": True}}.items():
        gef = GEFObjective(model, process, generative_fraction=0.25, orthogonality="authors", **options)
        torch.manual_seed(0)  # the same generative noise for each
        terms[key] = gef(lq, gt, t_mat=10)
    assert terms["weighted"]["orthog"].item() == pytest.approx(0.1 * terms["trained"]["orthog"].item(), rel=1e-5)
    assert terms["detached"]["orthog"].item() == pytest.approx(terms["trained"]["orthog"].item(), rel=1e-5)
    assert not terms["detached"]["orthog"].requires_grad and terms["trained"]["orthog"].requires_grad
    norms = gef.term_gradient_norms(terms["detached"])
    assert set(norms) == {"grad_norm/content", "grad_norm/generative", "grad_norm/orthog"}
    assert norms["grad_norm/orthog"] == 0.0
    params = [p for p in model.parameters() if p.requires_grad]
    content = torch.autograd.grad(terms["detached"]["content"], params, retain_graph=True, allow_unused=True)
    assert norms["grad_norm/content"] == pytest.approx(
        torch.sqrt(sum((c ** 2).sum() for c in content if c is not None)).item(), rel=1e-5)
    terms["detached"]["loss"].backward()  # the graph survived the norms


def test_generative_updates_reach_only_the_generation_sensitive_layers():
    model, process = tiny(), DiffusionProcess()
    assert w_decay(0) == 1 and w_decay(20) == pytest.approx(math.exp(-1))
    layers = model.depth_layers()
    for t_mat in (1, 30):
        shallow = set(generation_sensitive_layers(layers, t_mat))
        assert len([l for l in layers if set(l) <= shallow]) == math.ceil(math.exp(-0.05 * t_mat) * len(layers))
    gef = GEFObjective(model, process, generative_fraction=0.25, orthogonality=None)
    assert gef.generative_count(8) == 2 and gef.generative_count(3) == 1
    model.zero_grad()
    gef(images(4), images(4, seed=3), t_mat=30)["generative"].backward()
    shallow = set(generation_sensitive_layers(layers, 30))
    for name, p in model.named_parameters():
        if name not in shallow:
            assert p.grad is None or not p.grad.any(), name
    assert any(p.grad is not None and p.grad.any() for n, p in model.named_parameters() if n in shallow)
    with pytest.raises(ValueError, match="generative_fraction"):
        GEFObjective(model, process, generative_fraction=0.0, orthogonality="eq8")


def test_the_authors_schedule_makes_whole_iterations_generative_and_regularises_only_those():
    model = tiny()
    process = DiffusionProcess.for_model(model)
    params = dict(model.named_parameters())
    reference = {n: p.detach() + 0.01 for n, p in params.items()}
    importance = {n: torch.ones_like(p) for n, p in params.items()}
    lq, gt = images(4), images(4, seed=3)
    common = dict(reference=reference, importance=importance, generative_fraction=0.5, orthogonality=None)
    gef = GEFObjective(model, process, schedule="iterations", generator=torch.Generator().manual_seed(0), **common)
    draws = torch.Generator().manual_seed(0)
    expected = [torch.rand((), generator=draws).item() < 0.5 for _ in range(8)]
    assert any(expected) and not all(expected)
    with torch.no_grad():
        content = F.l1_loss((model(to_diffusion_space(lq), 5) + 1) / 2, gt)  # the whole batch, every iteration
    for generative in expected:
        terms = gef(lq, gt, t_mat=5)
        assert ("generative" in terms) == ("reg" in terms) == generative
        torch.testing.assert_close(terms["content"].detach(), content)
    split = GEFObjective(model, process, **common)  # our reading: a share of every batch, L_reg at every step
    assert all({"generative", "reg"} <= set(split(lq, gt, t_mat=5)) for _ in range(3))
    with pytest.raises(ValueError, match="schedule"):
        GEFObjective(model, process, schedule="sometimes")


def test_time_sequential_order_and_stages():
    t_mat = {"noisy": 4, "hazy": 47, "jpeg": 12, "rainy": 12}
    order = time_sequential_order(t_mat)
    assert order == ["hazy", "jpeg", "rainy", "noisy"]
    assert time_sequential_order(t_mat, descending=False) == ["noisy", "jpeg", "rainy", "hazy"]
    assert incremental_stages(order) == [["hazy"], ["hazy", "jpeg"], ["hazy", "jpeg", "rainy"], order]
    assert incremental_stages(order, cumulative=False) == [["hazy"], ["jpeg"], ["rainy"], ["noisy"]]


# --- the script ---------------------------------------------------------------------------------------
def reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_script_runs_every_stage_and_resumes_tit(tmp_path, monkeypatch):
    photos = save_sample_crops(tmp_path / "photos", 4, 64, 80, step=(30, 20))
    common = ["--train_batch_size", "4", "--resolution", "32", "--checkpointing_steps", "2",
              "--validation_steps", "0", "--train_data_dir", str(photos)]
    pre, t_json = tmp_path / "pre", tmp_path / "t_mat.json"
    kinds = "noisy,hazy,low-light"
    try:
        train_dte.main(["pretrain", "--output_dir", str(pre), "--width", "4", "--max_train_steps", "2",
                        "--importance_batches", "1", *common])
        reset_accelerate()
        train_dte.main(["pretrain", "--backbone", "lira", "--noise_model", "additive", "--prediction_type", "epsilon",
                        "--output_dir",
                        str(tmp_path / "lira"), "--width", "8", "--max_train_steps", "1", "--importance_batches", "1",
                        *common])
        reset_accelerate()
        table = train_dte.run_match(train_dte.parse_args(
            ["match", "--pretrained", str(pre), "--output", str(t_json), "--num_images", "2", "--resolution", "32",
             "--degradations", kinds, "--train_data_dir", str(photos)]))
        assert set(table) == set(kinds.split(",")) and all(1 <= t <= 50 for t in table.values())
        train_dte.main(["finetune", "--pretrained", str(pre), "--t_mat", str(t_json), "--output_dir",
                        str(tmp_path / "gef"), "--max_train_steps", "2", "--log_term_gradients", "2", *common])
        logged = [json.loads(line) for line in (tmp_path / "gef" / "logs" / "metrics.jsonl").read_text().splitlines()]
        assert [("grad_norm/content" in row, "term/orthog" in row) for row in logged] == [(True, True), (False, True)]
        reset_accelerate()
        unified = ["unified", "--pretrained", str(pre), "--t_mat", str(t_json), "--output_dir", str(tmp_path / "tit"),
                   "--degradations", kinds, "--steps_per_stage", "2", "--moe_experts", "2",
                   "--orthogonality", "none", "--generative_schedule", "iterations", *common]
        train_dte.main(unified)
        reset_accelerate()
        first = TimeConditionedRestorer.from_pretrained(tmp_path / "tit" / "model")
        # a rerun skips the finished stages and ends with the same weights
        train_dte.main(unified)
        reset_accelerate()
        stage_tasks, fit = [], train_dte.fit
        monkeypatch.setattr(train_dte, "fit", lambda *a, **k: stage_tasks.append(a[4]) or fit(*a, **k))
        new_only = [*unified, "--stage_tasks", "new", "--ascending", "--steps_per_stage", "1"]
        new_only[new_only.index("--output_dir") + 1] = str(tmp_path / "tit-new")
        train_dte.main(new_only)
    finally:
        reset_accelerate()
    importance = pre / train_dte.IMPORTANCE_FILE
    assert importance.is_file()
    lira, process, lira_importance = train_dte.pretrained_parts(tmp_path / "lira")
    assert type(lira.backbone).__name__ == "LIRANetwork" and process.noise_model == "additive"
    assert process.prediction_type == "epsilon" and train_dte.pretrained_parts(pre)[1].prediction_type == "sample"
    assert set(lira_importance) == {n for n, _ in lira.named_parameters()}
    order = time_sequential_order(table)
    assert stage_tasks == [[name] for name in time_sequential_order(table, descending=False)]
    assert sorted(p.name for p in (tmp_path / "tit").glob("stage-*")) == ["stage-00", "stage-01", "stage-02"]
    metrics = [json.loads(line) for line in (tmp_path / "tit" / "stage-00" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    again = TimeConditionedRestorer.from_pretrained(tmp_path / "tit" / "model")
    assert again.config.moe_experts == 2 and order[0] in table
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    rows = train_dte.run_evaluate(train_dte.parse_args(
        ["evaluate", "--model", str(tmp_path / "gef" / "model"), "--t_mat", str(t_json), "--degradations", "noisy",
         "--severities", "moderate,severe", "--data", str(photos)]))
    levels = {r["level"]: r for r in rows if r["degradation"] == "noisy"}
    assert levels["moderate"]["psnr_in"] > levels["severe"]["psnr_in"]  # sigma 25 vs 50
    # the final checkpoint's weights put into the pre-trained model score the same
    from_checkpoint = train_dte.run_evaluate(train_dte.parse_args(
        ["evaluate", "--model", str(pre / "model"), "--checkpoint", str(tmp_path / "gef" / "checkpoint-2"),
         "--t_mat", str(t_json), "--degradations", "noisy", "--severities", "moderate,severe", "--data", str(photos)]))
    assert from_checkpoint == rows
    evaluate_gef = ["evaluate", "--t_mat", str(t_json), "--degradations", "noisy", "--data", str(photos)]
    with pytest.raises(UsageError, match="--checkpoint .* no state.json"):
        train_dte.run_evaluate(train_dte.parse_args([*evaluate_gef, "--model", str(pre / "model"),
                                                     "--checkpoint", str(tmp_path / "gef")]))
    with pytest.raises(SystemExit, match="another architecture"):  # the MoE-adapted stages hold more weights
        train_dte.run_evaluate(train_dte.parse_args([*evaluate_gef, "--model", str(pre / "model"), "--checkpoint",
                                                     str(tmp_path / "tit" / "stage-00" / "checkpoint-2")]))
    with pytest.raises(SystemExit, match="restores nothing at t = 0"):  # eps read-out at t = 0 is the input
        train_dte.run_evaluate(train_dte.parse_args([*evaluate_gef[:1], "--t_mat", "none", "--degradations", "noisy",
                                                     "--data", str(photos),
                                                     "--model", str(tmp_path / "lira" / "model")]))
    with pytest.raises(SystemExit, match="no t_mat for"):
        train_dte.load_t_mat(str(t_json), ["snowy"])
    with pytest.raises(SystemExit, match="not a saved model"):
        train_dte.load_model(tmp_path)


def test_parameter_importance_is_the_mean_absolute_gradient_by_hand():
    """Alg. 6: I_k = mean over batches of |dL/dtheta_k|; two batches whose gradients have
    opposite signs tell absolute from signed."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    batches = iter([torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[-3.0, 1.0, 1.0]])])
    inputs = [torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[-3.0, 1.0, 1.0]])]
    importance = parameter_importance(model, lambda: model(next(batches)).sum(), num_batches=2)
    by_hand = (inputs[0].abs() + inputs[1].abs()) / 2  # d(w.x)/dw = x
    torch.testing.assert_close(importance["weight"], by_hand)
    assert not torch.allclose(importance["weight"], (inputs[0] + inputs[1]).abs() / 2)


def test_moe_router_reads_the_timestep_prompt():
    """The MoE adapter's expert weights are softmax(W [pool(h), emb(t)]): they move with t."""
    from uir.dte.moe import TimePromptMoE

    torch.manual_seed(0)
    moe = TimePromptMoE(channels=4, embedding_dim=6, num_experts=3)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 4, 8, 8, generator=g)
    e1, e2 = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    by_hand = moe.router(torch.cat([h.mean(dim=(2, 3)), e1], 1)).softmax(1)
    torch.testing.assert_close(moe.routing(h, e1), by_hand)
    assert not torch.allclose(moe.routing(h, e1), moe.routing(h, e2))
    with torch.no_grad():
        moe.scale.fill_(1.0)
    assert not torch.allclose(moe(h, e1), moe(h, e2)), "the output ignores t"


@pytest.mark.parametrize("stage", [["pretrain", "--output_dir", "out"],
                                   ["match", "--pretrained", "pre", "--output", "t.json"]])
def test_a_missing_photo_folder_is_a_usage_error_before_any_work(stage, tmp_path, capsys, monkeypatch):
    """Stages with only some of the data options (here ``--train_data_dir``) get the same checks."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train_dte.main([*stage, "--train_data_dir", "/no/such/photos"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith("error: --train_data_dir: folder /no/such/photos does not exist")
    assert not any(tmp_path.iterdir())
