"""Wrappers that rebuild any restorer from its class path and config (DL-Net, the
diffusion-training time conditioning), so that ``from_pretrained`` works on the wrapper."""

from __future__ import annotations

from diffusers import ConfigMixin, ModelMixin

from uir.backbones import import_class


def import_model_class(path: str) -> type:
    """The ``ModelMixin`` + ``ConfigMixin`` class at dotted ``path``."""
    cls = import_class(path)
    if not (issubclass(cls, ModelMixin) and issubclass(cls, ConfigMixin)):
        raise ValueError(f"{path} is not a ModelMixin + ConfigMixin class")
    return cls


def wrap_model(cls: type, inner: ModelMixin, role: str, **kwargs) -> ModelMixin:
    """``cls(<role>_class=..., <role>_config=..., **kwargs)`` around ``inner``, with ``inner``'s
    weights copied into the wrapper's ``<role>`` module and placed on ``inner``'s device."""
    inner_class, config = model_class_and_config(inner)
    wrapper = cls(**{f"{role}_class": inner_class, f"{role}_config": config}, **kwargs)
    getattr(wrapper, role).load_state_dict(inner.state_dict())
    return wrapper.to(inner.device)


def model_class_and_config(model: ModelMixin) -> tuple[str, dict]:
    """(dotted class path, public config) of ``model``: what :func:`import_model_class` rebuilds it from."""
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}", {k: v for k, v in model.config.items() if not k.startswith("_")}
