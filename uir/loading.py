"""Alias of :mod:`uir.pipelines.loading`, where loading a pipeline by name lives."""

from .pipelines.loading import DEFAULT_MODEL, default_model_dir, load_pipeline, saved_pipeline_class

__all__ = ["DEFAULT_MODEL", "default_model_dir", "load_pipeline", "saved_pipeline_class"]
