"""GEF's L_orthog: uir's per-sample form against the definition, value and gradient, one run.

    python benchmarks/dte_orthogonality.py [--width 16] [--size 64] [--batch 8] [--repeats 3]

``fast`` is :func:`uir.dte.per_sample_gradients` (``torch.func`` vmap over grad, only the
parameters in scope) plus :func:`uir.dte.orthogonality_loss` (pair sums as inner products of
sums of unit vectors). ``naive`` is :func:`uir.testing.naive_orthogonality_loss`: one autograd
call per sample and a loop over every pair. Both then back-propagate the loss to all
parameters. Scopes: the generation-sensitive layers at a small and a large ``t_mat``, and all
parameters. Times are medians on this machine; compare the ratio column.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from uir.dte import (
    DiffusionProcess,
    TimeConditionedRestorer,
    from_diffusion_space,
    generation_sensitive_layers,
    orthogonality_loss,
    per_sample_gradients,
    to_diffusion_space,
)
from uir.models import NAFNet
from uir.testing import naive_orthogonality_loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="one generative sample, the rest reconstruction")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TimeConditionedRestorer.wrap(NAFNet(width=args.width))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    process = DiffusionProcess()
    clean = torch.rand(args.batch, 3, args.size, args.size)
    x_t, t_gen, noise = process.noised(to_diffusion_space(clean[:1]))
    lq = (clean[1:] + 0.1 * torch.randn_like(clean[1:])).clamp(0, 1)
    x_rec, y_rec, t_rec = to_diffusion_space(lq), clean[1:], torch.full((args.batch - 1,), 4)

    def gen_sample(forward, x, t, eps):
        return process.prediction_loss(forward(x, t), None, eps, t).sum()

    def rec_sample(forward, x, t, y):
        return F.l1_loss(from_diffusion_space(forward(x, t)), y)

    def fast(names):
        loss = orthogonality_loss(per_sample_gradients(model, names, gen_sample, x_t, t_gen, noise),
                                  per_sample_gradients(model, names, rec_sample, x_rec, t_rec, y_rec))
        loss.backward()
        return loss.item()

    def naive(names):
        forward = lambda x, t: model(x, t)  # noqa: E731
        loss = naive_orthogonality_loss(
            model, names, [gen_sample(forward, x_t, t_gen, noise)],
            [rec_sample(forward, x_rec[i : i + 1], t_rec[i : i + 1], y_rec[i : i + 1]) for i in range(args.batch - 1)])
        loss.backward()
        return loss.item()

    def timed(fn, names):
        times, value = [], None
        for _ in range(args.repeats):
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            value = fn(names)
            times.append(time.perf_counter() - start)
        return statistics.median(times), value

    layers = model.depth_layers()
    scopes = [("shallow, t_mat = 45", generation_sensitive_layers(layers, 45)),
              ("shallow, t_mat = 4", generation_sensitive_layers(layers, 4)),
              ("all parameters", [n for layer in layers for n in layer])]
    print(f"| scope ({args.batch}x3x{args.size}x{args.size}, NAFNet width {args.width}) | parameters | "
          "fast s | naive s | naive / fast | same value |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    params = dict(model.named_parameters())
    for label, names in scopes:
        (fast_s, fast_v), (naive_s, naive_v) = timed(fast, names), timed(naive, names)
        count = sum(params[n].numel() for n in names)
        print(f"| {label} | {count} | {fast_s:.3f} | {naive_s:.3f} | {naive_s / fast_s:.2f} | "
              f"{abs(fast_v - naive_v) < 1e-4 * max(1.0, abs(naive_v))} |")


if __name__ == "__main__":
    main()
