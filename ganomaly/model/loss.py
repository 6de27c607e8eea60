"""GANomaly losses as in the original code at its 2019 revision.

Generator: w_adv * L2(f(x), f(G(x))) on discriminator features (feature matching)
+ w_con * L1(x, G(x)) + w_enc * L2(z, z'). Discriminator: mean of BCE on real and on
the detached fake.

``adv="bce"`` is the adversarial term of the code before that revision (2018-05 to 2018-10,
the code of the paper's time): the non-saturating BCE(D(G(x)), 1) on the discriminator's
output instead of feature matching.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch
from torch import nn
from torch.nn import functional as F  # upper-case F: torch's own convention


class GeneratorLossParts(NamedTuple):
    total: torch.Tensor
    adv: torch.Tensor
    con: torch.Tensor
    enc: torch.Tensor


AdvLoss = Literal["features", "bce"]


class GeneratorLoss(nn.Module):
    def __init__(self, w_adv: float = 1.0, w_con: float = 50.0, w_enc: float = 1.0, adv: AdvLoss = "features") -> None:
        super().__init__()
        if adv not in get_args(AdvLoss):
            msg = f"adv must be one of {get_args(AdvLoss)}, not {adv!r}"
            raise ValueError(msg)
        self.w_adv, self.w_con, self.w_enc, self.adv = w_adv, w_con, w_enc, adv

    def forward(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        z: torch.Tensor,
        z_hat: torch.Tensor,
        feat_real: torch.Tensor,
        feat_fake: torch.Tensor,
        pred_fake: torch.Tensor | None = None,
    ) -> GeneratorLossParts:
        if self.adv == "bce":
            if pred_fake is None:
                msg = "adv='bce' needs pred_fake, the discriminator's output on G(x)"
                raise ValueError(msg)
            adv = F.binary_cross_entropy(pred_fake, torch.ones_like(pred_fake))
        else:
            adv = F.mse_loss(feat_fake, feat_real)
        con = F.l1_loss(x_hat, x)
        enc = F.mse_loss(z_hat, z)
        total = self.w_adv * adv + self.w_con * con + self.w_enc * enc
        return GeneratorLossParts(total, adv, con, enc)


class DiscriminatorLoss(nn.Module):
    def forward(self, pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
        real = F.binary_cross_entropy(pred_real, torch.ones_like(pred_real))
        fake = F.binary_cross_entropy(pred_fake, torch.zeros_like(pred_fake))
        return 0.5 * (real + fake)
