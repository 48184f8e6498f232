"""Plain torch networks, importable without diffusers: what a diffusers model in
:mod:`uir.models` and the diffusers-free runtime (:mod:`uir.pipelines.runtime`) share.

* :mod:`.nafnet`: the NAFNet restorer (the embedded default's);
* :mod:`.clip_vision`: CLIP's vision transformer, in open_clip's parameter layout, for routing.
"""
