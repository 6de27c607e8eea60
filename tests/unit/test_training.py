import torch

from worker.model import Discriminator, DiscriminatorLoss, GanomalyConfig, Generator, GeneratorLoss
from worker.training.fit import TrainConfig, fit, train_step


def test_one_training_step_lowers_contextual_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    cfg = GanomalyConfig(nz=16, ngf=16)
    g, d = Generator(cfg), Discriminator(cfg)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    before = train_step(g, d, opt_g, opt_d, GeneratorLoss(), DiscriminatorLoss(), x)[0].con.item()
    after = train_step(g, d, opt_g, opt_d, GeneratorLoss(), DiscriminatorLoss(), x)[0].con.item()
    assert after < before


def test_fit_selects_on_validation_and_calibrates() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    res = fit(GanomalyConfig(isize=16, nz=8, ngf=8), TrainConfig(epochs=2, batch_size=16, target_fpr=0.1), x, x[:20], device=torch.device("cpu"))
    assert len(res.history) == 2
    best = min(res.history, key=lambda h: h.val_recon)
    assert res.best_epoch == best.epoch
    assert res.calibration.n == 20
    assert next(res.generator.parameters()).device.type == "cpu"
