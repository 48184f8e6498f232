"""Diffusers pipelines of uir, installed as ``uir.pipelines`` (this folder is mapped in pyproject)."""

from .restorer import RestorerPipeline
from .uir_lora import UIRLoRAPipeline, UIRPipelineOutput

__all__ = ["RestorerPipeline", "UIRLoRAPipeline", "UIRPipelineOutput"]
