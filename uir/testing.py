"""Models built from configs, with no download: for tests, offline demos and benchmarks.

* :func:`save_tiny_sd_turbo` writes a tiny SD-turbo-shaped checkpoint folder (``unet``, ``vae``,
  ``text_encoder``, ``tokenizer``, ``scheduler``) with ``save_pretrained``, to be loaded back
  through the user's own path, :meth:`UIRLoRAPipeline.from_sd_turbo`.
* :func:`write_clip_tokenizer` writes a CLIP BPE tokenizer from the vocabulary that ships
  inside the open_clip wheel.
* :func:`tiny_router` builds a small open_clip router; :data:`TINY_CLIP` is its config
  (:data:`TINY_CONVNET_CLIP` with a ConvNet image tower).
* :func:`random_expert` makes a PEFT LoRA expert with random (non-zero) weights.
* :func:`tiny_restorer_pipeline` builds a tiny ``RestorerPipeline`` (NAFNet, experts, router).
* :func:`naive_orthogonality_loss` is GEF's L_orthog the slow way, the reference for
  :mod:`uir.dte.regularizers` in tests and ``benchmarks/dte_orthogonality.py``.
* ``SD_TURBO_*`` are the full-size SD-turbo architecture configs, for random-weight benchmarks;
  :func:`full_size_uir_lora_pipeline` builds the whole pipeline from them.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import torch

from .degradations import DEFAULT_VOCABULARY
from .lora.experts import ExpertComponent, LoRAExpert, lora_config
from .lora.mixture import remove_mixture
from .lora.targets import UNET_TARGETS, VAE_TARGETS

TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8, use_linear_projection=True,
)
TINY_VAE = dict(
    block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=32,
)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                 max_position_embeddings=77, projection_dim=32, hidden_act="gelu")
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
#: :data:`TINY_CLIP` with a ConvNet image tower (open_clip's ``ModifiedResNet``: ``layers`` a list)
TINY_CONVNET_CLIP = {**TINY_CLIP, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16}}

# SD-turbo (SD 2.1 architecture at 512 px): the configs of stabilityai/sd-turbo's components.
SD_TURBO_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32,
)
SD_TURBO_VAE = dict(
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=32, layers_per_block=2,
    sample_size=768,
)
SD_TURBO_TEXT = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                     max_position_embeddings=77, projection_dim=512, hidden_act="gelu")
SD_TURBO_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                          prediction_type="epsilon", timestep_spacing="trailing", clip_sample=False,
                          steps_offset=1)


def write_clip_tokenizer(directory) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of the CLIP BPE tokenizer, from open_clip's wheel."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [token + "</w>" for token in vocab]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return directory


def clip_tokenizer(directory):
    from transformers import CLIPTokenizer

    write_clip_tokenizer(directory)
    return CLIPTokenizer(vocab=str(Path(directory) / "vocab.json"), merges=str(Path(directory) / "merges.txt"),
                         model_max_length=77)


def save_sample_crops(folder, count: int, height: int, width: int, step: tuple[int, int] = (40, 60)) -> Path:
    """``count`` crops of the bundled photo into ``folder`` as ``p<i>.png``, crop ``i`` starting at
    ``i * step``: a tiny photo folder for training-script tests."""
    from . import sample_image_path
    from .images import load_image, save_image

    image = load_image(sample_image_path())
    for i in range(count):
        top, left = i * step[0], i * step[1]
        save_image(image[:, top : top + height, left : left + width], Path(folder) / f"p{i}.png")
    return Path(folder)


def save_tiny_sd_turbo(directory, seed: int = 0, unet=TINY_UNET, vae=TINY_VAE, text=TINY_TEXT) -> Path:
    """Write an SD-turbo-shaped checkpoint folder with random weights (default: tiny)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    directory = Path(directory)
    torch.manual_seed(seed)
    UNet2DConditionModel(**unet).save_pretrained(directory / "unet")
    AutoencoderKL(**vae).save_pretrained(directory / "vae")
    tokenizer = clip_tokenizer(directory / "tokenizer_files")
    tokenizer.save_pretrained(directory / "tokenizer")
    config = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **text)
    CLIPTextModel(config).save_pretrained(directory / "text_encoder")
    DDPMScheduler(**SD_TURBO_SCHEDULER).save_pretrained(directory / "scheduler")
    return directory


