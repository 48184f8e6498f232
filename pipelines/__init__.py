"""Diffusers pipelines of uir, installed as ``uir.pipelines`` (this folder is mapped in pyproject)."""

from .uir_lora import UIRLoRAPipeline, UIRPipelineOutput

__all__ = ["UIRLoRAPipeline", "UIRPipelineOutput"]
