"""The names of every registered degradation, by family, importable without torch (the CLI
parses ``--degradations`` before it imports anything heavy). :mod:`.catalog` registers
exactly these names, and refuses to import if the two ever differ."""

from __future__ import annotations

import argparse

#: the ten degradation types of UIR-LoRA, named as DA-CLIP names them: the default router's
#: vocabulary (it adds :data:`CLEAN`), the default's experts, and what ``--degradations all`` means
DEFAULT_VOCABULARY = (
    "motion-blurry",
    "hazy",
    "jpeg-compressed",
    "low-light",
    "noisy",
    "raindrop",
    "rainy",
    "shadowed",
    "snowy",
    "uncompleted",
)
GRIDS_TYPES = (
    "gaussian-blur",
    "motion-blur",
    "rl-artifacts",
    "bicubic-sr",
    "ringing",
    "defocus-blur",
    "jpeg",
    "poisson-noise",
    "inpainting",
    "gaussian-noise",
    "salt-pepper",
)
#: the undegraded class: an identity degradation, and the router's vocabulary entry for photos
#: that need no restoration (its weight keeps the input unchanged)
CLEAN = "clean"
LIRA_TYPES = ("lira-blended", "lira-blended-haze", "lira-blended-dark")
#: the single factors LIRA's experts are trained on (fork stage), over the blend's ranges
LIRA_FACTORS = ("lira-blur", "lira-noise", "lira-jpeg")
#: every registered name, in registration order
ALL_NAMES = DEFAULT_VOCABULARY + GRIDS_TYPES + LIRA_FACTORS + LIRA_TYPES + (CLEAN,)


#: joins the parts of a mixed degradation name, applied left to right: ``low-light+noisy``
MIX = "+"


def mix_parts(name: str) -> list[str]:
    """The degradations a (possibly mixed) name applies, in order: ``["low-light", "noisy"]``."""
    return name.split(MIX)


def parse_names(spec: str) -> list[str]:
    """A ``--degradations`` value: ``"all"`` (:data:`DEFAULT_VOCABULARY`) or comma-separated registered
    names, each possibly a mixture of several joined by ``+`` (``low-light+noisy``).

    Meant as an argparse ``type``: an unknown, repeated or missing name raises
    ``argparse.ArgumentTypeError``, which argparse prints as a one-line usage error."""
    names = list(DEFAULT_VOCABULARY) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no degradation named")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{spec!r} lists a name twice")
    for name in (part for n in names for part in mix_parts(n)):
        if name not in ALL_NAMES:
            raise argparse.ArgumentTypeError(f"unknown degradation {name!r}; valid choices: {', '.join(sorted(ALL_NAMES))}")
    return names


__all__ = ["ALL_NAMES", "CLEAN", "MIX", "mix_parts", "DEFAULT_VOCABULARY", "GRIDS_TYPES", "LIRA_FACTORS", "LIRA_TYPES", "parse_names"]
