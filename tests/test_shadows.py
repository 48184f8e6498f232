"""Cast shadows found and lifted: the detector's training map against the synthesis, the lift
against the shadow formula, the router's shadow call from its detector, and the pipeline lifting
what it finds."""

from functools import partial

import pytest
import torch

from uir.commands.restore import describe_restoration
from uir.data import ShadowMapDataset
from uir.degradations.photometric import SHADOW_CLASS, shadow
from uir.networks.shadows import MAX_ATTENUATION, SURE_ATTENUATION, VIEW, ShadowDetector, global_view, lift_shadows
from uir.pipelines.restoring import lift_found_shadows
from uir.testing import (TINY_DETECTOR, check_detector_round_trip, detector_router, flatten_detector,
                         tiny_restorer_pipeline, tiny_router)

SHADOW = {"attenuation": 0.6, "softness": 4.0, "vertices": 5}


def test_lifting_by_the_true_attenuation_undoes_a_shadow():
    """``y = x (1 - a m)``: the attenuation is what the shadow casts on a white image, and dividing
    by ``1 - a m`` gives ``x`` back."""
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    y = shadow(x, torch.Generator().manual_seed(1), **SHADOW)
    attenuation = 1 - shadow(torch.ones(2, 1, 48, 64), torch.Generator().manual_seed(1), **SHADOW)
    assert 0.05 < float((attenuation > 0.3).float().mean()) < 0.95
    assert torch.allclose(lift_shadows(y, attenuation), x, atol=1e-5)
    assert torch.equal(lift_shadows(x, torch.zeros_like(attenuation)), x)
    assert float(lift_shadows(x, torch.full_like(attenuation, 0.8)).max()) == 1.0  # clipped to [0, 1]


def test_shadow_dataset_pairs_each_shadowed_photo_with_its_attenuation(tmp_path):
    """Items alternate shadowed and other runs; a shadowed item's views obey the shadow formula
    (up to the area averaging of the view), the others carry attenuation 0; crops are refused."""
    from uir.testing import save_sample_crops

    folder = save_sample_crops(tmp_path, 3, 96, 128)
    files = sorted(folder.iterdir())
    dataset = ShadowMapDataset(files, ["clean", "hazy"], seed=0, severity=None)
    kinds = [dataset[i]["degradation"] for i in range(len(dataset))]
    assert kinds == [SHADOW_CLASS] * 3 + ["clean"] * 3 + [SHADOW_CLASS] * 3 + ["hazy"] * 3
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["lq"].shape == item["gt"].shape == (3, *VIEW) and item["attenuation"].shape == (1, *VIEW)
        if item["degradation"] == SHADOW_CLASS:
            assert float(item["attenuation"].max()) >= 0.3 - 1e-6
            assert torch.allclose(item["lq"], item["gt"] * (1 - item["attenuation"]), atol=0.03)
        else:
            assert not bool(item["attenuation"].any())
    # at the photo's own resolution the map is exact
    gt = dataset.clean(0)
    generator = torch.Generator().manual_seed(5)
    drawn = dataset.synthesise(SHADOW_CLASS, gt, generator, tuple(gt.shape[-2:]))
    assert torch.allclose(drawn["lq"], gt * (1 - drawn["attenuation"]), atol=1e-6)
    with pytest.raises(ValueError, match="crop_size"):
        ShadowMapDataset(files, ["clean"], crop_size=64)
    with pytest.raises(ValueError, match="others"):
        ShadowMapDataset(files, [SHADOW_CLASS, "clean"])


def test_zoomed_photos_are_random_crops_that_keep_the_aspect(tmp_path):
    """``zoom``: each item is cut from its photo, keeping between ``zoom`` and all of each side, and
    is its own frame; at 1 every draw is the one made without the option."""
    from uir.testing import save_sample_crops

    files = sorted(save_sample_crops(tmp_path, 2, 96, 128).iterdir())
    zoomed = ShadowMapDataset(files, ["clean"], seed=0, zoom=0.5)
    frames = [tuple(zoomed[i]["frame"].tolist()) for i in range(len(zoomed))]
    assert all(48 <= h <= 96 and 64 <= w <= 128 and abs(w / h - 128 / 96) < 0.05 for h, w in frames)
    assert len(set(frames)) > 1 and any(frame != (96, 128) for frame in frames)
    whole, plain = ShadowMapDataset(files, ["clean"], seed=0, zoom=1.0), ShadowMapDataset(files, ["clean"], seed=0)
    assert all(torch.equal(whole[i]["lq"], plain[i]["lq"]) for i in range(len(plain)))
    assert all(tuple(plain[i]["frame"].tolist()) == (96, 128) for i in range(len(plain)))
    with pytest.raises(ValueError, match="zoom"):
        ShadowMapDataset(files, ["clean"], zoom=0.0)


