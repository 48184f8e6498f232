"""uir: universal image restoration for diffusers and PEFT.

Submodules, one per concept:

* :mod:`uir.degradations`: seeded degradation functions, their registry and DL-Net operators.
* :mod:`uir.data`: datasets, augmentations, single-degradation batches and the photo split.
* :mod:`uir.metrics`: PSNR, SSIM and LPIPS with documented conventions.
* :mod:`uir.images`: safe reading, conversion and atomic writing of images.
* :mod:`uir.lora`: LoRA experts, their folder format and the output-space mixture (eq. 5).
* :mod:`uir.router`: the CLIP degradation router (eq. 3-4).
* :mod:`uir.models`: models, e.g. the skip-connection VAE.
* :mod:`uir.pipelines`: ``UIRLoRAPipeline`` (source in the repository's ``pipelines/``).
* :mod:`uir.testing`: tiny models built from configs, for tests and offline demos.
* :mod:`uir.cli`: the ``uir`` command.
"""

from importlib.resources import files as _files

__version__ = "0.1.0"


_LAZY = {
    "UIRLoRAPipeline": "uir.pipelines",
    "RestorerPipeline": "uir.pipelines",
    "NAFNet": "uir.models",
    "DegradationRouter": "uir.router",
    "SkipAutoencoderKL": "uir.models",
    "LoRAExpert": "uir.lora",
}


def __getattr__(name):
    """Import the heavy classes on first use, so ``import uir`` and the CLI stay fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'uir' has no attribute {name!r}")


def sample_image_path():
    """Path of the bundled CC0 sample photo (scikit-image's "chelsea", 451x300)."""
    return _files("uir") / "assets" / "sample.png"
