"""Time-sequential Incremental Training, TIT (diffusion-training-enhanced IR, sec. 3.3, Alg. 4-5).

Tasks are sorted by their matched timestep and injected one stage at a time, ``i = n, ..., 1``
over the ascending ``t_mat`` list: the largest ``t_mat`` first, like a reverse diffusion that
runs from ``T`` down to 1 (Fig. 5). Stage ``k`` starts from the weights of stage ``k - 1`` (the
first from the pre-trained network) and trains on every task injected so far, each sample
conditioned on its own type's ``t_mat`` (our reading of "inject"); ``descending=False`` injects
in ascending order. ``cumulative=False`` is the authors' code: each stage trains on its new task
only, so every task gets the same number of steps whatever the order.
"""

from __future__ import annotations


def time_sequential_order(t_mat: dict[str, int], descending: bool = True) -> list[str]:
    """Task names sorted by ``t_mat`` (ties by name), largest first unless ``descending=False``."""
    if not t_mat:
        raise ValueError("no tasks given")
    return sorted(t_mat, key=lambda name: ((-t_mat[name]) if descending else t_mat[name], name))


def incremental_stages(order: list[str], cumulative: bool = True) -> list[list[str]]:
    """The task set of every stage: stage ``k`` trains on the first ``k + 1`` tasks of ``order``
    (the last one is the task it injects), or on task ``k`` alone unless ``cumulative``."""
    return [list(order[: k + 1]) if cumulative else [order[k]] for k in range(len(order))]


__all__ = ["incremental_stages", "time_sequential_order"]
