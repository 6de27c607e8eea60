import copy

import pytest
import torch

from ganomaly.model import Discriminator, DiscriminatorLoss, GanomalyConfig, Generator, GeneratorLoss
from ganomaly.training.fit import TrainConfig, fit, train_step


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


def test_bce_adversarial_term_is_the_discriminators_verdict_on_the_reconstruction() -> None:
    torch.manual_seed(0)
    cfg = GanomalyConfig(nz=16, ngf=16)
    g, d = Generator(cfg), Discriminator(cfg)
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    x_hat, z, z_hat = g(x)
    pred_fake, feat_fake = d(x_hat)
    _, feat_real = d(x)
    bce = GeneratorLoss(adv="bce")(x, x_hat, z, z_hat, feat_real, feat_fake, pred_fake)
    assert bce.adv.item() == pytest.approx(-torch.log(pred_fake).mean().item(), rel=1e-5)
    features = GeneratorLoss()(x, x_hat, z, z_hat, feat_real, feat_fake, pred_fake)
    assert features.adv.item() == pytest.approx((feat_real - feat_fake).pow(2).mean().item(), rel=1e-5)
    assert bce.con.item() == features.con.item() and bce.enc.item() == features.enc.item()
    with pytest.raises(ValueError, match="pred_fake"):
        GeneratorLoss(adv="bce")(x, x_hat, z, z_hat, feat_real, feat_fake)
    with pytest.raises(ValueError, match="features"):
        GeneratorLoss(adv="hinge")  # type: ignore[arg-type]


def test_a_bce_run_trains_and_differs_from_feature_matching() -> None:
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    mcfg, dev = GanomalyConfig(isize=16, nz=8, ngf=8), torch.device("cpu")
    runs = {adv: fit(mcfg, TrainConfig(epochs=2, batch_size=16, select_by="last", adv_loss=adv), x, x[:16], device=dev) for adv in ("features", "bce")}
    assert runs["bce"].history[-1].val_recon < runs["bce"].history[0].val_recon * 1.5  # trains, does not diverge
    w = {k: r.generator.state_dict()["decoder.main.0.weight"] for k, r in runs.items()}
    assert not torch.equal(w["features"], w["bce"])  # the option reaches the training loop


