import numpy as np
import pytest
import torch

from ganomaly.model import GanomalyConfig, Generator, Scorer, latent_score


def test_latent_score_formula() -> None:
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]).view(2, 3, 1, 1)
    zh = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]).view(2, 3, 1, 1)
    # ((0)^2 + 2^2 + 3^2) / 3 and (1+1+1)/3
    assert latent_score(z, zh).tolist() == pytest.approx([13 / 3, 1.0])


def test_scorer_matches_manual_eval_forward_and_has_no_grad() -> None:
    torch.manual_seed(0)
    g = Generator(GanomalyConfig(nz=16, ngf=8))
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    g.eval()
    with torch.no_grad():
        _, z, zh = g(x)
    want = ((z - zh) ** 2).mean(dim=(1, 2, 3))
    out = Scorer(g).score(x, with_recon=True)
    assert torch.allclose(out.score, want, atol=1e-6)
    assert out.recon_error is not None and out.recon_error.shape == (5,)
    assert not out.score.requires_grad
    assert not g.training


def test_scores_do_not_depend_on_the_rest_of_the_batch() -> None:
    # Train-mode BatchNorm (the original code at test time) would fail this.
    torch.manual_seed(1)
    g = Generator(GanomalyConfig(nz=16, ngf=8))
    s = Scorer(g)
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    alone = torch.cat([s.score(x[i : i + 1]).score for i in range(8)])
    together = s.score(x).score
    assert torch.allclose(alone, together, rtol=1e-4, atol=1e-7)


def test_bf16_scores_rank_like_fp32() -> None:
    torch.manual_seed(2)
    g = Generator(GanomalyConfig(nz=16, ngf=8))
    x = torch.rand(64, 1, 32, 32) * 2 - 1
    a = Scorer(g).score(x).score.numpy()
    b = Scorer(Generator(GanomalyConfig(nz=16, ngf=8)).requires_grad_(False), amp="bf16")
    b.generator.load_state_dict(g.state_dict())
    bs = b.score(x).score.numpy()
    assert np.corrcoef(a, bs)[0, 1] > 0.95


def test_bad_amp_refused() -> None:
    with pytest.raises(ValueError):
        Scorer(Generator(GanomalyConfig(nz=8, ngf=8)), amp="int8")
    with pytest.raises(ValueError):
        Scorer(Generator(GanomalyConfig(nz=8, ngf=8)), "cpu", amp="fp16")


def test_score_kinds_combine_latent_and_reconstruction() -> None:
    from ganomaly.model import ScoreSpec

    torch.manual_seed(3)
    g = Generator(GanomalyConfig(nz=16, ngf=8))
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    base = Scorer(g).score(x, with_recon=True)
    assert base.recon_error is not None
    recon = Scorer(g, spec=ScoreSpec(kind="recon")).score(x)
    assert torch.allclose(recon.score, base.recon_error) and recon.latent is not None
    spec = ScoreSpec(kind="hybrid", latent_mean=0.1, latent_std=0.5, recon_mean=0.2, recon_std=0.25)
    hyb = Scorer(g, spec=spec).score(x).score
    want = (base.score - 0.1) / 0.5 + (base.recon_error - 0.2) / 0.25
    assert torch.allclose(hyb, want, atol=1e-5)
    with pytest.raises(ValueError):
        ScoreSpec(kind="mystery")


@pytest.mark.parametrize(("isize", "nc", "ngf", "kind"), [(32, 1, 64, "latent"), (32, 1, 4, "hybrid"), (64, 3, 16, "recon")])
def test_the_traced_scorer_the_worker_serves_with_gives_the_eager_scores_bit_for_bit(isize: int, nc: int, ngf: int, kind: str) -> None:
    from ganomaly.model.networks import GanomalyConfig, Generator
    from ganomaly.model.scoring import Scorer, ScoreSpec

    torch.manual_seed(0)
    g = Generator(GanomalyConfig(isize=isize, nc=nc, ngf=ngf))
    spec = ScoreSpec(kind=kind) if kind == "latent" else ScoreSpec(kind=kind, latent_mean=0.1, latent_std=0.2, recon_mean=0.3, recon_std=0.4)
    eager, traced = Scorer(g, spec=spec), Scorer(g, spec=spec, traced=True)
    assert traced.network is not traced.generator and eager.network is eager.generator
    for n in (1, 3, 64):  # traced at a batch of 2: other batch sizes must not be specialised away
        x = torch.rand(n, nc, isize, isize) * 2 - 1
        a, b = eager.score(x, with_maps=True), traced.score(x, with_maps=True)
        assert torch.equal(a.score, b.score) and torch.equal(a.maps, b.maps)
