"""The diffusion process of generative pre-training (Alg. 1, eq. 11) and its reverse step (Alg. 2).

Images live in ``[-1, 1]`` here (:func:`to_diffusion_space`); the restorer sees the same space
in every mode, so the reverse step can start from a degraded image (timestep matching) and
the restorer output maps back with :func:`from_diffusion_space`.

``noise_model="ddpm"`` (the paper, Alg. 1): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
with diffusers' ``DDPMScheduler`` (``T`` = 50 steps, linear betas rescaled from the 1000-step
DDPM range, so ``abar_T`` is near zero). The reverse step is the DDPM posterior of Alg. 2,
line 8, computed by the scheduler's own ``step``.

``noise_model="additive"`` (the option the authors' public code takes, an IR-SDE-like additive
model): ``x_t = x_0 + s_t eps`` with ``s_t = sqrt(1 - abar_t)``, no shrinking of the signal;
the reverse step is the matching Gaussian posterior
``x_{t-1} = x_t - (s_t^2 - s_{t-1}^2) / s_t * eps_hat + sqrt(s_{t-1}^2 (s_t^2 - s_{t-1}^2)) / s_t * z``.

**What the network predicts** (``prediction_type``), and how a restorer reads it out
(:meth:`DiffusionProcess.estimate_clean`, used for fine-tuning, restoring and the reverse step):

* ``"epsilon"`` (the paper, eq. 11): ``r_theta(x_t, t)`` predicts ``eps``; the image is the
  x0-hat estimate ``(x_t - s_t r) / sqrt(abar_t)`` (``x_t - s_t r`` for the additive model).
  At ``t`` = 0 the estimate is the input itself.
* ``"sample"`` (the authors' public code): a residual denoiser, ``x_0 = x_t - r(x_t, t)``. With
  a backbone whose output is ``x + f(x)`` (NAFNet, LIRA) predicting ``x_0`` is exactly that
  residual form (``r = -f``), so the image is the network's output. Eq. 11's squared error
  then compares the output with ``x_0`` (the authors use an L1 there).

Timesteps are ``1..T`` as in the paper; the scheduler's 0-based index is ``t - 1``.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

NOISE_MODELS = ("ddpm", "additive")
PREDICTION_TYPES = ("epsilon", "sample")


def check_settings(noise_model: str, prediction_type: str) -> None:
    """A ValueError naming the bad one unless both are known (:data:`NOISE_MODELS`, :data:`PREDICTION_TYPES`)."""
    if noise_model not in NOISE_MODELS:
        raise ValueError(f"noise_model must be one of {NOISE_MODELS}, got {noise_model!r}")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def to_diffusion_space(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return image * 2 - 1


def from_diffusion_space(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (not clamped)."""
    return (x + 1) / 2


