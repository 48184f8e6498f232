"""Where :class:`~uir.models.experts.ExpertListModel` lived, as ``ExpertBank``: pipeline folders
saved then record ``["uir.lora.bank", "ExpertBank"]`` in ``model_index.json``, and diffusers
imports that path to load them. diffusers also looks up the component's loadable base class
(``ModelMixin``) in that module.
"""

from diffusers import ModelMixin  # noqa: F401

from uir.models.experts import ExpertListModel as ExpertBank

__all__ = ["ExpertBank"]
