"""Forward-time cost of the LoRA mixture against the frozen base UNet, and against the peer.

    python benchmarks/mixture.py [--config small|full] [--batch 8] [--latent 32] [--repeats 3]

Rows (all on the same UNet, same inputs, one process, median of ``--repeats``):

* base: the frozen UNet, no experts;
* fused K=1: one expert merged into the weights (``uir.lora.fused``);
* per-sample K=2 / K=10: 2 or 10 experts loaded, different dense weights for every sample;
* per-sample K=10, top-2: 10 experts, each sample using the 2 the router would pick;
* peer: PEFT ``set_adapters(names, weights)`` looped once per sample (10 adapters), the only
  way PEFT/diffusers give per-sample weights.

The ratio column is time / base time measured in the same run. ``--config small`` is an
SD-shaped UNet at 1/4 width (runs on a CPU); ``--config full`` is SD-turbo's UNet (GPU).

Last, the FLOP floor of per-sample K=10: the base's FLOPs (``torch.utils.flop_counter``) plus,
at every adapted layer, the cheaper of its two forms' extra multiply-adds
(:meth:`uir.lora.LoRAMixtureLayer.extra_macs`), as a ratio to the base.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from diffusers import UNet2DConditionModel

from torch.utils.flop_counter import FlopCounterMode

from uir.lora import fused, install_experts, mixture_layers, mixture_weights
from uir.lora.experts import ExpertComponent
from uir.lora.targets import UNET_RANK, UNET_TARGETS
from uir.lora.strategies import top_k_weights
from uir.testing import SD_TURBO_UNET, peft_lora_state

SMALL_UNET = {**SD_TURBO_UNET, "block_out_channels": (80, 160, 320, 320), "cross_attention_dim": 256,
              "attention_head_dim": (5, 10, 20, 20), "norm_num_groups": 16}


def timed_interleaved(variants, repeats, sync):
    """Median seconds per variant; variants run round-robin so drift hits all of them alike."""
    for _, fn in variants:
        fn()  # warm-up
    times = {name: [] for name, _ in variants}
    for _ in range(repeats):
        for name, fn in variants:
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(times[name])) for name, _ in variants]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["small", "full"], default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    torch.manual_seed(0)
    config = SMALL_UNET if args.config == "small" else SD_TURBO_UNET
    base = UNet2DConditionModel(**config).eval()
    states = [peft_lora_state(base, UNET_RANK, UNET_RANK, UNET_TARGETS, seed=k) for k in range(10)]
    components = [ExpertComponent(state, cfg) for state, cfg in states]

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 4, args.latent, args.latent, generator=g).to(device, dtype)
    t = torch.full((args.batch,), 999, device=device)
    context = torch.randn(args.batch, 77, config["cross_attention_dim"], generator=g).to(device, dtype)

    def model_with(k):
        model = copy.deepcopy(base)
        install_experts(model, components[:k])
        return model.to(device, dtype)

    plain = copy.deepcopy(base).to(device, dtype)
    one, two, ten = model_with(1), model_with(2), model_with(10)
    dense2 = torch.rand(args.batch, 2, generator=g)
    dense10 = torch.rand(args.batch, 10, generator=g)
    top2 = top_k_weights(torch.rand(args.batch, 10, generator=g).softmax(-1), 2)

    def run(model, scope):
        def fn():
            with scope:
                model(x, t, context)
        return fn

    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict

    peer = copy.deepcopy(base)
    names = [f"e{k}" for k in range(10)]
    for name, (state, _) in zip(names, states):
        peer.add_adapter(LoraConfig(r=UNET_RANK, lora_alpha=UNET_RANK, target_modules=list(UNET_TARGETS)), adapter_name=name)
        set_peft_model_state_dict(peer, state, adapter_name=name)
    peer = peer.to(device, dtype)

    def loop():
        for i in range(args.batch):
            peer.set_adapters(names, weights=dense10[i].tolist())
            peer(x[i : i + 1], t[i : i + 1], context[i : i + 1])

    with torch.no_grad(), fused(one, [1.0]):  # fused once, then reused batch after batch
        rows = timed_interleaved([
            ("base (frozen UNet)", lambda: plain(x, t, context)),
            ("fused K=1", lambda: one(x, t, context)),
            ("per-sample K=2", lambda: run(two, mixture_weights(two, dense2))()),
            ("per-sample K=10", lambda: run(ten, mixture_weights(ten, dense10))()),
            ("per-sample K=10, top-2", lambda: run(ten, mixture_weights(ten, top2))()),
            ("peer: PEFT set_adapters per sample, K=10", loop),
        ], args.repeats, sync)
    base_time = rows[0][1]

    print(f"UNet {args.config}, batch {args.batch}, latent {args.latent}x{args.latent} "
          f"(image {8 * args.latent}px), {args.device} {args.dtype}, rank {UNET_RANK} per expert")
    print("| variant | ms per batch | ratio to base |")
    print("| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1000:.0f} | {seconds / base_time:.2f} |")
    ours = dict(rows)["per-sample K=10"]
    print(f"\nper-sample K=10 vs peer loop: {dict(rows)['peer: PEFT set_adapters per sample, K=10'] / ours:.1f}x faster")
    print(f"FLOP floor of per-sample K=10: {flop_floor(plain, ten, dense10, (x, t, context)):.3f}x the base")


def flop_floor(plain, mixed, weights, inputs) -> float:
    """(base FLOPs + sum over adapted layers of 2 min(stacked, merged) extra MACs) / base FLOPs."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        plain(*inputs)
    extra = []
    hooks = [layer.register_forward_pre_hook(
        lambda layer, args: extra.append(2 * min(layer.extra_macs(args[0], weights.shape[0]))))
        for layer in mixture_layers(mixed)]
    try:
        with torch.no_grad(), mixture_weights(mixed, weights):
            mixed(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return 1 + sum(extra) / counter.get_total_flops()


if __name__ == "__main__":
    main()
