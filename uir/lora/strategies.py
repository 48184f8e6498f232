"""How the per-image expert weights ``s`` are chosen (UIR-LoRA eq. 4 and the Table 3 ablation).

* ``router``: the router's ``s_o`` (eq. 3) restricted to the loaded experts, then Top-K::

      s = M_K * s_o / sum(M_K * s_o)                          (eq. 4)

  with ``M_K`` the mask of the ``K`` largest entries; ``K`` defaults to :data:`DEFAULT_TOP_K`
  everywhere (pipelines, CLI, evaluation).
  A vocabulary entry ``clean`` (:data:`~uir.degradations.CLEAN`) competes in Top-K as the
  identity expert: its share ``c`` of ``s`` keeps the input, ``x_out = c x + (1 - c) f(x; s')``
  with ``s'`` the expert weights renormalised (the pipeline applies it). Inputs below the
  router's ``min_confidence`` get the ``low_confidence`` policy instead: ``soft`` keeps the
  :data:`SOFT_TOP_K` largest entries (eq. 4 with that K), ``base`` no expert at all (the base
  restores alone), ``identity`` the input unchanged (clean weight 1).

  With an **expected-gain table** (the router's ``expected_gains``, fitted by
  ``train/fit_expected_gains.py`` on training photos) the table decides instead of the
  threshold. For an image whose top class is ``c``, and whose confidence is above or below
  ``min_confidence`` (``known`` / ``unsure``), it holds the measured PSNR change of each of
  :data:`GAIN_CANDIDATES`: ``expert`` (eq. 4's weights, as above), ``half`` (its output
  averaged with the input: a blend toward the input), ``base`` (no expert), ``identity`` (0 by
  definition) and, for a class with a classical prior (:data:`uir.classical.PRIORS`, e.g. the
  dark channel for ``hazy``), ``prior`` (the prior alone) and ``prior-expert`` (the prior's
  output averaged with the expert's). Each image gets the candidate with the largest ``mean - standard error`` (a
  gain measured on few images, or varying widely, must clear its own uncertainty to beat
  leaving the image alone). No anchor paper has this rule; UniRestorer's coarse fallback is
  the nearest. For a class whose severity an image shows to a classical measurement
  (:data:`uir.classical.SEVERITY_MEASURES`: the noise's sigma, a JPEG's quality) the bin is also
  split by that severity, read as the registry's nearest level (``known/mild``, ...,
  :func:`gain_bin`): what pays at sigma 50 need not pay at sigma 15. The first step of a call the
  pipeline splits between two classes (noise, then low light:
  :func:`uir.pipelines.restoring.split_readings`) has its own bin, ``split`` (``split/severe``,
  ...), where the table has one: each gain there is the whole chain's, the candidate as the first
  step and the second step as the pipeline runs it, against the input; a table without the bin
  reads the first step's ``known`` bin.
* ``manual``: weights given by the user, a ``{degradation: weight}`` dict or a (B,K)/(K,) tensor,
  used as given (the paper lets users specify ``s``), each in :data:`MANUAL_WEIGHT_RANGE`
  (an expert at 1 acts as trained; a negative or huge weight would only wreck the image).
* ``average``: ``1/K`` for every expert.
* ``random``: one expert drawn uniformly per image (weight 1), from ``generator``.
"""

from __future__ import annotations

import math

import torch

from ..degradations.families import CLEAN

STRATEGIES = ("router", "manual", "average", "random")
LOW_CONFIDENCE_POLICIES = ("soft", "base", "identity")
#: what an expected-gain table chooses between (module docstring), each as ``(a, p, e)``: the
#: shares of the output that are the input and the class's classical prior
#: (:data:`uir.classical.PRIORS`), and whether the network's share runs eq. 4's experts (else
#: the base alone): ``x_out = a x + p P(x) + (1 - a - p) f(x; e s)``
GAIN_CANDIDATES = {"identity": (1.0, 0.0, 0), "base": (0.0, 0.0, 0), "half": (0.5, 0.0, 1), "expert": (0.0, 0.0, 1),
                   "prior": (0.0, 1.0, 0), "prior-expert": (0.0, 0.5, 1)}
