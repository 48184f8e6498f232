"""Score tables: PSNR/SSIM against skimage, the 'worse' fraction, the PSNR cap, merging."""

import pytest
from skimage.metrics import peak_signal_noise_ratio

from uir.evaluation import PSNR_CAP, RestorationScores, degraded_pairs, evaluate_restoration


def test_scores_against_skimage_with_the_cap_and_the_worse_fraction(photos_dir):
    files = sorted(p for p in photos_dir.iterdir() if p.suffix == ".png")[:2]
    names = ["clean", "noisy"]
    darker = lambda lq, pair: lq * 0.5  # noqa: E731  (worse than any input here)
    scores = evaluate_restoration(lambda lq, pair: lq, files, names)
    assert scores.psnr_in["clean"] == scores.psnr_out["clean"] == PSNR_CAP, "identical images score the cap"
    assert scores.worse == {"clean": 0.0, "noisy": 0.0}, "unchanged is not worse"
    expected = sum(peak_signal_noise_ratio(p.gt[0].numpy(), p.lq[0].numpy(), data_range=1.0)
                   for p in degraded_pairs(files, names) if p.name == "noisy") / 2
    assert scores.psnr_in["noisy"] == pytest.approx(expected, abs=1e-3)
    halved = evaluate_restoration(darker, files, names)
    assert halved.worse == {"clean": 1.0, "noisy": 1.0} and halved.count == {"clean": 2, "noisy": 2}
    one = evaluate_restoration(darker, files[:1], names)
    other = evaluate_restoration(lambda lq, pair: lq, files[1:], names, first_index=1)
    merged = RestorationScores.merge([one, other])
    assert merged.worse["noisy"] == 0.5 and merged.count["noisy"] == 2
    assert merged.psnr_in["noisy"] == pytest.approx(scores.psnr_in["noisy"], abs=1e-6)
    assert [row["worse"] for row in merged.rows()] == [0.5, 0.5]
    assert [(row["photo"], row["degradation"], row["worse"]) for row in merged.pairs] == [
        (files[0].name, "clean", True), (files[0].name, "noisy", True),
        (files[1].name, "clean", False), (files[1].name, "noisy", False)], "a row per pair, each part's in order"
