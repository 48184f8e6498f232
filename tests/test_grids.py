import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

from uir.grids import (PCA, GroupSelector, degradation_statistics, fit_ggd, ggd_kl, group_search, heatmap,
                       log10_kl, moment_ratio, second_opinion, similarity_matrix, symmetric_distance)
from uir.grids.ggd import ggd_scale
from uir.models import SRResNet

from .conftest import seeded


def gennorm(alpha, sigma):
    """scipy's generalized normal with GRIDS' (alpha, sigma): shape alpha, scale beta."""
    return stats.gennorm(alpha, scale=float(ggd_scale(torch.tensor(alpha), torch.tensor(sigma))))


def test_parametrisation_matches_scipy_variance_and_gaussian_ratio():
    for alpha, sigma in [(0.7, 2.0), (2.0, 0.5), (4.0, 1.3)]:
        assert gennorm(alpha, sigma).var() == pytest.approx(sigma**2, rel=1e-6)
    assert moment_ratio(torch.tensor(2.0)).item() == pytest.approx(math.pi / 2, rel=1e-12)
    assert moment_ratio(torch.tensor(1.0)).item() == pytest.approx(2.0, rel=1e-12)  # Laplacian


@pytest.mark.parametrize("alpha,sigma", [(0.6, 0.3), (1.0, 1.0), (2.0, 2.5), (3.5, 0.05)])
def test_fit_recovers_parameters_of_scipy_samples(alpha, sigma):
    samples = gennorm(alpha, sigma).rvs(size=400_000, random_state=np.random.default_rng(1))
    fitted_alpha, fitted_sigma = fit_ggd(torch.from_numpy(samples))
    assert fitted_alpha.item() == pytest.approx(alpha, rel=0.04)
    assert fitted_sigma.item() == pytest.approx(sigma, rel=0.01)


def test_fit_works_per_column_and_rejects_bad_samples():
    rng = np.random.default_rng(0)
    columns = np.stack([gennorm(1.0, 1.0).rvs(size=100_000, random_state=rng),
                        gennorm(2.0, 3.0).rvs(size=100_000, random_state=rng)], 1)
    alpha, sigma = fit_ggd(torch.from_numpy(columns), dim=0)
    assert alpha.shape == (2,) and alpha[0] < 1.2 < alpha[1]
    with pytest.raises(ValueError, match="NaN"):
        fit_ggd(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="all-zero"):
        fit_ggd(torch.zeros(10))


@pytest.mark.parametrize("p,q", [((1.0, 1.0), (2.0, 1.0)), ((0.8, 0.5), (2.5, 1.7)), ((3.0, 2.0), (1.2, 0.4))])
def test_kl_matches_numerical_integration(p, q):
    dist_p, dist_q = gennorm(*p), gennorm(*q)
    numeric, _ = integrate.quad(lambda x: dist_p.pdf(x) * (dist_p.logpdf(x) - dist_q.logpdf(x)),
                                -np.inf, np.inf, limit=400)
    closed = ggd_kl(torch.tensor(p[0]).view(1), torch.tensor(p[1]).view(1),
                    torch.tensor(q[0]).view(1), torch.tensor(q[1]).view(1)).item()
    assert closed == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    assert closed > 0


def test_kl_is_zero_for_identical_and_sums_over_components():
    alpha, sigma = torch.tensor([0.7, 2.0, 3.1]), torch.tensor([0.2, 1.0, 5.0])
    assert ggd_kl(alpha, sigma, alpha, sigma).item() == pytest.approx(0.0, abs=1e-12)
    other = sigma * 1.5
    parts = [ggd_kl(alpha[i:i + 1], sigma[i:i + 1], alpha[i:i + 1], other[i:i + 1]) for i in range(3)]
    assert ggd_kl(alpha, sigma, alpha, other).item() == pytest.approx(sum(p.item() for p in parts), rel=1e-12)
    assert log10_kl(alpha, sigma, alpha, sigma).item() == -12


def test_pca_equals_covariance_eigenvectors_and_ignores_row_order():
    data = torch.randn(300, 6, generator=seeded(0), dtype=torch.float64) * torch.tensor([5.0, 3, 2, 1, 0.5, 0.1],
                                                                                          dtype=torch.float64)
    pca = PCA.fit(data, 3)
    values, vectors = np.linalg.eigh(np.cov(data.numpy().T))
    top = vectors[:, ::-1][:, :3].T
    np.testing.assert_allclose(np.abs(pca.components.numpy()), np.abs(top), atol=1e-8)
    shuffled = PCA.fit(data[torch.randperm(300, generator=seeded(1))], 3)
    torch.testing.assert_close(shuffled.components, pca.components)
    projected = pca.project(data)
    np.testing.assert_allclose(projected.var(0, unbiased=True).numpy(), values[::-1][:3], rtol=1e-8)