def full_size_uir_lora_pipeline(tokenizer_dir, seed: int = 0):
    """The SD-turbo-shaped :class:`~uir.pipelines.UIRLoRAPipeline` at full size with random
    weights (SD 2.1's UNet, the VAE with skip connections, the OpenCLIP-H text tower), built
    in memory from the ``SD_TURBO_*`` configs; ``tokenizer_dir`` receives the CLIP tokenizer."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .models import SkipAutoencoderKL
    from .pipelines import UIRLoRAPipeline

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(tokenizer_dir)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                        **SD_TURBO_TEXT))
    return UIRLoRAPipeline(UNet2DConditionModel(**SD_TURBO_UNET), SkipAutoencoderKL(**SD_TURBO_VAE), text, tokenizer,
                           DDPMScheduler(**SD_TURBO_SCHEDULER))


def tiny_router(vocabulary=DEFAULT_VOCABULARY, use_controller: bool = True, seed: int = 0, clip_config=TINY_CLIP,
                **kwargs):
    from .models.router import DegradationRouter

    torch.manual_seed(seed)
    router = DegradationRouter(clip_config=clip_config, vocabulary=list(vocabulary), use_controller=use_controller,
                               **kwargs)
    router.refresh_bank()
    return router


#: the arguments of a tiny router detector (a ``PlaneMap`` of width 4 and two levels), for tests
TINY_DETECTOR = {"width": 4, "encoder_blocks": [1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1]}


def detector_router(attribute: str, bias: float, seed: int = 1, **kwargs):
    """A tiny router (:func:`tiny_router`, in eval mode) holding a :data:`TINY_DETECTOR` under
    ``attribute`` (``drop_detector``, ``shadow_detector``) whose output logit is ``bias``
    everywhere; ``kwargs`` go to the router."""
    router = tiny_router(seed=seed, **{f"{attribute}_config": TINY_DETECTOR}, **kwargs).eval()
    flatten_detector(getattr(router, attribute), bias)
    return router


def flatten_detector(detector: torch.nn.Module, bias: float) -> None:
    """Make a router detector's output logit ``bias`` at every pixel, whatever the image."""
    detector.net.ending.weight.data.zero_()
    detector.net.ending.bias.data.fill_(bias)


def check_detector_round_trip(router, attribute: str, images: torch.Tensor, folder) -> None:
    """Give ``router``'s detector ``attribute`` random weights, save the router to ``folder`` and
    assert that diffusers' loader and the runtime's both map ``images`` as it does and route them
    alike (to rounding: at one thread the convolutions of weights loaded by diffusers round
    differently)."""
    from .files import load_json_object
    from .models.router import DegradationRouter
    from .networks.router import RuntimeRouter

    for parameter in getattr(router, attribute).parameters():
        parameter.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    router.save_pretrained(folder)
    runtime = RuntimeRouter.from_config(load_json_object(Path(folder) / "config.json"),
                                        Path(folder) / "diffusion_pytorch_model.safetensors")
    loaded = DegradationRouter.from_pretrained(folder).eval()
    expected = getattr(router, attribute)(images)
    assert torch.allclose(getattr(runtime, attribute)(images), expected, rtol=0, atol=1e-6)
    assert torch.allclose(getattr(loaded, attribute)(images), expected, rtol=0, atol=1e-6)
    assert runtime(images).names == router(images).names == loaded(images).names


