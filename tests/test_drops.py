"""Raindrops found and cleared: the drops' alpha against the synthesis, the detector's training
data, the router's raindrop call from its detector, and the pipeline clearing what it finds."""

from functools import partial

import pytest
import torch

import uir.degradations as D
from uir.commands.restore import describe_restoration
from uir.data import DropMaskDataset
from uir.degradations.masks import harmonic_fill
from uir.degradations.weather import RAINDROP_CLASS, raindrop_alpha, raindrops
from uir.networks.drops import FILL_ALPHA, SURE_ALPHA, DropDetector
from uir.pipelines.restoring import clear_found_drops
from uir.testing import TINY_DETECTOR, check_detector_round_trip, detector_router, tiny_restorer_pipeline, tiny_router

DROPS = {"drops": 12, "radius": 0.1, "blur": 2.0}


def test_alpha_is_the_drops_own_and_blends_as_the_synthesis_says():
    """``y = (1 - a) x + a (0.9 J + 0.1)``: outside the alpha ``y`` is ``x``; on a black image
    ``J = 0``, so ``y = 0.1 a``; inside, what replaces ``x`` lies between 0.1 and 1."""
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    for frame in (None, (160, 200)):
        a = raindrop_alpha(x, torch.Generator().manual_seed(1), frame=frame, **DROPS)
        y = raindrops(x, torch.Generator().manual_seed(1), frame=frame, **DROPS)
        black = raindrops(torch.zeros_like(x), torch.Generator().manual_seed(1), frame=frame, **DROPS)
        assert a.shape == (2, 1, 48, 64) and 0.02 < float((a > 0).float().mean()) < 0.9
        assert torch.allclose(black, 0.1 * a.expand_as(black), atol=1e-6)
        assert torch.equal(y[(a == 0).expand_as(y)], x[(a == 0).expand_as(x)])
        inside = a > 0.5
        seen = (y - (1 - a) * x) / a.clamp_min(1e-6)
        assert float(seen[inside.expand_as(seen)].min()) >= 0.1 - 1e-4
        assert float(seen[inside.expand_as(seen)].max()) <= 1.0 + 1e-4


def test_drop_dataset_pairs_each_raindrop_crop_with_its_alpha(tmp_path):
    from uir.testing import save_sample_crops

    folder = save_sample_crops(tmp_path, 3, 96, 128)
    dataset = DropMaskDataset(sorted(folder.iterdir()), ["clean", "hazy"], crop_size=64, seed=0)
    assert len(dataset) == 3 * 2 * 2
    kinds = [dataset[i]["degradation"] for i in range(len(dataset))]
    assert kinds == [RAINDROP_CLASS] * 3 + ["clean"] * 3 + [RAINDROP_CLASS] * 3 + ["hazy"] * 3
    for i in range(len(dataset)):
        item = dataset[i]
        changed = (item["lq"] - item["gt"]).abs().amax(0, keepdim=True) > 1e-6
        if item["degradation"] == RAINDROP_CLASS:  # the crop changed where its alpha is, and only there
            assert bool((changed <= (item["alpha"] > 0)).all())
            assert float(changed[item["alpha"] > 0.5].float().mean()) > 0.99
        else:
            assert not bool(item["alpha"].any())
    assert any(bool(dataset[i]["alpha"].any()) for i in range(3))
    with pytest.raises(ValueError, match="others"):
        DropMaskDataset(sorted(folder.iterdir()), [RAINDROP_CLASS, "clean"])


#: a tiny router whose drop detector says ``sigmoid(bias)`` everywhere: ``drop_router(bias, **router kwargs)``
drop_router = partial(detector_router, "drop_detector")


@torch.no_grad()
def test_router_calls_raindrop_where_its_detector_finds_drops(tmp_path):
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    plain = tiny_router(seed=1).eval()
    everywhere, nowhere = drop_router(6.0), drop_router(-6.0)
    assert everywhere(images).names == [RAINDROP_CLASS] * 2 and everywhere(images).confidence.tolist() == [1.0, 1.0]
    assert torch.equal(nowhere(images).probabilities, plain(images).probabilities)
    assert everywhere(images, found={RAINDROP_CLASS: torch.tensor([False, True])}).names[1] == RAINDROP_CLASS
    # saved and loaded, by diffusers and by the runtime: the same detector
    check_detector_round_trip(drop_router(0.0), "drop_detector", images, tmp_path)
    # a JPEG's exact trace outranks the learned drops: called JPEG, and not cleared
    from uir.degradations.filters import jpeg

    photo = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    both = torch.cat([jpeg(photo, 10), photo])
    sure = drop_router(6.0, jpeg_max_quality=30)
    assert sure(both).names == ["jpeg-compressed", RAINDROP_CLASS]
    assert sure.find_drops(both, sure.exact_traces(both))[1].tolist() == [False, True]
    # the detector runs only on the untraced image, and maps it as it maps it alone
    seen = []
    coverage = sure.drop_detector.coverage
    sure.drop_detector.coverage = lambda x: seen.append(x.shape[0]) or coverage(x)
    alpha, found = sure.find_drops(both, sure.exact_traces(both))
    assert seen == [1] and found.tolist() == [False, True] and float(alpha[0].abs().max()) == 0.0
    assert torch.equal(alpha[1:], coverage(photo)[0])
    sure.find_drops(both, {"jpeg-compressed": torch.tensor([True, True])})
    assert seen == [1]
    with pytest.raises(ValueError, match="drop_detector_config"):
        tiny_router(vocabulary=["noisy", "hazy"], drop_detector_config=TINY_DETECTOR)
    with pytest.raises(ValueError, match="drop_share"):
        tiny_router(drop_share=0.0)