@pytest.mark.parametrize(("select_by", "stat"), [("val_latent", "val_score_mean"), ("val_recon", "val_recon"), ("val_loss", "val_loss")])
def test_fit_selects_on_validation_and_calibrates(select_by: str, stat: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    cfg = TrainConfig(epochs=3, batch_size=16, target_fpr=0.1, select_by=select_by)  # type: ignore[arg-type]
    res = fit(GanomalyConfig(isize=16, nz=8, ngf=8), cfg, x, x[:20], device=torch.device("cpu"))
    assert len(res.history) == 3
    best = min(res.history, key=lambda h: getattr(h, stat))
    assert res.best_epoch == best.epoch
    assert res.calibration.n == 20
    assert next(res.generator.parameters()).device.type == "cpu"


def test_on_snapshot_sees_each_epochs_candidate_and_changes_nothing() -> None:
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    mcfg, cfg = GanomalyConfig(isize=16, nz=8, ngf=8), TrainConfig(epochs=3, batch_size=16, select_by="val_recon")
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(epoch: int, g: torch.nn.Module) -> None:
        seen[epoch] = {k: v.clone() for k, v in g.state_dict().items()}
        with torch.no_grad():
            copy.deepcopy(g).train()(x[:16])  # scoring a copy in train mode, as original_protocol.py does

    hooked = fit(mcfg, cfg, x, x[:20], device=torch.device("cpu"), on_snapshot=snapshot)
    plain = fit(mcfg, cfg, x, x[:20], device=torch.device("cpu"))
    assert sorted(seen) == [1, 2, 3]
    shipped = hooked.generator.state_dict()
    assert all(torch.equal(seen[hooked.best_epoch][k], v) for k, v in shipped.items())  # the hook saw what selection saw
    assert hooked.best_epoch == plain.best_epoch
    assert all(torch.equal(v, plain.generator.state_dict()[k]) for k, v in shipped.items())


def test_swa_ships_the_mean_of_epoch_end_weights_with_recomputed_batchnorm(tmp_path) -> None:
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    mcfg, dev = GanomalyConfig(isize=16, nz=8, ngf=8), torch.device("cpu")

    def run(epochs: int, swa_start: int = 0, **kw) -> Generator:
        return fit(mcfg, TrainConfig(epochs=epochs, batch_size=16, select_by="last", swa_start=swa_start), x, x[:16], device=dev, **kw).generator

    w1, w2 = run(1).state_dict(), run(2).state_dict()
    swa = run(2, swa_start=1)
    for name, p in swa.named_parameters():
        torch.testing.assert_close(p, (w1[name] + w2[name]) / 2)
    bns = [m for m in swa.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # running statistics re-estimated as a plain mean over the 4 training batches, not carried over
    assert bns and all(int(m.num_batches_tracked) == 4 for m in bns)
    assert not torch.equal(bns[0].running_mean, w2[next(k for k in w2 if k.endswith("running_mean"))])

    # an interrupted SWA run resumes to exactly the same average
    run(1, swa_start=1, out_dir=tmp_path / "m")
    resumed = run(2, swa_start=1, out_dir=tmp_path / "m", resume=True)
    for (name, p), q in zip(swa.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_ema_is_bias_corrected_and_ships_recomputed_batchnorm() -> None:
    from ganomaly.training.fit import ema_decay_at, update_ema

    # bias-corrected: the first update takes the weights as they are, later ones weigh step s by decay**(t-s)
    lin, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    ws = [torch.randn(1, 2) for _ in range(3)]
    for t, w in enumerate(ws, start=1):
        target.weight.data.copy_(w)
        update_ema(lin, target, 0.9, step=t)
        if t == 1:
            torch.testing.assert_close(lin.weight.data, ws[0])
    torch.testing.assert_close(lin.weight.data, (0.81 * ws[0] + 0.9 * ws[1] + ws[2]) / 2.71)
    assert ema_decay_at(0.99, 10_000) == pytest.approx(0.99)

    x = torch.rand(64, 1, 16, 16) * 2 - 1
    mcfg = GanomalyConfig(isize=16, nz=8, ngf=8)
    plain = fit(mcfg, TrainConfig(epochs=1, batch_size=16, select_by="last"), x, x[:16], device=torch.device("cpu")).generator
    ema = fit(mcfg, TrainConfig(epochs=1, batch_size=16, select_by="last", ema_decay=0.5), x, x[:16], device=torch.device("cpu")).generator
    assert any(not torch.equal(p, q) for p, q in zip(plain.parameters(), ema.parameters(), strict=True))
    bns = [m for m in ema.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(int(m.num_batches_tracked) == 4 for m in bns)  # a plain mean over the 4 batches


def test_an_interrupted_ema_run_resumes_to_the_same_average(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ganomaly.training.fit as fit_module

    x = torch.rand(64, 1, 16, 16) * 2 - 1
    mcfg, dev = GanomalyConfig(isize=16, nz=8, ngf=8), torch.device("cpu")
    steps: list[int] = []
    real_update = fit_module.update_ema

    def recording_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
        steps.append(step)
        real_update(ema, model, decay, step)

    monkeypatch.setattr(fit_module, "update_ema", recording_update)

    def run(epochs: int, **kw) -> Generator:
        return fit(mcfg, TrainConfig(epochs=epochs, batch_size=16, select_by="last", ema_decay=0.9), x, x[:16], device=dev, **kw).generator

    straight = run(2)
    assert steps == list(range(1, 9))  # one average over both epochs' 8 steps, not restarted per epoch
    run(1, out_dir=tmp_path / "m")
    steps.clear()
    resumed = run(2, out_dir=tmp_path / "m", resume=True)
    assert steps == list(range(5, 9))  # the step count (and so the decay) carries on
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
