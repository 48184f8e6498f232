"""uir: universal image restoration for diffusers and PEFT.

Submodules, one per concept:

* :mod:`uir.degradations`: seeded degradation functions, their registry and DL-Net operators.
* :mod:`uir.data`: datasets, augmentations, single-degradation batches and the photo split.
* :mod:`uir.metrics`: PSNR, SSIM and LPIPS with documented conventions.
* :mod:`uir.images`: safe reading, conversion and atomic writing of images.
* :mod:`uir.cli`: the ``uir`` command.
"""

from importlib.resources import files as _files

__version__ = "0.1.0"


def sample_image_path():
    """Path of the bundled CC0 sample photo (scikit-image's "chelsea", 451x300)."""
    return _files("uir") / "assets" / "sample.png"
