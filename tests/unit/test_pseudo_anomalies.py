import pytest
import torch

from ganomaly.training.pseudo_anomalies import TRANSFORMS, make_pseudo_anomalies

LOW, HIGH = -0.4242, 2.8215


def _batch() -> torch.Tensor:
    # garment-like images: background at LOW, a bright asymmetric blob, so every transform changes them
    x = torch.full((8, 1, 16, 16), LOW)
    for i in range(8):
        x[i, :, 2 : 10 + i % 4, 3:9] = HIGH * (0.5 + 0.05 * i)
    return x


def test_every_transform_keeps_shape_and_range_and_changes_the_images() -> None:
    x = _batch()
    out = make_pseudo_anomalies(x, LOW, tuple(TRANSFORMS), seed=0)
    assert set(out) == set(TRANSFORMS)
    for name, px in out.items():
        assert px.shape == x.shape, name
        assert px.min() >= LOW - 1e-6 and px.max() <= HIGH + 1e-6, name
        changed = (px != x).flatten(1).any(1)
        assert changed.float().mean() >= 0.5, name  # most images are really altered
    assert torch.equal(x, _batch())  # the input is not modified in place


def test_pseudo_anomalies_are_reproducible_for_a_seed() -> None:
    x = _batch()
    a = make_pseudo_anomalies(x, LOW, ("cutpaste", "halfswap"), seed=3)
    b = make_pseudo_anomalies(x, LOW, ("cutpaste", "halfswap"), seed=3)
    c = make_pseudo_anomalies(x, LOW, ("cutpaste", "halfswap"), seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_geometry_of_the_simple_transforms() -> None:
    x = _batch()
    out = make_pseudo_anomalies(x, LOW, ("vflip", "rot90", "erase"), seed=0)
    torch.testing.assert_close(out["vflip"][:, :, 0], x[:, :, -1])
    torch.testing.assert_close(torch.rot90(out["rot90"], -1, dims=[-2, -1]), x)
    erased = out["erase"] != x
    assert torch.all(out["erase"][erased] == LOW)  # erased pixels become background


def test_unknown_transform_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pseudo-anomaly"):
        make_pseudo_anomalies(_batch(), LOW, ("vflip", "sideways"))