def _brute_force(names, feasible):
    """Every partition of ``names`` with the fewest groups, all groups feasible."""
    def partitions(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for size in range(len(rest) + 1):
            for others in itertools.combinations(rest, size):
                group = (first,) + others
                for tail in partitions([x for x in rest if x not in others]):
                    yield [group] + tail
    good = [p for p in partitions(sorted(names)) if all(len(g) == 1 or feasible(g) for g in p)]
    fewest = min(len(p) for p in good)
    return {frozenset(p) for p in good if len(p) == fewest}


@pytest.mark.parametrize("seed", range(4))
def test_group_search_finds_exactly_the_brute_force_optimum(seed):
    names = [f"d{i}" for i in range(7)]
    generator = seeded(seed)
    points = torch.rand(7, 2, generator=generator, dtype=torch.float64)
    distance = torch.cdist(points, points)
    index = {n: i for i, n in enumerate(names)}

    def mean_distance(group):
        return sum(distance[index[a], index[b]].item() for a, b in itertools.combinations(group, 2)) / math.comb(
            len(group), 2)

    calls = []

    def verify(group):  # a proxy dP: the group's mean distance, in "dB"
        calls.append(group)
        return mean_distance(group)

    delta = 0.35
    result = group_search(names, distance, verify, delta=delta, tie_digits=12)
    assert {frozenset(p) for p in result.partitions} == _brute_force(names, lambda g: mean_distance(g) <= delta)
    assert all(len(g) > 1 for g in calls) and len(calls) == len(set(calls))  # cached, singletons free
    assert all(result.drops[g] <= delta for p in result.partitions for g in p if len(g) > 1)


def test_group_search_recovers_clusters_and_validates_input():
    names = ["blur-a", "blur-b", "blur-c", "noise-a", "noise-b", "jpeg"]
    cluster = {"blur-a": 0, "blur-b": 0, "blur-c": 0, "noise-a": 1, "noise-b": 1, "jpeg": 2}
    distance = torch.tensor([[0.0 if a == b else 0.1 if cluster[a] == cluster[b] else 1.0 for b in names]
                             for a in names], dtype=torch.float64)
    result = group_search(names, distance, lambda g: 0.0 if len({cluster[n] for n in g}) == 1 else 2.0)
    assert result.num_groups == 3 and result.max_group_size == 3
    assert result.partitions == [[("blur-a", "blur-b", "blur-c"), ("jpeg",), ("noise-a", "noise-b")]]
    with pytest.raises(ValueError, match="distinct"):
        group_search(["a", "a"], torch.zeros(2, 2), lambda g: 0.0)
    with pytest.raises(ValueError, match="does not match"):
        group_search(["a", "b"], torch.zeros(3, 3), lambda g: 0.0)


def high_pass_features(x):
    """A plug-in feature function: responses of fixed derivative and box filters (B,4,H,W)."""
    gray = x.mean(1, keepdim=True)
    kernels = torch.tensor([[[0, 0, 0], [-1, 1, 0], [0, 0, 0]], [[0, -1, 0], [0, 1, 0], [0, 0, 0]],
                            [[0, 1, 0], [1, -4, 1], [0, 1, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]]],
                           dtype=x.dtype).unsqueeze(1) / torch.tensor([1, 1, 1, 9.0]).view(4, 1, 1, 1)
    return F.conv2d(gray, kernels, padding=1)


@pytest.fixture(scope="module")
def noise_blur_stats(sample):
    images = [sample[:, :96, :96], sample[:, 32:, 64:]]
    return degradation_statistics(high_pass_features, images, ["gaussian-noise", "gaussian-blur", "jpeg"],
                                  n_components=2, patch_size=32, patches_per_image=12, seed=0)


def test_statistics_are_deterministic_and_similarity_is_consistent(sample, noise_blur_stats):
    again = degradation_statistics(high_pass_features, [sample[:, :96, :96], sample[:, 32:, 64:]],
                                   ["gaussian-noise", "gaussian-blur", "jpeg"], n_components=2, patch_size=32,
                                   patches_per_image=12, seed=0)
    torch.testing.assert_close(again.alpha, noise_blur_stats.alpha)
    torch.testing.assert_close(again.sigma, noise_blur_stats.sigma)
    matrix = similarity_matrix(noise_blur_stats)
    assert matrix.shape == (3, 3) and torch.all(matrix.diagonal() == -12)
    s = noise_blur_stats
    assert matrix[0, 1].item() == pytest.approx(log10_kl(s.alpha[0], s.sigma[0], s.alpha[1], s.sigma[1]).item())
    torch.testing.assert_close(symmetric_distance(matrix), symmetric_distance(matrix).T)
    picture = heatmap(matrix, s.names)
    assert picture.size == (110 + 3 * 44, 110 + 3 * 44)


def test_selector_picks_the_matching_group_round_trips_and_flags(sample, noise_blur_stats, tmp_path):
    from uir import degradations

    selector = GroupSelector.from_statistics(noise_blur_stats, groups=[["gaussian-noise"], ["gaussian-blur"]],
                                             patch_size=32, patches_per_image=12)
    image = sample[:, :96, 40:136]
    noisy = degradations.apply("gaussian-noise", image, generator=seeded(5), severity="severe")
    blurry = degradations.apply("gaussian-blur", image, generator=seeded(5), severity="severe")
    out = selector(torch.stack([noisy, blurry]), high_pass_features)
    assert out.group.tolist() == [0, 1] and out.group_names == [["gaussian-noise"], ["gaussian-blur"]]
    assert out.divergence.shape == (2, 2) and torch.equal(out.score, out.divergence.min(1).values)
    assert second_opinion(["gaussian-noise", "jpeg"], out) == [True, False]

    selector.save_pretrained(tmp_path / "selector")
    loaded = GroupSelector.from_pretrained(tmp_path / "selector")
    assert loaded.config.groups == selector.config.groups
    again = loaded(torch.stack([noisy, blurry]), high_pass_features)
    torch.testing.assert_close(again.divergence, out.divergence, rtol=0, atol=0)

    strict = GroupSelector.from_statistics(noise_blur_stats, groups=[["gaussian-noise"], ["gaussian-blur"]],
                                           threshold=out.score.min().item(), patch_size=32, patches_per_image=12)
    flagged = strict(torch.stack([noisy, blurry]), high_pass_features).out_of_distribution
    assert flagged.tolist() == (out.score > out.score.min()).tolist()
    # calibration standardises each group's divergence by its in-group mean and std
    others = [degradations.apply(name, sample[:, 32:128, 64:160], generator=seeded(k), severity="severe")
              for k, name in enumerate(["gaussian-noise", "gaussian-noise", "gaussian-blur", "gaussian-blur"])]
    selector.calibrate({"gaussian-noise": [noisy, others[0], others[1]], "gaussian-blur": [blurry, others[2], others[3]]},
                       high_pass_features)
    raw_noise = selector.raw_divergence(torch.stack([noisy, others[0], others[1]]), high_pass_features)[:, 0]
    assert selector.score_mean[0].item() == pytest.approx(raw_noise.mean().item())
    assert selector.score_std[0].item() == pytest.approx(raw_noise.std().item())
    calibrated = selector(torch.stack([noisy, blurry]), high_pass_features)
    torch.testing.assert_close(calibrated.divergence, (out.divergence - selector.score_mean) / selector.score_std)
    selector.save_pretrained(tmp_path / "calibrated")
    torch.testing.assert_close(GroupSelector.from_pretrained(tmp_path / "calibrated").score_std, selector.score_std)
    with pytest.raises(ValueError, match="disjoint"):
        GroupSelector(names=["a", "b"], groups=[["a"], ["a", "b"]])
    with pytest.raises(ValueError, match="NaN"):
        selector(torch.full((3, 64, 64), float("nan")), high_pass_features)


def test_srresnet_shapes_features_and_round_trip(tmp_path):
    model = SRResNet(channels=8, num_blocks=2, scale=4).eval()
    x = torch.rand(2, 3, 12, 16, generator=seeded(0))
    assert model(x).shape == (2, 3, 48, 64)
    assert model.degradation_features(x).shape == (2, 8, 12, 16)
    assert SRResNet(channels=8, num_blocks=1, scale=1)(x).shape == x.shape
    model.save_pretrained(tmp_path / "sr")
    assert (tmp_path / "sr" / "diffusion_pytorch_model.safetensors").is_file()
    torch.testing.assert_close(SRResNet.from_pretrained(tmp_path / "sr")(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="power of 2"):
        SRResNet(scale=3)


def test_pca_can_be_fitted_without_the_unseen_degradations(sample):
    images = [sample[:, :96, :96]]
    names = ["gaussian-noise", "gaussian-blur", "jpeg"]
    kwargs = dict(n_components=2, patch_size=32, patches_per_image=4, seed=0)
    seen_only = degradation_statistics(high_pass_features, images, names[:2], **kwargs)
    with_unseen = degradation_statistics(high_pass_features, images, names, pca_names=names[:2], **kwargs)
    torch.testing.assert_close(with_unseen.pca.components, seen_only.pca.components)
    torch.testing.assert_close(with_unseen.alpha[:2], seen_only.alpha)
    everything = degradation_statistics(high_pass_features, images, names, **kwargs)
    assert not torch.allclose(everything.pca.components, seen_only.pca.components)


def test_mscn_matches_scipy_and_nss_features_separate_noise_from_blur(sample):
    import scipy.ndimage

    from uir import degradations
    from uir.grids import mscn, nss_features

    gray = sample[1:2, :48, :56].double()
    window = dict(sigma=7 / 6, truncate=3 / (7 / 6), mode="constant")
    plane = gray[0].numpy()
    mean = scipy.ndimage.gaussian_filter(plane, **window)
    std = np.sqrt(np.clip(scipy.ndimage.gaussian_filter(plane * plane, **window) - mean ** 2, 0, None))
    expected = (plane - mean) / (std + 1 / 255)
    np.testing.assert_allclose(mscn(gray[None])[0, 0].numpy(), expected, rtol=1e-9, atol=1e-9)

    crop = sample[:, :64, :64]
    features = nss_features(crop[None])
    assert features.shape == (1, 10, 60, 60)  # the coarse scale (32 -> 30 px) sets the grid
    # the MSCN spread of a clean photo widens under noise and narrows under blur
    spread = {name: nss_features(degradations.apply(name, crop, generator=seeded(0), severity="severe")[None])[0, 0].std()
              for name in ("gaussian-noise", "gaussian-blur")}
    clean = features[0, 0].std()
    assert spread["gaussian-noise"] > clean > spread["gaussian-blur"]


def test_selection_uses_kl_from_the_group_mean_to_the_image():
    """Eq. 7 on a two-member group: KL(GGD(C) || GGD(d)) with GGD(C) the members' mean, by hand."""

    selector = GroupSelector(names=["a", "b", "c"], groups=[["a", "b"], ["c"]], feature_dim=4, n_components=2)
    selector.alpha.copy_(torch.tensor([[0.8, 1.6], [2.0, 1.0], [1.2, 1.2]], dtype=torch.float64))
    selector.sigma.copy_(torch.tensor([[0.5, 2.0], [1.5, 0.7], [1.0, 1.0]], dtype=torch.float64))
    image_alpha = torch.tensor([1.1, 0.9], dtype=torch.float64)
    image_sigma = torch.tensor([0.9, 1.4], dtype=torch.float64)
    selector.image_parameters = lambda features, image: (image_alpha, image_sigma)
    divergence = selector.raw_divergence(torch.zeros(1, 3, 8, 8), features=None)[0]
    group_alpha, group_sigma = selector.alpha[:2].mean(0), selector.sigma[:2].mean(0)
    expected = log10_kl(group_alpha, group_sigma, image_alpha, image_sigma)
    torch.testing.assert_close(divergence[0], expected)
    reversed_kl = log10_kl(image_alpha, image_sigma, group_alpha, group_sigma)
    first_member = log10_kl(selector.alpha[0], selector.sigma[0], image_alpha, image_sigma)
    assert abs(float(expected - reversed_kl)) > 1e-3 and abs(float(expected - first_member)) > 1e-3
    torch.testing.assert_close(divergence[1], log10_kl(selector.alpha[2], selector.sigma[2], image_alpha, image_sigma))


def test_group_search_filters_each_size_before_the_partition_search():
    """Alg. 1's filtering keeps, per size, the ranked groups up to the last that passes; the
    search then verifies far fewer groups than exist."""
    names = ["blur-a", "blur-b", "blur-c", "noise-a", "noise-b", "jpeg"]
    cluster = {"blur-a": 0, "blur-b": 0, "blur-c": 0, "noise-a": 1, "noise-b": 1, "jpeg": 2}
    distance = torch.tensor([[0.0 if a == b else 0.1 if cluster[a] == cluster[b] else 1.0 for b in names]
                             for a in names], dtype=torch.float64)
    calls = []

    def verify(group):
        calls.append(group)
        return 0.0 if len({cluster[n] for n in group}) == 1 else 2.0

    result = group_search(names, distance, verify)
    assert sorted(result.candidates[2]) == [("blur-a", "blur-b"), ("blur-a", "blur-c"), ("blur-b", "blur-c"),
                                            ("noise-a", "noise-b")]
    assert result.candidates[3] == [("blur-a", "blur-b", "blur-c")] and 4 not in result.candidates
    every_group = sum(math.comb(6, size) for size in range(2, 7))
    assert len(calls) <= 16 < every_group


def test_selector_checks_groups_calibrates_pairs_and_flags_only_above_the_threshold():
    """What mutation testing found unguarded in GroupSelector and second_opinion."""
    with pytest.raises(ValueError, match="disjoint"):
        GroupSelector(names=["a", "b"], groups=[["a"], ["a", "b"]], feature_dim=4, n_components=2)
    with pytest.raises(ValueError, match="drawn from"):
        GroupSelector(names=["a", "b"], groups=[["a"], ["c"]], feature_dim=4, n_components=2)
    selector = GroupSelector(names=["a", "b"], feature_dim=4, n_components=2, threshold=0.5)
    scores = iter([torch.tensor([[0.1, 0.9]]), torch.tensor([[0.3, 0.7]])])
    selector.raw_divergence = lambda image, features: next(scores)
    selector.calibrate({"a": [torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)]}, features=None)  # two images suffice
    torch.testing.assert_close(selector.score_mean, torch.tensor([0.2, 0.0], dtype=torch.float64))
    selector.score_mean.zero_()
    selector.score_std.fill_(1.0)
    selector.raw_divergence = lambda images, features: torch.tensor([[0.2, 0.8], [0.9, 0.6], [0.5, 0.7]],
                                                                       dtype=torch.float64)
    out = selector(torch.zeros(3, 3, 8, 8), features=None)
    assert out.out_of_distribution.tolist() == [False, True, False]  # 0.2 and 0.5 are not above 0.5
    assert second_opinion(["a", "a", "b"], out) == [True, False, False]
    with pytest.raises(ValueError, match="router names"):
        second_opinion(["a", "b"], out)


def test_group_script_verifies_on_validation_photos_and_reports_on_held_out_ones(photos_dir, tmp_path, monkeypatch):
    """Alg. 1's drops come from photos set aside from training; the held-out photos score only the
    returned partition's models, and no model trains on either."""
    from types import SimpleNamespace

    from uir.data import validation_split
    from uir.models import NAFNet
    from uir.pipelines import RestorerPipeline

    from .conftest import load_train_script

    grids_group = load_train_script("grids_group")
    train, validation, held_out = validation_split(photos_dir)
    commands, scored = [], []

    def fake_training(command, check, env):  # saves a tiny pipeline where the training would
        commands.append(command)
        RestorerPipeline(NAFNet(width=4), router=None).save_pretrained(
            Path(command[command.index("--output_dir") + 1]) / "pipeline")

    def fake_scores(restore, files, names, seed, severity):  # noise and blur group well, jpeg does not
        scored.append((list(files), tuple(names)))
        penalty = 2.0 if "jpeg" in names and len(names) > 1 else 0.0
        return SimpleNamespace(psnr_out={name: 30.0 - penalty for name in names})

    monkeypatch.setattr(grids_group.subprocess, "run", fake_training)
    monkeypatch.setattr(grids_group, "evaluate_restoration", fake_scores)
    names = ["gaussian-noise", "gaussian-blur", "jpeg"]
    similarity = tmp_path / "similarity.json"
    similarity.write_text(json.dumps({"names": names, "log10_kl": [[0, 1, 3], [1, 0, 3], [3, 3, 0]]}))
    grids_group.main(["--similarity", str(similarity), "--delta", "0.7", "--data", str(photos_dir),
                      "--output_dir", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert sorted(map(sorted, result["partitions"][0])) == [["gaussian-blur", "gaussian-noise"], ["jpeg"]]
    trained_on = {Path(c[c.index("--train_data_dir") + 1]) for c in commands}
    assert len(trained_on) == 1
    assert sorted(p.name for p in trained_on.pop().iterdir()) == sorted(p.name for p in train)
    reported = {names for files, names in scored if files == held_out}
    assert reported == {("gaussian-blur", "gaussian-noise"), ("gaussian-noise",), ("gaussian-blur",), ("jpeg",),
                        tuple(sorted(names))}
    assert all(files in (validation, held_out) for files, _ in scored)
    verified = [names for files, names in scored if files == validation]
    assert ("gaussian-blur", "gaussian-noise") in verified and ("gaussian-noise",) in verified