#: the router's two confidence bins in an expected-gain table (each also split by a measured
#: severity, :func:`gain_bin`)
GAIN_BINS = ("known", "unsure")
#: the bin of a split call's first step (module docstring), split by severity as the others
SPLIT_BIN = "split"
#: entries an unsure router keeps under the ``soft`` policy
SOFT_TOP_K = 3
#: experts the router keeps per image unless told otherwise: the single best one measured best
#: on the embedded default (README, "default (router, top-1)")
DEFAULT_TOP_K = 1
#: the range of each manual weight: eq. 4's weights lie in [0, 1]
MANUAL_WEIGHT_RANGE = (0.0, 1.0)


def check_manual_weights(values) -> None:
    """A one-line ``ValueError`` unless every weight is a number in :data:`MANUAL_WEIGHT_RANGE`."""
    values = torch.as_tensor(values, dtype=torch.float64)
    low, high = MANUAL_WEIGHT_RANGE
    bad = values[~((values >= low) & (values <= high))]
    if bad.numel():
        raise ValueError(f"expert weights must lie in [{low:g}, {high:g}], got {bad[0].item():g}")


def top_k_weights(probabilities: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 4: keep the ``k`` largest entries of each row and renormalise them to sum 1."""
    if not 1 <= k <= probabilities.shape[-1]:
        raise ValueError(f"top_k must be in [1, {probabilities.shape[-1]}], got {k}")
    keep = torch.zeros_like(probabilities).scatter(-1, probabilities.topk(k, dim=-1).indices, 1.0)
    masked = probabilities * keep
    return masked / masked.sum(-1, keepdim=True).clamp(min=1e-12)


def manual_weights(weights, expert_names: list[str], batch: int) -> torch.Tensor:
    """(B, K) weights from a ``{name: weight}`` dict or a tensor."""
    k = len(expert_names)
    if isinstance(weights, dict):
        unknown = sorted(set(weights) - set(expert_names))
        if unknown:
            raise ValueError(f"no expert loaded for {', '.join(unknown)}; loaded experts: {', '.join(expert_names)}")
        row = torch.tensor([float(weights.get(name, 0.0)) for name in expert_names])
        rows = row.expand(batch, k)
    else:
        rows = torch.as_tensor(weights, dtype=torch.float32)
        rows = rows.expand(batch, k) if rows.shape == (k,) else rows
        if rows.shape != (batch, k):
            raise ValueError(f"weights must have shape ({k},) or ({batch}, {k}) for {k} experts, got {tuple(rows.shape)}")
    check_manual_weights(rows)
    return rows.float().contiguous()


def check_low_confidence(policy: str) -> str:
    """``policy`` if it is one of :data:`LOW_CONFIDENCE_POLICIES`, else a ``ValueError``."""
    if policy not in LOW_CONFIDENCE_POLICIES:
        raise ValueError(f"low_confidence must be one of {', '.join(LOW_CONFIDENCE_POLICIES)}, got {policy!r}")
    return policy


def gain_bin(known: bool, severity: str | None = None, split: bool = False) -> str:
    """The bin of an expected-gain table that holds an image: its confidence bin
    (:data:`GAIN_BINS`), or :data:`SPLIT_BIN` for the first step of a split call, followed by
    ``/`` and the severity its class measures where there is one
    (:func:`uir.classical.measured_severities`), e.g. ``known/mild``."""
    confidence = SPLIT_BIN if split else GAIN_BINS[0] if known else GAIN_BINS[1]
    return confidence if severity is None else f"{confidence}/{severity}"


def expected_gain_table(samples) -> dict:
    """The table of the expected-gain rule from measured ``(top class, bin, candidate, gain
    in dB, ...)`` samples, the bin by :func:`gain_bin` (fields after the fourth, such as the true
    class a fit records, are not used): ``{class: {bin: {candidate: [mean, standard error, count]}}}``
    (a candidate measured once has no standard error: ``None``, ``null`` in JSON, which the rule
    reads as unbounded), checked by
    :func:`check_expected_gain_table`."""
    groups: dict = {}
    for name, bin_name, candidate, gain, *_ in samples:
        groups.setdefault(name, {}).setdefault(bin_name, {}).setdefault(candidate, []).append(float(gain))
    table = {}
    for name, bins in groups.items():
        for bin_name, candidates in bins.items():
            for candidate, gains in candidates.items():
                values = torch.tensor(gains, dtype=torch.float64)
                error = float(values.std() / len(gains) ** 0.5) if len(gains) > 1 else None
                table.setdefault(name, {}).setdefault(bin_name, {})[candidate] = [float(values.mean()), error,
                                                                                   len(gains)]
    return check_expected_gain_table(table)


def check_expected_gain_table(table: dict) -> dict:
    """``table`` if it is an expected-gain table uir can apply, else a one-line ``ValueError``:
    known bins and candidates, ``[mean, standard error, count]`` cells, and a prior candidate
    only for a class with a classical prior (:data:`uir.classical.PRIORS`)."""
    from ..classical import PRIORS
    from ..degradations import SEVERITIES

    bins_allowed = [gain_bin(known, severity, split) for split, known in ((False, True), (False, False), (True, True))
                    for severity in (None, *SEVERITIES)]
    for name, bins in table.items():
        for bin_name, cells in bins.items():
            if bin_name not in bins_allowed:
                raise ValueError(f"expected-gain table: class {name!r} has a bin {bin_name!r}; valid bins: "
                                 f"{', '.join(bins_allowed)}")
            for candidate, cell in cells.items():
                if candidate not in GAIN_CANDIDATES:
                    raise ValueError(f"expected-gain table: unknown candidate {candidate!r} for {name!r}; valid "
                                     f"choices: {', '.join(GAIN_CANDIDATES)}")
                if GAIN_CANDIDATES[candidate][1] > 0 and name not in PRIORS:
                    raise ValueError(f"expected-gain table: {candidate!r} for {name!r}, which has no classical prior "
                                     f"(classes with one: {', '.join(PRIORS)})")
                if not (isinstance(cell, (list, tuple)) and len(cell) == 3
                        and (cell[1] is None or isinstance(cell[1], (int, float)) and cell[1] >= 0)):
                    raise ValueError(f"expected-gain table: the cell {name}/{bin_name}/{candidate} must be "
                                     f"[mean, standard error (null if unknown), count], got {cell!r}")
    return table


def split_by_severity(table: dict, name: str) -> bool:
    """Whether the expected-gain ``table`` was fitted for class ``name`` by severity (:func:`gain_bin`)."""
    return any("/" in bin_name for bin_name in table.get(name, {}))


def gain_choice(table: dict, name: str, known: bool, severity: str | None = None, split: bool = False) -> str:
    """The candidate the expected-gain ``table`` picks for an image whose top class is ``name``,
    in the bin of its confidence and measured ``severity`` (:func:`gain_bin`; where the table did
    not split the class by severity, its confidence bin alone), or, for the first step of a
    ``split`` call, in the split bin where the table has it: the largest ``mean - standard error``;
    ``identity`` (exactly 0) when nothing clears it, and for a class or bin the table never
    measured. An unknown standard error (one measurement) clears nothing."""
    bins, severity = table.get(name, {}), severity if split_by_severity(table, name) else None
    cells = bins.get(gain_bin(known, severity, split=True)) if split else None
    cells = bins.get(gain_bin(known, severity), {}) if cells is None else cells
    scores = {candidate: mean - (math.inf if error is None else error)
              for candidate, (mean, error, _) in cells.items() if candidate != "identity"}
    best = max(scores, key=scores.get, default="identity")
    return best if scores.get(best, 0.0) > 0.0 else "identity"


def router_weights(probabilities: torch.Tensor, vocabulary: list[str], expert_names: list[str], top_k: int,
                   known: torch.Tensor | None = None, low_confidence: str = "soft") -> tuple[torch.Tensor, torch.Tensor]:
    """``(expert weights (B, K), clean weight (B,))`` from the router's ``s_o``: eq. 4 over the
    loaded experts plus ``clean`` when the vocabulary has it; rows not ``known`` follow
    ``low_confidence`` (see the module docstring)."""
    check_low_confidence(low_confidence)
    names = list(expert_names) + ([CLEAN] if CLEAN in vocabulary else [])
    if not names:
        return probabilities.new_zeros(probabilities.shape[0], 0).float(), probabilities.new_zeros(probabilities.shape[0]).float()
    scores = probabilities[:, [vocabulary.index(name) for name in names]].float()
    chosen = top_k_weights(scores, min(top_k, len(names)))
    if known is not None and not bool(known.all()):
        unsure = ~known.to(chosen.device)
        fallback = (top_k_weights(scores, min(SOFT_TOP_K, len(names))) if low_confidence == "soft"
                    else torch.zeros_like(chosen))
        chosen = torch.where(unsure[:, None], fallback, chosen)
    k = len(expert_names)
    clean = chosen[:, k] if len(names) > k else torch.zeros(chosen.shape[0])
    if known is not None and low_confidence == "identity":
        clean = torch.where(~known.to(clean.device), torch.ones_like(clean), clean)
    return chosen[:, :k].contiguous(), clean.contiguous()


def gain_weights(probabilities: torch.Tensor, vocabulary: list[str], expert_names: list[str], top_k: int,
                 known: torch.Tensor | None, table: dict, severities: list[str | None] | None = None,
                 split_rows=()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(expert weights (B, K), clean weight (B,), prior weight (B,))`` by the expected-gain
    ``table``: per image, the candidate :func:`gain_choice` picks for its top class and the
    severity measured of it (``severities``, None: none measured), the rows of ``split_rows``
    being first steps of split calls, built on eq. 4's weights (module docstring). The prior
    weight belongs to the top class's prior."""
    check_expected_gain_table(table)
    weights, clean = router_weights(probabilities, vocabulary, expert_names, top_k)
    prior = torch.zeros_like(clean)
    known = torch.ones(len(weights), dtype=torch.bool) if known is None else known.cpu()
    tops = [vocabulary[i] for i in probabilities.argmax(-1).tolist()]
    severities = [None] * len(tops) if severities is None else severities
    for row, (name, sure, severity) in enumerate(zip(tops, known.tolist(), severities)):
        keep, prior[row], experts = GAIN_CANDIDATES[gain_choice(table, name, sure, severity, row in split_rows)]
        network = 1.0 - keep - float(prior[row])
        weights[row] *= network * experts
        clean[row] = keep + network * experts * clean[row]
    return weights, clean, prior


def expert_weights(strategy: str, expert_names: list[str], batch: int, *, probabilities=None,
                   vocabulary=None, weights=None, top_k: int = DEFAULT_TOP_K, generator=None, known=None,
                   low_confidence: str = "soft", expected_gains: dict | None = None,
                   severities: list[str | None] | None = None, split_rows=()
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(expert weights (B, K), clean weight (B,), prior weight (B,))`` for a batch, by
    ``strategy`` (see the module docstring); the clean and prior weights are zero except under
    the router. ``severities`` and ``split_rows``: what an expected-gain table reads of each
    image besides its call (:func:`gain_weights`)."""
    k = len(expert_names)
    none = torch.zeros(batch)
    if strategy == "router" and weights is None and probabilities is not None:
        if expected_gains is not None:
            return gain_weights(probabilities, vocabulary, expert_names, top_k, known, expected_gains, severities,
                                split_rows)
        return (*router_weights(probabilities, vocabulary, expert_names, top_k, known, low_confidence), none)
    if k == 0 and weights is None and strategy in STRATEGIES:  # no experts: the base model alone
        return torch.zeros(batch, 0), none, none
    if strategy == "manual" or (weights is not None and strategy == "router"):
        if weights is None:
            raise ValueError("strategy='manual' needs weights=")
        return manual_weights(weights, expert_names, batch), none, none
    if strategy == "average":
        return torch.full((batch, k), 1.0 / k), none, none
    if strategy == "random":
        choice = torch.randint(0, k, (batch,), generator=generator)
        return torch.nn.functional.one_hot(choice, k).float(), none, none
    if strategy == "router":
        raise ValueError("strategy='router' needs a router; load one or pass weights=")
    raise ValueError(f"unknown strategy {strategy!r}; valid choices: {', '.join(STRATEGIES)}")
