"""LIRA, lifelong image restoration (Liu et al.): the fork-join restorer that grows an expert
per new distortion (:mod:`.network`) and the lifelong losses of its growing stage and
baselines (:mod:`.lifelong`: pseudo-replay GAN, EWC). Trained by ``train/train_lira.py``."""

from .lifelong import ewc_penalty, fisher_diagonal, pseudo_replay_gan_loss
from .network import (SGU, BiSGU, ExpertAttention, Gate, LIRANetwork, PatchDiscriminator, ResnetGenerator, SKDuRB,
                      SelectiveKernel)

__all__ = ["BiSGU", "ExpertAttention", "Gate", "LIRANetwork", "PatchDiscriminator", "ResnetGenerator", "SGU",
           "SKDuRB", "SelectiveKernel", "ewc_penalty", "fisher_diagonal", "pseudo_replay_gan_loss"]
