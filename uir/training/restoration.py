"""What the restoration trainers share beyond the loop: the pipeline to train, the loss, the
validator, and the check of a saved model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch


def load_uir_lora_pipeline(args):
    """The pipeline to train experts on: UIR-LoRA on SD-turbo, or a saved RestorerPipeline
    (``default`` names the embedded one), with any experts it already holds removed: a new
    expert trains on the base alone. Gradient checkpointing when asked for."""
    from ..pipelines import RestorerPipeline, UIRLoRAPipeline
    from ..pipelines.loading import model_path
    from ..pipelines.saved import read_saved_pipeline

    model = model_path(args.pretrained_model_name_or_path)
    saved = read_saved_pipeline(model)
    if saved is not None:
        if args.vae:
            raise ValueError("--vae applies to SD-turbo, not to a saved pipeline")
        pipe = (RestorerPipeline if saved.class_name == "RestorerPipeline" else UIRLoRAPipeline).from_pretrained(
            model, use_safetensors=True)
        pipe.remove_experts()
    else:
        pipe = UIRLoRAPipeline.from_sd_turbo(model, vae=args.vae)
    if args.gradient_checkpointing and isinstance(pipe, UIRLoRAPipeline):
        pipe.unet.enable_gradient_checkpointing()
        pipe.vae.enable_gradient_checkpointing()
    return pipe


def restoration_loss(lpips_weight: float = 0.0, kind: str = "l2") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """L2 (or L1), plus ``lpips_weight`` x LPIPS; fails at once (not mid-run) when LPIPS is unavailable."""
    import torch.nn.functional as F

    if lpips_weight:
        from ..metrics import lpips

        probe = torch.zeros(1, 3, 32, 32)
        lpips(probe, probe)  # raises LPIPSUnavailableError naming what is missing

    def loss(restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = F.mse_loss if kind == "l2" else F.l1_loss
        value = distance(restored.float(), target.float())
        if lpips_weight:
            value = value + lpips_weight * lpips(restored.float(), target.float()).mean()
        return value

    return loss


def restoration_validator(restore: Callable[[torch.Tensor, str], torch.Tensor], files, names, output_dir,
                          seed: int = 0) -> Callable[[int], dict]:
    """A ``validate(step)`` for restorers: PSNR on held-out ``files`` under each of ``names``
    (protocol severities), logged as ``val_psnr/<name>``; writes ``validation/step-N.png``
    (input | output | ground truth per degradation)."""
    from ..evaluation import comparison_grid, evaluate_restoration
    from ..images import save_image

    def validate(step: int) -> dict:
        rows = []

        def keep_first(pair, restored):
            if pair.path == str(files[0]):
                rows.append((pair.name, [pair.lq, restored, pair.gt]))

        scores = evaluate_restoration(lambda lq, pair: restore(lq, pair.name), files, names, seed=seed,
                                      on_pair=keep_first)
        save_image(comparison_grid(rows), Path(output_dir) / "validation" / f"step-{step}.png")
        logs = {f"val_psnr/{name}": value for name, value in scores.psnr_out.items()}
        logs["val_psnr"] = scores.mean("psnr_out")
        logs["val_psnr_input"] = scores.mean("psnr_in")
        return logs

    return validate


def saved_model_config(folder) -> dict:
    """The ``config.json`` of a saved model folder; a one-line exit when there is none."""
    config = Path(str(folder)) / "config.json"
    if not config.is_file():
        raise SystemExit(f"{folder} is not a saved model folder (no config.json)")
    return json.loads(config.read_text())


__all__ = ["load_uir_lora_pipeline", "restoration_loss", "restoration_validator", "saved_model_config"]
