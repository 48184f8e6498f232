import numpy as np
import pytest
import torch
from PIL import Image

import uir.degradations as D
from uir.data import (
    HOLDOUT_EVERY,
    PairedFolderDataset,
    SingleDegradationBatchSampler,
    SyntheticDegradationDataset,
    paired_random_crop,
    paired_random_flip,
    photo_files,
    split_photos,
    validation_split,
)

from .conftest import seeded


def _write(folder, name, seed, size=(40, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(array).save(folder / name)
    return torch.from_numpy(array).permute(2, 0, 1) / 255.0


def test_paired_folder_matches_by_stem_and_crops_identically(tmp_path):
    for i in range(3):
        _write(tmp_path / "gt", f"{i}.png", i)
        _write(tmp_path / "lq", f"{i}.png", i)
    ds = PairedFolderDataset(tmp_path / "lq", tmp_path / "gt", crop_size=16, flip=True, seed=1)
    assert len(ds) == 3
    item = ds[1]
    assert item["lq"].shape == (3, 16, 16) and torch.equal(item["lq"], item["gt"])
    assert torch.equal(ds[1]["gt"], item["gt"])


def test_paired_folder_reports_unmatched_files(tmp_path):
    _write(tmp_path / "gt", "a.png", 0)
    _write(tmp_path / "gt", "b.png", 1)
    _write(tmp_path / "lq", "a.png", 0)
    _write(tmp_path / "lq", "c.png", 2)
    with pytest.raises(ValueError, match=r"1 only in .*lq \(c\), 1 only in .*gt \(b\)"):
        PairedFolderDataset(tmp_path / "lq", tmp_path / "gt")


def test_synthetic_dataset_is_deterministic_per_index_and_seed(tmp_path):
    files = [tmp_path / "c" / f"{i}.png" for i in range(3)]
    for i in range(3):
        _write(tmp_path / "c", f"{i}.png", i, size=(64, 64))
    ds = SyntheticDegradationDataset(files, ["noisy", "hazy"], crop_size=32, seed=5)
    assert len(ds) == 6
    order_a = [ds[i]["lq"] for i in range(6)]
    fresh = SyntheticDegradationDataset(files, ["noisy", "hazy"], crop_size=32, seed=5)
    order_b = [fresh[i]["lq"] for i in reversed(range(6))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(order_a, order_b))
    assert ds[4]["degradation"] == "hazy" and ds[4]["degradation_index"] == 1
    other = SyntheticDegradationDataset(files, ["noisy", "hazy"], crop_size=32, seed=6)
    assert not torch.equal(other[0]["lq"], order_a[0])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["lq"], order_a[0])
    with pytest.raises(ValueError, match="valid choices"):
        SyntheticDegradationDataset(files, ["fog"])
    repeated = SyntheticDegradationDataset(files, ["noisy", "hazy"], crop_size=32, seed=5, repeats=3)
    assert len(repeated) == 18 and [repeated.degradation_index(i) for i in (0, 3, 6, 9, 15)] == [0, 1, 0, 1, 1]
    assert torch.equal(repeated[4]["lq"], order_a[4]), "the first repeat is the plain dataset"
    assert repeated[10]["degradation"] == "hazy" and repeated[10]["path"] == repeated[4]["path"]
    assert not torch.equal(repeated[10]["lq"], order_a[4]), "a repeat is another draw"


def test_single_degradation_batches_cover_each_type_once(tmp_path):
    files = []
    for i in range(5):
        _write(tmp_path / "c", f"{i}.png", i, size=(16, 16))
        files.append(tmp_path / "c" / f"{i}.png")
    ds = SyntheticDegradationDataset(files, list(D.DEFAULT_VOCABULARY[:4]))
    sampler = SingleDegradationBatchSampler(ds, batch_size=2, seed=0, drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4 * 3
    for batch in batches:
        assert len({ds.degradation_index(i) for i in batch}) == 1
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    assert len(SingleDegradationBatchSampler(ds, batch_size=2, drop_last=True)) == 4 * 2
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_paired_transforms_share_randomness():
    a = torch.rand(3, 20, 30, generator=seeded())
    b = a + 1
    ca, cb = paired_random_crop([a, b], 8, seeded(3))
    assert torch.equal(ca + 1, cb) and ca.shape == (3, 8, 8)
    fa, fb = paired_random_flip([a, b], seeded(4))
    assert torch.equal(fa + 1, fb)
    small, = paired_random_crop([torch.rand(3, 5, 6)], 8, seeded())
    assert small.shape == (3, 8, 8)


def test_photo_split_every_fifth_by_name_without_the_real_captures(photos_dir):
    """Every fifth image file by name is held out, counted over the whole folder; the real
    degraded captures the folder's README names are then left out of every part (they have no
    clean ground truth), so no other photo changes part."""
    from uir.data import REAL_CAPTURES

    every = sorted(p for p in photos_dir.iterdir() if p.suffix == ".png")
    assert REAL_CAPTURES <= {p.name for p in every}, "the README's real captures are in the folder"
    clean = [p for p in every if p.name not in REAL_CAPTURES]
    assert photo_files(photos_dir) == clean
    train, held_out = split_photos(photos_dir)
    assert held_out == [p for p in every[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY] if p in clean]
    assert not set(train) & set(held_out) and sorted(train + held_out) == clean
    assert any(p.name == "scikit-image__chelsea.png" for p in held_out), "the bundled sample must stay held out"
    rest, validation, held_out_again = validation_split(photos_dir)
    every_train = [p for p in every if p not in every[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]]
    assert held_out_again == held_out
    assert validation == [p for p in every_train[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY] if p in clean]
    assert sorted(rest + validation) == train and not set(rest) & set(validation)


def test_photo_split_respects_the_hold_out_and_says_when_validation_is_skipped(photos_dir, tmp_path, monkeypatch,
                                                                                  caplog):
    from argparse import Namespace

    from uir.data import photo_split, split_photos

    train, held_out = split_photos(photos_dir)
    args = Namespace(train_data_dir=photos_dir, validation_data_dir=None, num_validation_images=2)
    with caplog.at_level("WARNING", logger="uir.data"):
        kept, validation = photo_split(args)
    assert kept == train and validation == held_out[:2]
    assert f"{len(held_out)} photo(s) of the training folder are held out" in caplog.text
    caplog.clear()
    monkeypatch.setenv("UIR_PHOTOS", str(tmp_path / "nowhere"))
    monkeypatch.setattr("uir.data.photos.default_photos_dir", lambda: None)
    with caplog.at_level("WARNING", logger="uir.data"):
        kept, validation = photo_split(Namespace(train_data_dir=photos_dir, validation_data_dir=None,
                                                 num_validation_images=2))
    assert validation == [] and "validation is skipped" in caplog.text and len(kept) == len(train) + len(held_out)


def test_unreadable_training_photos_are_skipped_once_and_not_called_held_out(tmp_path, sample, caplog):
    """A broken training photo is one 'skipping' warning, not counted as held out for validation;
    the validation files alone are listed without checking the training photos."""
    from argparse import Namespace

    from uir.data import photo_split, validation_photos
    from uir.images import save_image

    for i in range(3):
        save_image(sample[:, i * 8 : i * 8 + 32, :32], tmp_path / "train" / f"p{i}.png")
        save_image(sample[:, i * 8 : i * 8 + 32, 32:64], tmp_path / "val" / f"v{i}.png")
    (tmp_path / "train" / "z-broken.png").write_bytes(b"not an image")
    args = Namespace(train_data_dir=tmp_path / "train", validation_data_dir=tmp_path / "val", num_validation_images=2,
                     resolution=16)
    with caplog.at_level("WARNING", logger="uir.data"):
        kept, validation = photo_split(args)
    assert [p.name for p in kept] == ["p0.png", "p1.png", "p2.png"]
    assert "skipping 1 unreadable photo(s)" in caplog.text and "held out" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="uir.data"):
        assert validation_photos(args) == validation and len(validation) == 2
    assert caplog.text == ""


def test_training_crops_are_degraded_as_part_of_their_photo(tmp_path):
    """Each item carries its photo's size as ``frame`` (the crop's own where a smaller photo was
    padded) and its raindrops are drawn with it: the photo's drops, not the crop's."""
    from uir.images import load_image, save_image
    from uir.testing import save_sample_crops

    folder = save_sample_crops(tmp_path, 1, 64, 96)
    save_image(load_image(folder / "p0.png")[:, :32, :40], folder / "p1.png")
    dataset = SyntheticDegradationDataset(sorted(folder.iterdir()), ["raindrop"], crop_size=48, seed=4)
    for index, frame in ((0, (64, 96)), (1, (48, 48))):
        item = dataset[index]
        assert tuple(item["frame"].tolist()) == frame
        generator = dataset.item_generator(index)
        gt = dataset.crop(index, generator)
        state = generator.get_state()
        framed = D.apply("raindrop", gt, generator=generator, severity="random", frame=frame)
        assert torch.equal(item["lq"], framed)
        if index == 0:
            unframed = D.apply("raindrop", gt, generator=torch.Generator().set_state(state), severity="random")
            assert not torch.equal(item["lq"], unframed)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_device_synthesis_draws_the_workers_distribution(tmp_path, device):
    """``--synthesis device`` (degrade_batch on the training device) against the workers' path:
    per type, the PSNR of the degraded crops follows the same distribution (two-sample
    Kolmogorov-Smirnov test over 48 crops each, different seeds), and each crop's clean
    version is the one the workers would have degraded."""
    from scipy.stats import ks_2samp

    from uir.degradations import CLEAN, DEFAULT_VOCABULARY
    from uir.metrics import psnr
    from uir.testing import save_sample_crops

    files = sorted(save_sample_crops(tmp_path, 4, 64, 64).iterdir())
    names = [*DEFAULT_VOCABULARY, CLEAN]

    def scores(on_device: bool, seed: int) -> dict[str, list[float]]:
        dataset = SyntheticDegradationDataset(files, names, crop_size=48, flip=True, seed=seed, repeats=12,
                                              on_device=on_device)
        found = {name: [] for name in names}
        for start in range(0, len(dataset), 32):
            batch = torch.utils.data.default_collate([dataset[i] for i in range(start, min(start + 32, len(dataset)))])
            if on_device:
                assert "lq" not in batch
                batch = dataset.degrade_batch(batch, device)
                assert batch["lq"].device.type == device
            for name, lq, gt in zip(batch["degradation"], batch["lq"].cpu(), batch["gt"].cpu()):
                found[name].append(min(psnr(lq[None], gt[None]).item(), 99.0))
        return found

    workers, on_device = scores(False, seed=1), scores(True, seed=2)
    for name in names:
        assert len(workers[name]) == len(on_device[name]) == 48
        if name == CLEAN:
            assert set(workers[name]) == set(on_device[name]) == {99.0}
            continue
        assert ks_2samp(workers[name], on_device[name]).pvalue > 0.001, name
    same = SyntheticDegradationDataset(files, ["noisy"], crop_size=48, flip=True, seed=3)
    deferred = SyntheticDegradationDataset(files, ["noisy"], crop_size=48, flip=True, seed=3, on_device=True)
    assert torch.equal(same[3]["gt"], deferred[3]["gt"]), "the same clean crop, only degraded elsewhere"


@pytest.mark.parametrize("device", DEVICES)
def test_clean_inputs_leave_their_share_of_items_undegraded_on_both_paths(tmp_path, device):
    """``clean_inputs``: about that share of items (binomial bounds over 192) have ``lq`` equal
    to their clean crop, keep their type's label and are marked ``clean_input``, on the workers'
    path and on the device; every other item is degraded, and without the option every draw
    is the one it was."""
    from uir.testing import save_sample_crops

    files = sorted(save_sample_crops(tmp_path, 4, 64, 64).iterdir())
    plain = SyntheticDegradationDataset(files, ["noisy", "shadowed"], crop_size=32, seed=4, repeats=24)
    off = SyntheticDegradationDataset(files, ["noisy", "shadowed"], crop_size=32, seed=4, repeats=24, clean_inputs=0.0)
    assert all(torch.equal(plain[i]["lq"], off[i]["lq"]) and not off[i]["clean_input"] for i in (0, 5, 100))
    for on_device in (False, True):
        dataset = SyntheticDegradationDataset(files, ["noisy", "shadowed"], crop_size=32, seed=4, repeats=24,
                                              on_device=on_device, clean_inputs=0.25)
        batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
        if on_device:
            batch = dataset.degrade_batch(batch, device)
        same = torch.tensor([torch.equal(lq, gt) for lq, gt in zip(batch["lq"].cpu(), batch["gt"].cpu())])
        assert torch.equal(same, batch["clean_input"]), "exactly the marked items are left clean"
        assert 29 <= int(same.sum()) <= 67, int(same.sum())  # 192 items at 0.25: mean 48, sd 6
        assert {batch["degradation"][i] for i in torch.nonzero(same).flatten().tolist()} == {"noisy", "shadowed"}
    with pytest.raises(ValueError, match=r"clean_inputs must be in \[0, 1\)"):
        SyntheticDegradationDataset(files, ["noisy"], clean_inputs=1.0)


def test_extra_photos_keep_listed_photographs_and_never_a_held_out_scene(tmp_path):
    """train/extra_photos.py: every listed photo's original joins the training split, except the
    originals of held-out photos; art and thumbnails never do."""
    import csv

    from .conftest import load_train_script

    extra = load_train_script("extra_photos")
    listed = list(csv.DictReader(open(extra.LIST, newline=""), delimiter="\t"))
    photos_rows = [row for row in listed if row["kind"] == "photo"]
    root = tmp_path / "usr" / "share"
    for row in listed:  # every listed file, as a tiny image, where the packages put it
        (root / row["path_in_package"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / row["path_in_package"], format="PNG")
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"p{i:02d}.png" for i in range(10)]  # p04 and p09 are held out
    manifest = [("file", "package", "path_in_package")]
    for name, row in zip(names, photos_rows):  # the first ten listed photos have a resized copy
        Image.new("RGB", (8, 8)).save(photos / name)
        manifest.append((name, row["package"] + "=1.0 (deb)", row["path_in_package"]))
    (photos / "MANIFEST.tsv").write_text("".join("\t".join(r) + "\n" for r in manifest))
    extra.main(["--packages_root", str(root), "--photos", str(photos), "--output_dir", str(tmp_path / "out")])
    made = sorted(p.name for p in (tmp_path / "out").iterdir())
    originals = [n for n in made if ".full." in n]
    assert len(originals) == len(photos_rows) - 2
    left_out = {extra.scene(photos_rows[i]["package"], photos_rows[i]["path_in_package"])[1] for i in (4, 9)}
    assert not [n for n in originals if n.split("__")[1].split(".full")[0] in left_out]
    assert [n for n in made if n.endswith(".png")] == [n for i, n in enumerate(names) if i % 5 != 4]
    assert "SOURCES.tsv" in made and len(made) == len(originals) + 8 + 1
