"""train/compare_evals.py: the decision rule read from real ``uir eval`` outputs."""

import pytest

from uir.degradations import CLEAN
from uir.evaluation import evaluate_restoration, write_scores
from uir.testing import save_sample_crops

from .conftest import load_train_script

compare_evals = load_train_script("compare_evals")
TYPES = ["noisy", "low-light", CLEAN]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sorted(save_sample_crops(tmp_path_factory.mktemp("photos"), 3, 48, 64).iterdir())


def evaluated(folder, photos, restore, seed):
    """A ``uir eval -o folder`` run's files, written by the same functions, and its scores."""
    scores = evaluate_restoration(restore, photos, TYPES, seed=seed)
    write_scores(scores.rows(), folder, scores.pairs)
    return scores


def unchanged(lq, pair):
    return lq


def restores_noise_harms_clean(lq, pair):
    """The clean photo for noisy pairs (a gain), a darkened copy of a clean one (worse)."""
    return pair.gt if pair.name == "noisy" else lq * 0.9 if pair.name == CLEAN else lq


def test_the_numbers_are_the_evaluations_and_a_safe_gain_ships(tmp_path, photos):
    runs = {arm: [evaluated(tmp_path / f"{arm}{seed}", photos, restore, seed) for seed in (0, 1)]
            for arm, restore in (("base", unchanged), ("new", lambda lq, pair: pair.gt if pair.name == "noisy" else lq))}
    seeds = [compare_evals.compare_seed(compare_evals.read_pairs(tmp_path / f"base{s}"),
                                        compare_evals.read_pairs(tmp_path / f"new{s}")) for s in (0, 1)]
    for seed, base, new in zip(seeds, runs["base"], runs["new"]):
        degraded = [name for name in TYPES if name != CLEAN]  # the rule's mean leaves clean photos out
        assert seed["baseline"] == pytest.approx(sum(base.psnr_out[n] - base.psnr_in[n] for n in degraded) / 2)
        assert seed["candidate"] == pytest.approx(sum(new.psnr_out[n] - new.psnr_in[n] for n in degraded) / 2)
        assert seed["types"]["noisy"] == pytest.approx(new.psnr_out["noisy"] - base.psnr_out["noisy"])
        assert seed["types"]["low-light"] == 0 and seed["rows"] == 9
    verdict = compare_evals.decide(seeds)
    assert verdict["change"] > 0 and verdict["worse"] == (0, 0) and verdict["ship"]
    assert "verdict: ship" in compare_evals.report(seeds, verdict)


def test_a_higher_mean_that_makes_images_worse_is_not_shipped(tmp_path, photos):
    evaluated(tmp_path / "base", photos, unchanged, 0)
    evaluated(tmp_path / "new", photos, restores_noise_harms_clean, 0)
    seeds = [compare_evals.compare_seed(compare_evals.read_pairs(tmp_path / "base"), compare_evals.read_pairs(tmp_path / "new"))]
    verdict = compare_evals.decide(seeds)
    assert verdict["change"] > 0 and verdict["worse"] == (0, 3) and not verdict["ship"]
    assert "not ship (more images are made worse)" in compare_evals.report(seeds, verdict)


def test_runs_on_other_pairs_or_seeds_are_refused(tmp_path, photos, capsys):
    evaluated(tmp_path / "seed0", photos, unchanged, 0)
    evaluated(tmp_path / "two", photos[:2], unchanged, 0)
    code = compare_evals.run_script(compare_evals.main, ["--baseline", str(tmp_path / "seed0"),
                                                         "--candidate", str(tmp_path / "two")])
    assert code == 2 and "not on the same pairs" in capsys.readouterr().err
    code = compare_evals.run_script(compare_evals.main, ["--baseline", str(tmp_path / "seed0"), "--candidate",
                                                         str(tmp_path / "seed0"), str(tmp_path / "two")])
    assert code == 2 and "one of each per seed" in capsys.readouterr().err
    code = compare_evals.run_script(compare_evals.main, ["--baseline", str(tmp_path), "--candidate", str(tmp_path)])
    assert code == 2 and "holds no pairs.csv" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pairs.csv").write_text("photo,psnr\na.png,30\n")
    code = compare_evals.run_script(compare_evals.main, ["--baseline", str(tmp_path / "other"), "--candidate",
                                                         str(tmp_path / "other")])
    assert code == 2 and "is not a `uir eval` pairs.csv" in capsys.readouterr().err