def peft_lora_state(model: torch.nn.Module, rank: int, alpha: float, targets, seed: int = 0):
    """Random LoRA weights made by PEFT itself on a copy of ``model``: (state dict, config dict)."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False)
    plain = copy.deepcopy(model)
    remove_mixture(plain)
    adapted = inject_adapter_in_model(config, plain)
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(adapted).items()}
    return state, lora_config(rank, alpha, list(targets))


def random_expert(name: str, unet=None, vae=None, base_model: str = "", unet_rank: int = 8, vae_rank: int = 4,
                  seed: int = 0, scale: float = 1.0, restorer=None, restorer_rank: int = 8) -> LoRAExpert:
    """A LoRA expert with random weights on the given models (UNet and/or VAE, or a regression
    ``restorer`` with ``expert_targets``), for tests.

    ``scale`` multiplies ``lora_alpha`` so tests can make the expert's effect large or small.
    """
    components = {}
    parts = (("unet", unet, unet_rank, UNET_TARGETS), ("vae", vae, vae_rank, VAE_TARGETS),
             ("restorer", restorer, restorer_rank, getattr(restorer, "expert_targets", ())))
    for offset, (component, model, rank, targets) in enumerate(parts):
        if model is not None:
            state, config = peft_lora_state(model, rank, rank * scale, targets, seed=seed * 3 + offset)
            components[component] = ExpertComponent(state, config)
    return LoRAExpert(name, components, base_model)


TINY_NAFNET = dict(width=8, encoder_blocks=(1, 1), middle_blocks=1, decoder_blocks=(1, 1))


def tiny_restorer_pipeline(names=("noisy", "hazy", "rainy"), router: bool = True, seed: int = 0, scale: float = 2.0):
    """A :class:`~uir.pipelines.RestorerPipeline` with a tiny random NAFNet, random experts
    and (optionally) a tiny router, for tests."""
    from .models.experts import ExpertListModel
    from .models import NAFNet
    from .pipelines import RestorerPipeline

    torch.manual_seed(seed)
    restorer = NAFNet(**TINY_NAFNET)
    pipe = RestorerPipeline(restorer, router=tiny_router(names) if router else None,
                            experts=ExpertListModel(base_model="tiny-nafnet"))
    for i, name in enumerate(names):
        pipe.load_expert(random_expert(name, restorer=restorer, base_model="tiny-nafnet", seed=seed + i, scale=scale))
    return pipe


def naive_orthogonality_loss(model, names, generative_losses, reconstruction_losses):
    """GEF's L_orthog (eq. 6-8) by the definition: one autograd call per sample (kept in the
    graph) over the parameters ``names``, then every pair's cosine in explicit loops."""
    params = [dict(model.named_parameters())[n] for n in names]

    def flat(loss):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, create_graph=True)])

    g_gen, g_rec = [flat(loss) for loss in generative_losses], [flat(loss) for loss in reconstruction_losses]

    def cos(a, b):
        return a @ b / (a.norm() * b.norm())

    s = sum(cos(a, b) for a in g_gen for b in g_rec) / (len(g_gen) * len(g_rec))
    d = (sum(cos(a, b) for a in g_gen for b in g_gen) + sum(cos(a, b) for a in g_rec for b in g_rec)) \
        / (len(g_gen) ** 2 + len(g_rec) ** 2)
    return (1 - s) + d.abs()


def main(argv=None) -> None:
    """``python -m uir.testing sd-turbo DIR`` writes a tiny random SD-turbo-shaped folder;
    ``python -m uir.testing clip FILE`` writes the tiny open_clip config as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m uir.testing", description=main.__doc__)
    parser.add_argument("what", choices=["sd-turbo", "clip"])
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.what == "sd-turbo":
        print(save_tiny_sd_turbo(args.path, seed=args.seed))
    else:
        Path(args.path).write_text(json.dumps(TINY_CLIP, indent=1))
        print(args.path)


if __name__ == "__main__":
    main()
