import numpy as np
import pytest
import torch
from PIL import Image

from uir import sample_image_path
from uir.data.photos import default_photos_dir


@pytest.fixture(scope="session")
def photos_dir():
    root = default_photos_dir()
    if root is None or not root.is_dir():
        pytest.skip("real photos not found: set UIR_PHOTOS or place shared/photos beside the repository")
    return root


@pytest.fixture(scope="session")
def sample():
    """The bundled photo as a (3,H,W) float tensor, cropped to 128x160 to keep tests fast."""
    array = np.asarray(Image.open(sample_image_path()).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[:, 40:168, 100:260].contiguous()


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)