class DiffusionProcess:
    """The forward and reverse process over timesteps ``1..T``; see the module docstring.

    Args:
        num_timesteps: ``T`` (50 in the paper).
        noise_model: ``"ddpm"`` (the paper) or ``"additive"`` (the public code's choice).
        prediction_type: ``"epsilon"`` (the paper) or ``"sample"`` (the public code's residual denoiser).
        loss_weights: ``gamma_1..gamma_T`` of eq. 11 (default: all 1, the DDPM "simple" loss).
    """

    def __init__(self, num_timesteps: int = 50, noise_model: str = "ddpm", prediction_type: str = "epsilon",
                 loss_weights=None):
        check_settings(noise_model, prediction_type)
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be positive, got {num_timesteps}")
        scale = 1000 / num_timesteps
        self.scheduler = DDPMScheduler(num_train_timesteps=num_timesteps, beta_start=1e-4 * scale,
                                       beta_end=min(0.02 * scale, 0.999), beta_schedule="linear",
                                       clip_sample=False, prediction_type="epsilon", variance_type="fixed_small")
        self.num_timesteps, self.noise_model, self.prediction_type = num_timesteps, noise_model, prediction_type
        weights = torch.ones(num_timesteps) if loss_weights is None else torch.as_tensor(loss_weights, dtype=torch.float32)
        if weights.shape != (num_timesteps,) or (weights < 0).any():
            raise ValueError(f"loss_weights must be {num_timesteps} non-negative numbers")
        self.loss_weights = weights
        self.alphas_cumprod = self.scheduler.alphas_cumprod  # index t - 1

    @classmethod
    def for_model(cls, model) -> "DiffusionProcess":
        """The process a :class:`~uir.dte.TimeConditionedRestorer` was configured for (its ``T``,
        noise model and prediction type)."""
        config = model.config
        return cls(config.num_timesteps, config.noise_model, config.prediction_type)

    def _check(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        if (t < 1).any() or (t > self.num_timesteps).any():
            raise ValueError(f"timesteps must lie in 1..{self.num_timesteps}")
        return t.long()

    def _abar(self, t) -> torch.Tensor:
        """``abar_t`` on the CPU, with ``abar_0 = 1``."""
        t = torch.as_tensor(t).long().cpu()
        return torch.where(t > 0, self.alphas_cumprod[(t - 1).clamp(min=0)], torch.ones(()))

    def noise_level(self, t) -> torch.Tensor:
        """``s_t = sqrt(1 - abar_t)``, with ``s_0 = 0``."""
        return (1 - self._abar(t)).sqrt()

    def signal_level(self, t) -> torch.Tensor:
        """``sqrt(abar_t)`` for the DDPM model (1 at ``t`` = 0), 1 for the additive model."""
        abar = self._abar(t)
        return torch.ones_like(abar) if self.noise_model == "additive" else abar.sqrt()

    def _levels(self, t, like: torch.Tensor):
        """``(sqrt(abar_t), s_t)`` shaped to broadcast over ``like`` (B,C,H,W); ``t`` scalar or (B,)."""
        t = torch.as_tensor(t)
        shape = (-1, 1, 1, 1) if t.dim() else ()
        return self.signal_level(t).to(like).reshape(shape), self.noise_level(t).to(like).reshape(shape)

    def estimate_clean(self, output: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The read-out: ``x_0`` from the network's ``output`` at ``(x_t, t)`` (module docstring)."""
        if self.prediction_type == "sample":
            return output
        signal, noise = self._levels(t, x_t)
        return (x_t - noise * output) / signal

    def estimate_noise(self, output: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """``eps`` from the network's ``output`` at ``(x_t, t)``, ``t >= 1``."""
        if self.prediction_type == "epsilon":
            return output
        signal, noise = self._levels(t, x_t)
        return (x_t - signal * output) / noise

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``t ~ Uniform{1..T}`` (Alg. 1, line 4), from ``generator`` or torch's global RNG."""
        return torch.randint(1, self.num_timesteps + 1, (batch,), generator=generator)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t`` from ``x_0``, ``eps`` and (B,) timesteps."""
        t = self._check(t)
        if self.noise_model == "ddpm":
            return self.scheduler.add_noise(x0, noise, (t - 1).to(x0.device))
        return x0 + self.noise_level(t).to(x0)[:, None, None, None] * noise

    def noised(self, x0: torch.Tensor, generator: torch.Generator | None = None):
        """``(x_t, t, eps)`` for clean ``x0`` in [-1, 1]: uniform ``t`` and Gaussian ``eps`` drawn from
        ``generator`` (or torch's global RNG)."""
        t = self.sample_timesteps(x0.shape[0], generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        return self.add_noise(x0, noise, t), t.to(x0.device), noise

    def prediction_loss(self, prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
                        t: torch.Tensor) -> torch.Tensor:
        """Eq. 11 per sample: ``gamma_t ||prediction - target||^2`` (mean over pixels), shape (B,);
        the target is ``eps`` or ``x0`` by ``prediction_type``."""
        target = noise if self.prediction_type == "epsilon" else x0
        return (prediction - target).pow(2).flatten(1).mean(1) * self.loss_weights.to(prediction)[t - 1]

    def generative_loss(self, model, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Eq. 11 on a batch of clean ``x0`` (in [-1, 1]), averaged."""
        x_t, t, noise = self.noised(x0, generator)
        return self.prediction_loss(model(x_t, t), x0, noise, t).mean()

    @torch.no_grad()
    def reverse_step(self, model, x_t: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x_{t-1}`` from ``x_t`` (Alg. 2, line 8). Without ``generator`` the step is the
        posterior mean (``z = 0``); with one, ``z`` is drawn from it for ``t > 1``."""
        t = int(self._check(t))
        eps = self.estimate_noise(model(x_t, torch.full((x_t.shape[0],), t, device=x_t.device)), x_t, t)
        if self.noise_model == "ddpm":
            beta = self.scheduler.betas[t - 1]
            abar = self.alphas_cumprod[t - 1]
            mean = (x_t - beta / (1 - abar).sqrt() * eps) / (1 - beta).sqrt()
            abar_prev = self.alphas_cumprod[t - 2] if t > 1 else torch.ones(())
            variance = beta * (1 - abar_prev) / (1 - abar)  # DDPM's "fixed small" posterior variance
        else:
            s_t, s_prev = self.noise_level(t), self.noise_level(t - 1)
            mean = x_t - (s_t**2 - s_prev**2) / s_t * eps
            variance = s_prev**2 * (s_t**2 - s_prev**2) / s_t**2
        if generator is None or t == 1:
            return mean
        z = torch.randn(x_t.shape, generator=generator).to(x_t)
        return mean + variance.sqrt().to(x_t) * z


__all__ = ["DiffusionProcess", "NOISE_MODELS", "PREDICTION_TYPES", "check_settings", "from_diffusion_space",
           "to_diffusion_space"]
