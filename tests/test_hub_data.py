"""Training on a Hugging Face ``datasets`` dataset (uir.data.hf_datasets), offline: a small dataset
saved with ``save_to_disk``, map-style and streamed, one process and two."""

import pytest
import torch

from uir.data import SyntheticDegradationDataset
from uir.images import load_image
from uir.testing import save_sample_crops

from .conftest import load_train_script

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

from uir.data.hf_datasets import (DatasetImages, StreamingDegradationDataset, load_training_dataset,  # noqa: E402
                          split_between_processes)


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    folder = save_sample_crops(tmp_path_factory.mktemp("crops"), 6, 48, 48)
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def saved_dataset(photo_files, tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("hf") / "ds"
    ds = datasets.Dataset.from_dict({"image": [Image.open(p).convert("RGB") for p in photo_files],
                                     "caption": [p.stem for p in photo_files]})
    ds.cast_column("image", datasets.Image()).save_to_disk(str(folder))
    return folder


def test_map_style_dataset_items_equal_the_same_images_as_files(saved_dataset, photo_files):
    data = load_training_dataset(str(saved_dataset))
    names = ["noisy", "hazy"]
    from_hub = SyntheticDegradationDataset(DatasetImages(data), names, crop_size=32, flip=True, seed=3)
    from_files = SyntheticDegradationDataset(photo_files, names, crop_size=32, flip=True, seed=3)
    assert len(from_hub) == len(from_files) == 12
    for i in (0, 5, 7, 11):
        a, b = from_hub[i], from_files[i]
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"]) and a["degradation"] == b["degradation"]
    assert from_hub[7]["path"] == "image#1"
    with pytest.raises(KeyError, match="--image_column"):
        DatasetImages(data, "picture")[0]


def _stream_items(saved_dataset, rank, world, epoch=0):
    stream = split_between_processes(load_training_dataset(str(saved_dataset), streaming=True), rank, world)
    items = StreamingDegradationDataset(stream, ["noisy", "hazy", "clean"], crop_size=32, flip=True, seed=1)
    items.set_epoch(epoch)
    return {item["path"]: item for item in items}


def test_stream_is_split_without_overlap_and_degraded_per_example(saved_dataset, photo_files):
    whole = _stream_items(saved_dataset, 0, 1)
    parts = [_stream_items(saved_dataset, rank, 2) for rank in (0, 1)]
    assert len(whole) == 6 and all(parts)
    assert not set(parts[0]) & set(parts[1]) and set(parts[0]) | set(parts[1]) == set(whole)
    for part in parts:  # the same example is degraded the same way whatever the process count
        for key, item in part.items():
            assert torch.equal(item["lq"], whole[key]["lq"]) and item["degradation"] == whole[key]["degradation"]
    assert len({item["degradation"] for item in whole.values()}) > 1
    again = _stream_items(saved_dataset, 0, 1, epoch=1)
    assert any(not torch.equal(again[k]["lq"], whole[k]["lq"]) for k in whole), "a new epoch, new draws"
    assert all(item["gt"].shape == (3, 32, 32) for item in whole.values())
    assert {load_image(p).shape for p in photo_files} == {(3, 48, 48)}


def test_trainers_read_a_dataset_and_stream_it(saved_dataset, tmp_path):
    train_restorer = load_train_script("train_restorer")
    common = ["--dataset_name", str(saved_dataset), "--resolution", "32", "--train_batch_size", "2",
              "--max_train_steps", "4", "--validation_steps", "0", "--num_validation_images", "0",
              "--checkpointing_steps", "2", "--degradations", "noisy,hazy"]
    for streaming in ([], ["--streaming"]):
        out = tmp_path / f"run{len(streaming)}"
        train_restorer.main(common + streaming + ["--output_dir", str(out)])
        assert (out / "pipeline" / "model_index.json").is_file() and (out / "checkpoint-4").is_dir()
    train_uir_lora = load_train_script("train_uir_lora")
    with pytest.raises(ValueError, match="mix types"):
        train_uir_lora.main(common + ["--streaming", "--pretrained_model_name_or_path", str(tmp_path / "run0" / "pipeline"),
                                      "--output_dir", str(tmp_path / "experts")])
