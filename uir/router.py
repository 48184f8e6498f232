"""Where :class:`~uir.models.router.DegradationRouter` lived: pipeline folders saved then
record ``["uir.router", "DegradationRouter"]`` in ``model_index.json``, and diffusers imports
that path to load them. diffusers also looks up the component's loadable base class
(``ModelMixin``) in that module.
"""

from diffusers import ModelMixin  # noqa: F401

from uir.models.router import DegradationRouter

__all__ = ["DegradationRouter"]