def test_detector_pads_any_size_and_maps_alpha_per_pixel():
    detector = DropDetector(**TINY_DETECTOR).eval()
    for size in ((1, 3, 37, 50), (2, 3, 8, 9)):
        alpha = detector(torch.rand(size))
        assert alpha.shape == (size[0], 1, *size[-2:]) and bool(((alpha >= 0) & (alpha <= 1)).all())
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():  # alphas spread around the two thresholds
        logits = detector.logits(images)
        detector.net.ending.bias.data.add_(2.2 - float(logits.median()))
        detector.net.ending.weight.data.mul_(4.0 / float(detector.logits(images).std()))
    alpha = detector(images)
    mask, share = detector.coverage(images)
    assert torch.equal(mask, (alpha > FILL_ALPHA).float()) and 0 < float(mask.mean()) < 1
    assert share.tolist() == (alpha > SURE_ALPHA).flatten(1).float().mean(1).tolist()
    assert 0 < float(share.mean()) < float(mask.mean())


@torch.no_grad()
def test_detector_runs_channels_last_at_inference_and_maps_what_training_fits():
    detector = DropDetector(**TINY_DETECTOR)
    images = torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(3))
    detector.train()(images)
    assert detector.net.intro.weight.is_contiguous()  # training leaves the weights' layout alone
    alpha = detector.eval()(images)
    assert detector.net.intro.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(alpha, torch.sigmoid(detector.logits(images)), atol=1e-6)


@torch.no_grad()
def test_pipeline_clears_found_drops_and_keeps_the_result(monkeypatch):
    """Image 0 has drops where the detector says (a square); it comes back as the harmonic fill
    of that square, called raindrop, with nothing else run on it. Image 1 has none: it is
    restored exactly as by the same pipeline without a detector."""
    pipe = tiny_restorer_pipeline(names=("noisy", "hazy", "raindrop"), router=False)
    pipe.router = drop_router(0.0, vocabulary=["noisy", "hazy", "raindrop"], low_confidence="base", drop_share=0.05)
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    square = torch.zeros(2, 1, 32, 48)
    square[0, :, 8:20, 10:30] = 1.0
    monkeypatch.setattr(pipe.router.drop_detector, "forward", lambda x: square[: x.shape[0]])
    out = pipe(images, output_type="pt")
    assert out.degradations[0] == RAINDROP_CLASS and float(out.clean_weight[0]) == 1.0
    assert not bool(out.weights[0].any())
    assert torch.allclose(out.images[0], harmonic_fill(images[:1], square[:1])[0], atol=1e-6)
    assert out.drops.tolist() == pytest.approx([12 * 20 / (32 * 48), 0.0])
    assert describe_restoration(out, 0) == f"cleared raindrops from {100 * 12 * 20 / (32 * 48):.1f}% of the pixels"
    without = tiny_restorer_pipeline(names=("noisy", "hazy", "raindrop"), router=False)
    without.router = tiny_router(["noisy", "hazy", "raindrop"], seed=1, low_confidence="base").eval()
    assert torch.allclose(out.images[1], without(images[1:], output_type="pt").images[0], atol=1e-6)
    manual = pipe(images, weights={"noisy": 1.0}, output_type="pt")  # no routing: nothing is looked for
    assert manual.drops is None


def test_clear_found_drops_leaves_images_without_enough_drops_unchanged():
    router = drop_router(0.0, drop_share=0.2)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, :8] = 1.0  # half the pixels
    mask[1, :, :2] = 1.0  # an eighth: below the share
    router.drop_detector.forward = lambda x: mask
    cleared, share = clear_found_drops(router, images)
    assert share.tolist() == [0.5, 0.0]
    assert torch.equal(cleared[1], images[1])
    assert torch.allclose(cleared[0], harmonic_fill(images[:1], mask[:1])[0])
    assert D.get(RAINDROP_CLASS).framed


@torch.no_grad()
def test_pipeline_leaves_a_jpeg_to_its_trace_however_sure_the_detector():
    from uir.degradations.filters import jpeg

    pipe = tiny_restorer_pipeline(names=("jpeg-compressed", "raindrop"), router=False)
    pipe.router = drop_router(6.0, vocabulary=["jpeg-compressed", "raindrop"], jpeg_max_quality=30)
    photo = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    out = pipe(torch.cat([jpeg(photo, 10), photo]), output_type="pt")
    assert out.degradations == ["jpeg-compressed", RAINDROP_CLASS]
    assert out.drops.tolist() == [0.0, 1.0] and out.clean_weight.tolist() == [0.0, 1.0]


def test_detector_maps_large_images_in_tiles(monkeypatch):
    import uir.networks.drops as drops

    detector = DropDetector(**TINY_DETECTOR).eval()
    seen = []
    detector.net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    monkeypatch.setattr(drops, "DETECTOR_TILE", 32)
    images = torch.rand(1, 3, 40, 100)
    with torch.no_grad():
        alpha = detector(images)
    assert alpha.shape == (1, 1, 40, 100) and len(seen) > 1 and max(max(s) for s in seen) <= 32
