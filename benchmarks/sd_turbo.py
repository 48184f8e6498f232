"""Time the full-size SD-turbo-shaped UIRLoRAPipeline (random weights) with 0, 1, 2 and 10 experts.

    python benchmarks/sd_turbo.py                     # GPU: 512 px, bf16, batch 1 and 8
    python benchmarks/sd_turbo.py --size 128 --batches 1,2 --dtype float32 --repeats 1   # CPU, reduced

The pipeline is SD-turbo's architecture at full size (SD 2.1's UNet, the VAE with skip
connections, the OpenCLIP-H text tower) built from the configs in ``uir.testing``, with ten
random experts at the paper's ranks (UNet 8, VAE 4). Every row restores one batch end to end
(``pipe(images, weights=...)``): the VAE encoder, one UNet step, the decoder. Expert weights are
given per sample, so the mixture is the per-sample one: ``K`` experts with non-zero weight in
every row, different for each sample; ``K`` = 0 is the frozen base.

Rows are medians of ``--repeats`` timed runs after one warm-up; the ratio column is time over
the ``K`` = 0 time of the same batch, measured in the same run. UIR-LoRA reports 0.44 s at
256 x 256 on an A100.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import tempfile
import time

import torch

from uir.testing import full_size_uir_lora_pipeline, random_expert

EXPERT_NAMES = ("noisy", "hazy", "rainy", "snowy", "low-light", "jpeg-compressed", "motion-blurry", "raindrop",
                "shadowed", "uncompleted")


def clone_expert(expert, name: str, seed: int):
    """``expert`` with fresh random weights of the same shapes and scale (cheaper than building
    PEFT states on a copy of a full-size UNet ten times)."""
    generator = torch.Generator().manual_seed(seed)
    components = {
        part: dataclasses.replace(component, state_dict={
            key: torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * tensor.float().std()
            for key, tensor in component.state_dict.items()})
        for part, component in expert.components.items()}
    return dataclasses.replace(expert, degradation=name, text=name, components=components)


def expert_weights(batch: int, active: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, 10) weights: ``active`` random experts per sample with Dirichlet-like weights."""
    weights = torch.zeros(batch, len(EXPERT_NAMES))
    for row in weights:
        chosen = torch.randperm(len(EXPERT_NAMES), generator=generator)[:active]
        row[chosen] = torch.rand(active, generator=generator) + 0.1
        row /= row.sum().clamp_min(1e-8)
    return weights


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    parser.add_argument("--experts", default="0,1,2,10", help="comma list of K, experts active per sample")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    with tempfile.TemporaryDirectory() as folder:
        pipe = full_size_uir_lora_pipeline(folder)
    first = random_expert(EXPERT_NAMES[0], pipe.unet, pipe.vae, seed=1)
    for k, name in enumerate(EXPERT_NAMES):
        pipe.load_expert(first if k == 0 else clone_expert(first, name, seed=k))
    pipe.to(device, dtype)

    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        images = torch.rand(batch, 3, args.size, args.size, generator=generator)
        times = {}
        for active in [int(k) for k in args.experts.split(",")]:
            weights = expert_weights(batch, active, generator)
            run = functools.partial(pipe, images, weights=weights, output_type="pt", tile_size=None, batch_size=batch)
            with torch.inference_mode():
                run()  # warm-up
                samples = []
                for _ in range(args.repeats):
                    sync()
                    start = time.perf_counter()
                    run()
                    sync()
                    samples.append(time.perf_counter() - start)
            times[active] = statistics.median(samples)
        base = times.get(0)
        for active, seconds in times.items():
            rows.append((batch, active, seconds, seconds / base if base else float("nan")))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"UIRLoRAPipeline, SD-turbo at full size (random weights), {args.size}x{args.size}, {args.dtype}, {name}")
    print("| batch | experts per sample (K) | s per batch | s per image | ratio to K=0 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for batch, active, seconds, ratio in rows:
        print(f"| {batch} | {active} | {seconds:.3f} | {seconds / batch:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
