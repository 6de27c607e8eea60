"""The network code's silent-failure modes: init, every option combination, shapes."""

import itertools

import pytest
import torch
from torch import nn

from ganomaly.model import Discriminator, GanomalyConfig, Generator, weights_init
from ganomaly.model.networks import Encoder


def _convs(m: nn.Module) -> list[nn.Module]:
    return [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.ConvTranspose2d))]


def test_init_really_changes_every_layer() -> None:
    torch.manual_seed(0)
    g = Generator(GanomalyConfig())
    convs = _convs(g)
    assert len(convs) == 12  # 4 per encoder, 4 in the decoder
    for c in convs:
        std = c.weight.std().item()
        assert 0.015 < std < 0.025, f"{c} weight std {std}: DCGAN init not applied"
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert abs(bn.weight.mean().item() - 1.0) < 0.02 and 0.005 < bn.weight.std().item() < 0.04
        assert torch.count_nonzero(bn.bias) == 0


def test_default_init_differs_from_dcgan_init() -> None:
    torch.manual_seed(0)
    enc = Encoder(32, 100, 1, 64)
    before = [c.weight.std().item() for c in _convs(enc)]
    enc.apply(weights_init)
    after = [c.weight.std().item() for c in _convs(enc)]
    assert all(abs(b - a) > 1e-3 for b, a in zip(before, after, strict=True))


def test_no_conv_bias_and_no_bn_on_first_layer() -> None:
    g = Generator(GanomalyConfig())
    assert all(c.bias is None for c in _convs(g))
    first = list(g.encoder1.features)[:2]
    assert isinstance(first[0], nn.Conv2d) and isinstance(first[1], nn.LeakyReLU)


@pytest.mark.parametrize(("isize", "nc", "extra"), list(itertools.product([16, 32, 64], [1, 3], [0, 1])))
def test_every_option_builds_and_runs(isize: int, nc: int, extra: int) -> None:
    cfg = GanomalyConfig(isize=isize, nc=nc, nz=8, ngf=8, extra_layers=extra)
    g, d = Generator(cfg), Discriminator(cfg)
    x = torch.rand(2, nc, isize, isize) * 2 - 1
    x_hat, z, z_hat = g(x)
    assert x_hat.shape == x.shape
    assert z.shape == z_hat.shape == (2, 8, 1, 1)
    assert x_hat.abs().max() <= 1.0  # tanh output
    prob, feats = d(x)
    assert prob.shape == (2,) and ((prob >= 0) & (prob <= 1)).all()
    assert feats.shape[-2:] == (4, 4)
    g.eval()
    assert g(x)[0].shape == x.shape


def test_default_shapes_match_the_paper() -> None:
    g = Generator(GanomalyConfig())
    chans = [m.out_channels for m in g.encoder1.features if isinstance(m, nn.Conv2d)]
    assert chans == [64, 128, 256]
    assert g.encoder1.final is not None and g.encoder1.final.out_channels == 100
    _, feats = Discriminator(GanomalyConfig())(torch.zeros(2, 1, 32, 32))
    assert feats.shape == (2, 256, 4, 4)


@pytest.mark.parametrize("bad", [{"isize": 30}, {"isize": 8}, {"nc": 2}, {"nz": 0}])
def test_bad_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        GanomalyConfig(**bad)


def test_discriminator_reset_changes_weights() -> None:
    d = Discriminator(GanomalyConfig())
    w = d.classifier[0].weight.clone()
    d.reset_parameters()
    assert not torch.equal(w, d.classifier[0].weight)
