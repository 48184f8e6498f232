"""Plain torch networks, importable without diffusers: what a diffusers model in
:mod:`uir.models` and the diffusers-free runtime (:mod:`uir.pipelines.runtime`) share.

* :mod:`.nafnet`: the NAFNet restorer (the embedded default's);
* :mod:`.clip_vision`: CLIP's vision transformer, in open_clip's parameter layout, for routing.
"""


def load_weights(network, state: dict, source) -> None:
    """Load a saved ``state`` into ``network`` (strict); weights that do not fit its config (a
    missing or unexpected name, another shape) raise one line naming ``source``."""
    try:
        network.load_state_dict(state)
    except RuntimeError as reason:
        lines = " ".join(line.strip() for line in str(reason).strip().splitlines()[:2])
        raise ValueError(f"{source}: the weights do not fit the config ({lines})") from None


__all__ = ["load_weights"]