def test_detector_maps_any_size_through_its_global_view():
    detector = ShadowDetector(**TINY_DETECTOR).eval()
    with torch.no_grad():
        for size in ((1, 3, 37, 50), (2, 3, 300, 420)):
            images = torch.rand(size)
            attenuation = detector(images)
            assert attenuation.shape == (size[0], 1, *size[-2:])
            assert bool(((attenuation >= 0) & (attenuation <= MAX_ATTENUATION)).all())
            expected = torch.nn.functional.interpolate(detector.view_attenuation(global_view(images)),
                                                       size=size[-2:], mode="bilinear", align_corners=False)
            assert torch.allclose(attenuation, expected)
            _, share = detector.coverage(images)
            assert share.tolist() == (attenuation > SURE_ATTENUATION).flatten(1).float().mean(1).tolist()


#: a tiny router whose shadow detector says ``MAX_ATTENUATION * sigmoid(bias)`` everywhere:
#: ``shadow_router(bias, **router kwargs)``
shadow_router = partial(detector_router, "shadow_detector")


@torch.no_grad()
def test_router_calls_shadowed_where_its_detector_finds_a_shadow(tmp_path):
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    plain = tiny_router(seed=1).eval()
    everywhere, nowhere = shadow_router(6.0), shadow_router(-6.0)
    assert everywhere(images).names == [SHADOW_CLASS] * 2 and everywhere(images).confidence.tolist() == [1.0, 1.0]
    assert torch.equal(nowhere(images).probabilities, plain(images).probabilities)
    # saved and loaded, by diffusers and by the runtime: the same detector
    check_detector_round_trip(shadow_router(0.0), "shadow_detector", images, tmp_path)
    # exact traces and drops outrank a shadow: an image gets one trace
    photo = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    holed = photo.clone()
    holed[..., 10:20, 10:20] = 0.0
    both = torch.cat([holed, photo])
    sure = shadow_router(6.0, call_missing_pixels=True, drop_detector_config=TINY_DETECTOR)
    flatten_detector(sure.drop_detector, -6.0)
    assert sure(both).names == ["uncompleted", SHADOW_CLASS]
    flatten_detector(sure.drop_detector, 6.0)
    assert sure(both).names == ["uncompleted", "raindrop"]
    assert [name for name, _ in sure.detectors()] == ["raindrop", SHADOW_CLASS]
    with pytest.raises(ValueError, match="shadow_detector_config"):
        tiny_router(vocabulary=["noisy", "hazy"], shadow_detector_config=TINY_DETECTOR)
    with pytest.raises(ValueError, match="shadow_share"):
        tiny_router(shadow_share=1.5)


@torch.no_grad()
def test_pipeline_lifts_a_found_shadow_and_keeps_the_result(monkeypatch):
    """Image 0 is shadowed where the detector says (a block at attenuation 0.5): it comes back
    lifted by that map, called shadowed, with nothing else run on it. Image 1 has no shadow: it
    is restored exactly as by the same pipeline without a detector."""
    names = ("noisy", "hazy", SHADOW_CLASS)
    pipe = tiny_restorer_pipeline(names=names, router=False)
    pipe.router = shadow_router(0.0, vocabulary=list(names), low_confidence="base", shadow_share=0.1)
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 0.5
    block = torch.zeros(2, 1, 32, 48)
    block[0, :, 8:24, 10:34] = 0.5
    monkeypatch.setattr(pipe.router.shadow_detector, "forward", lambda x: block[: x.shape[0]])
    out = pipe(images, output_type="pt")
    assert out.degradations[0] == SHADOW_CLASS and float(out.clean_weight[0]) == 1.0
    assert not bool(out.weights[0].any())
    assert torch.allclose(out.images[0], lift_shadows(images[:1], block[:1])[0], atol=1e-6)
    assert out.shadows.tolist() == pytest.approx([16 * 24 / (32 * 48), 0.0])
    assert describe_restoration(out, 0) == f"lifted a shadow over {100 * 16 * 24 / (32 * 48):.1f}% of the pixels"
    without = tiny_restorer_pipeline(names=names, router=False)
    without.router = tiny_router(list(names), seed=1, low_confidence="base").eval()
    assert torch.allclose(out.images[1], without(images[1:], output_type="pt").images[0], atol=1e-6)
    assert pipe(images, weights={"noisy": 1.0}, output_type="pt").shadows is None  # no routing: not looked for


def test_lift_found_shadows_leaves_images_without_enough_shadow_unchanged():
    router = shadow_router(0.0, shadow_share=0.2)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.5
    attenuation = torch.zeros(2, 1, 16, 16)
    attenuation[0, :, :8] = 0.5  # half the pixels
    attenuation[1, :, :2] = 0.5  # an eighth: below the share
    router.shadow_detector.forward = lambda x: attenuation
    lifted, share = lift_found_shadows(router, images)
    assert share.tolist() == [0.5, 0.0]
    assert torch.equal(lifted[1], images[1])
    assert torch.allclose(lifted[0], lift_shadows(images[:1], attenuation[:1])[0])
