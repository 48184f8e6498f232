"""uir: universal image restoration for diffusers and PEFT.

Submodules, one per concept (docs/architecture.md draws the layers):

* :mod:`uir.degradations`: seeded degradation functions, their registry and DL-Net operators.
* :mod:`uir.data`: datasets, augmentations, single-degradation batches and the photo split.
* :mod:`uir.metrics`: PSNR, SSIM and LPIPS with documented conventions.
* :mod:`uir.images`: safe reading and conversion of images; :mod:`uir.files`: atomic writes.
* :mod:`uir.lora`: LoRA experts, their folder format, the output-space mixture (eq. 5) and
  the strategies that choose the expert weights (Top-K, eq. 4).
* :mod:`uir.networks`: plain torch networks (NAFNet, CLIP's vision tower, the router's eq. 3
  inference); :mod:`uir.models`: the diffusers adapters that extend them (NAFNet, SRResNet,
  the skip-connection VAE, the CLIP degradation router, the expert list as a component).
* :mod:`uir.backbones`: the restorer protocol and the registry of backbones.
* :mod:`uir.pipelines`: ``load_pipeline`` (the one front door), the diffusers-free runtime,
  ``UIRLoRAPipeline`` and ``RestorerPipeline`` (source in the repository's ``pipelines/``).
* :mod:`uir.training`: the accelerate loop, options, checkpoints and losses of ``train/``.
* :mod:`uir.evaluation`: scoring restorers and routers on degraded photos or pairs.
* research ports: :mod:`uir.lira`, :mod:`uir.dlnet`, :mod:`uir.grids`, :mod:`uir.dte`.
* :mod:`uir.testing`: tiny models built from configs, for tests and offline demos.
* :mod:`uir.cli`: the ``uir`` command.
"""

from importlib.resources import files as _files

from .lazy import lazy_attributes

__version__ = "0.1.0"


_LAZY = {
    "UIRLoRAPipeline": "uir.pipelines",
    "RestorerPipeline": "uir.pipelines",
    "load_pipeline": "uir.pipelines.loading",
    "default_model_dir": "uir.pipelines.loading",
    "NAFNet": "uir.models",
    "DegradationRouter": "uir.models.router",
    "SkipAutoencoderKL": "uir.models",
    "LoRAExpert": "uir.lora",
}


#: the heavy classes, and any submodule (``uir.lora``), are imported on first use, so that
#: ``import uir`` and the CLI stay fast
__getattr__ = lazy_attributes(__name__, _LAZY, submodules=True)


def sample_image_path():
    """Path of the bundled CC0 sample photo (scikit-image's "chelsea", 451x300)."""
    return _files("uir") / "assets" / "sample.png"
