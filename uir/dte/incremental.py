"""Time-sequential Incremental Training, TIT (diffusion-training-enhanced IR, sec. 3.3, Alg. 4-5).

Tasks are sorted by their matched timestep and injected one stage at a time, ``i = n, ..., 1``
over the ascending ``t_mat`` list: the largest ``t_mat`` first, like a reverse diffusion that
runs from ``T`` down to 1 (Fig. 5). Stage ``k`` starts from the weights of stage ``k - 1`` (the
first from the pre-trained network) and trains on every task injected so far, each sample
conditioned on its own type's ``t_mat``; ``descending=False`` injects in ascending order.
"""

from __future__ import annotations


def time_sequential_order(t_mat: dict[str, int], descending: bool = True) -> list[str]:
    """Task names sorted by ``t_mat`` (ties by name), largest first unless ``descending=False``."""
    if not t_mat:
        raise ValueError("no tasks given")
    return sorted(t_mat, key=lambda name: ((-t_mat[name]) if descending else t_mat[name], name))


def incremental_stages(order: list[str]) -> list[list[str]]:
    """The task set of every stage: stage ``k`` trains on the first ``k + 1`` tasks of ``order``."""
    return [list(order[: k + 1]) for k in range(len(order))]


__all__ = ["incremental_stages", "time_sequential_order"]
