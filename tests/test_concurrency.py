"""One pipeline shared by several threads: each call gets its own expert weights.

The weights of a call used to be set on the shared mixture layers, so concurrent calls
restored with each other's weights (42 of 48 calls here) without any error."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from uir.pipelines.loading import load_pipeline
from uir.testing import tiny_restorer_pipeline


@pytest.mark.parametrize("kind", ["diffusers", "runtime"])
def test_threads_sharing_a_pipeline_get_their_own_weights(kind):
    if kind == "diffusers":
        pipe, names = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False, scale=4.0), ("noisy", "hazy")
    else:  # what the uir command runs: the embedded default in the torch-only runtime
        pipe, names = load_pipeline(runtime=True), ("noisy", "hazy")
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    rows = [{names[0]: 1.0}, {names[1]: 1.0}, {names[0]: 0.5, names[1]: 0.5}, {}]
    alone = [pipe(x, weights=w, output_type="pt").images for w in rows]
    assert min((a - b).abs().max() for i, a in enumerate(alone) for b in alone[i + 1:]) > 1e-3

    def call(i):
        return i % len(rows), pipe(x, weights=rows[i % len(rows)], output_type="pt").images

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(call, range(48)))
    wrong = sum(not torch.equal(images, alone[k]) for k, images in results)
    assert wrong == 0, f"{wrong} of {len(results)} calls got another call's weights"
