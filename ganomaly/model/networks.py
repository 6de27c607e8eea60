"""GANomaly networks (Akcay et al., arXiv 1805.06725), faithful to the original code.

Generator = encoder G_E -> decoder G_D -> second encoder E; the discriminator is a
DCGAN encoder whose last features are returned next to a sigmoid probability.
Shapes for the default isize=32, width=64: encoder 32->16 (64ch) ->8 (128) ->4 (256)
->1x1 (nz); the decoder mirrors it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class GanomalyConfig:
    """Architecture arguments; stored verbatim in the artifact manifest."""

    isize: int = 32  # input side, any multiple of 16
    nc: int = 1  # image channels (1 or 3)
    nz: int = 100  # latent size
    ngf: int = 64  # base width of generator and discriminator (the original reads ngf for both)
    extra_layers: int = 0  # extra 3x3 conv blocks after the first layer

    def __post_init__(self) -> None:
        if self.isize < 16 or self.isize % 16:
            msg = f"isize must be a positive multiple of 16, got {self.isize}"
            raise ValueError(msg)
        if self.nc not in (1, 3):
            msg = f"nc must be 1 or 3, got {self.nc}"
            raise ValueError(msg)
        if self.nz < 1 or self.ngf < 1 or self.extra_layers < 0:
            msg = "nz and ngf must be positive and extra_layers non-negative"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weights_init(module: nn.Module) -> None:
    """DCGAN init, meant for ``net.apply(weights_init)`` so it reaches every layer.

    (anomalib calls it on the top-level module directly, where the class-name test
    never matches and the init silently does nothing; see tests/unit.)
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Encoder(nn.Module):
    """DCGAN encoder: image ``B×nc×isize×isize`` -> ``B×nz×1×1`` (or the 4×4 features)."""

    def __init__(self, isize: int, nz: int, nc: int, ndf: int, extra_layers: int = 0, *, final_conv: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # no BatchNorm on the first layer
            nn.LeakyReLU(0.2, inplace=True),
        ]
        csize, cndf = isize // 2, ndf
        for _ in range(extra_layers):
            layers += [nn.Conv2d(cndf, cndf, 3, 1, 1, bias=False), nn.BatchNorm2d(cndf), nn.LeakyReLU(0.2, inplace=True)]
        while csize > 4:
            layers += [nn.Conv2d(cndf, cndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(cndf * 2), nn.LeakyReLU(0.2, inplace=True)]
            cndf, csize = cndf * 2, csize // 2
        self.features = nn.Sequential(*layers)
        self.out_channels = cndf
        # Always defined (None when absent) so forward never reads a missing attribute.
        self.final: nn.Module | None = nn.Conv2d(cndf, nz, 4, 1, 0, bias=False) if final_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.final(h) if self.final is not None else h


class Decoder(nn.Module):
    """DCGAN decoder: latent ``B×nz×1×1`` -> image ``B×nc×isize×isize`` in [-1, 1]."""

    def __init__(self, isize: int, nz: int, nc: int, ngf: int, extra_layers: int = 0) -> None:
        super().__init__()
        cngf, tisize = ngf // 2, 4
        while tisize != isize:
            cngf, tisize = cngf * 2, tisize * 2
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, cngf, 4, 1, 0, bias=False), nn.BatchNorm2d(cngf), nn.ReLU(True)]
        csize = 4
        while csize < isize // 2:
            layers += [nn.ConvTranspose2d(cngf, cngf // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(cngf // 2), nn.ReLU(True)]
            cngf, csize = cngf // 2, csize * 2
        for _ in range(extra_layers):
            layers += [nn.Conv2d(cngf, cngf, 3, 1, 1, bias=False), nn.BatchNorm2d(cngf), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(cngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Generator(nn.Module):
    """G_E -> G_D -> E. ``forward`` returns ``(x_hat, z, z_hat)``, latents ``B×nz×1×1``."""

    def __init__(self, config: GanomalyConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.encoder1 = Encoder(c.isize, c.nz, c.nc, c.ngf, c.extra_layers)
        self.decoder = Decoder(c.isize, c.nz, c.nc, c.ngf, c.extra_layers)
        self.encoder2 = Encoder(c.isize, c.nz, c.nc, c.ngf, c.extra_layers)
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder1(x)
        x_hat = self.decoder(z)
        z_hat = self.encoder2(x_hat)
        return x_hat, z, z_hat


class Discriminator(nn.Module):
    """DCGAN encoder with a sigmoid head; ``forward`` returns ``(prob[B], features)``."""

    def __init__(self, config: GanomalyConfig) -> None:
        super().__init__()
        c = config
        enc = Encoder(c.isize, 1, c.nc, c.ngf, c.extra_layers, final_conv=False)
        self.features = enc.features
        self.classifier = nn.Sequential(nn.Conv2d(enc.out_channels, 1, 4, 1, 0, bias=False), nn.Sigmoid())
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        prob = self.classifier(feats).view(-1)
        return prob, feats

    def reset_parameters(self) -> None:
        """Re-initialise, as the original does when the D loss collapses below 1e-5."""
        self.apply(weights_init)
