"""The base fingerprint: which base weights an expert was trained on.

An expert records its base's fingerprint (``base_fingerprint`` in ``uir_expert.json``) and a
pipeline refuses an expert whose fingerprint does not match its own base. The match must hold
for the same base loaded in another dtype: ``from_pretrained(..., torch_dtype=torch.float16)``,
SD-turbo's ``fp16`` variant, a pipeline saved in bfloat16. No exact hash of rounded values can
do that: float32 -> bfloat16 and float32 -> float16 -> bfloat16 round about one value in
sixteen differently, and every rounding grid has values next to its edges. So the fingerprint
has an exact part and a tolerant part::

    <16 hex digits>:<one byte per tensor, hex>

* the digits: SHA-256 over each tensor's component, name and shape (the architecture);
* the bytes: per tensor, ``round(127 z)`` with ``z = sum_i t_i v_i / sum_i |v_i|`` over 64
  evenly spaced values ``v_i`` and the Thue-Morse signs ``t_i = (-1)^popcount(i)``.

Two fingerprints match when the digits are equal and every byte is within 1. Casting the
embedded default's weights to float16, bfloat16 or float16 then bfloat16 moves ``z`` by at most
8e-4, a tenth of a byte step, while ``z`` of unrelated tensors spreads with a standard deviation
near 0.17: a retrained base differs in most bytes.

Experts written before this form carry 16 hex digits only (SHA-256 over names, shapes and the
values rounded to bfloat16); those are compared exactly with :func:`legacy_base_fingerprint`,
which holds for float32 and bfloat16 loads of their base.
"""

from __future__ import annotations

import hashlib

import torch

FINGERPRINT_KEY = "base_fingerprint"
SAMPLES = 64
#: bytes of two fingerprints of one base may differ by this much (casts move them < 0.1)
BYTE_TOLERANCE = 1
_SIGNS = torch.tensor([(-1.0) ** bin(i).count("1") for i in range(SAMPLES)], dtype=torch.float64)


def _base_tensors(models: dict[str, torch.nn.Module]):
    """``(component.name, tensor)`` of every base weight, in a fixed order; expert mixture layers
    are skipped (their base layer counts under its own name), so experts do not change it."""
    for component in sorted(models):
        for name, tensor in sorted(models[component].state_dict().items()):
            if "lora_" not in name:
                yield f"{component}.{name.replace('.base.', '.')}", tensor.detach()


def _samples(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.reshape(-1)
    return flat[:: max(1, flat.numel() // SAMPLES)][:SAMPLES]


def _value_byte(tensor: torch.Tensor) -> int:
    values = _samples(tensor).to(device="cpu", dtype=torch.float64)
    total = float(values.abs().sum())
    z = float((_SIGNS[: values.numel()] * values).sum()) / total if total > 0 else 0.0
    return round(127 * z) & 0xFF


def base_fingerprint(models: dict[str, torch.nn.Module]) -> str:
    """The fingerprint of the base weights of ``models`` (``{component name: module}``); see the
    module docstring for its form."""
    architecture = hashlib.sha256()
    values = bytearray()
    for name, tensor in _base_tensors(models):
        architecture.update(f"{name}{tuple(tensor.shape)}".encode())
        values.append(_value_byte(tensor))
    return f"{architecture.hexdigest()[:16]}:{values.hex()}"


def legacy_base_fingerprint(models: dict[str, torch.nn.Module]) -> str:
    """The first fingerprint form: 16 hex digits of SHA-256 over names, shapes and 64 values per
    tensor rounded to bfloat16 (exact for float32 and bfloat16 loads only)."""
    digest = hashlib.sha256()
    for name, tensor in _base_tensors(models):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(_samples(tensor).to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def fingerprints_match(recorded: str, fingerprint: str, models: dict[str, torch.nn.Module]) -> bool:
    """Whether an expert's ``recorded`` fingerprint names the base whose :func:`base_fingerprint`
    is ``fingerprint`` (of ``models``, needed only for a legacy 16-digit one)."""
    if ":" not in recorded:
        return recorded == legacy_base_fingerprint(models)
    theirs, ours = recorded.split(":", 1), fingerprint.split(":", 1)
    if theirs[0] != ours[0] or len(theirs[1]) != len(ours[1]):
        return False
    try:
        a, b = bytes.fromhex(theirs[1]), bytes.fromhex(ours[1])
    except ValueError:
        return False
    signed = lambda byte: byte - 256 if byte > 127 else byte  # noqa: E731
    return all(abs(signed(x) - signed(y)) <= BYTE_TOLERANCE for x, y in zip(a, b))


def short_fingerprint(fingerprint: str) -> str:
    """A fingerprint as 16 + 8 hex digits, for messages: the architecture digest and a digest
    of the value bytes (two matching fingerprints may still differ in the second part)."""
    if ":" not in fingerprint:
        return fingerprint
    architecture, values = fingerprint.split(":", 1)
    return f"{architecture}:{hashlib.sha256(values.encode()).hexdigest()[:8]}"


__all__ = ["FINGERPRINT_KEY", "base_fingerprint", "fingerprints_match", "legacy_base_fingerprint",
           "short_fingerprint"]
