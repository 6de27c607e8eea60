"""One image the model cannot score costs only itself."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from worker.isolation import score_isolating_failures


def _scorer(poison: set[float], nan: set[float]) -> tuple[Callable[[torch.Tensor], np.ndarray], list[int]]:
    """Scores each image by its first pixel; raises like torch when a poison pixel is in the batch."""
    calls: list[int] = []

    def score(x: torch.Tensor) -> np.ndarray:
        calls.append(len(x))
        firsts = x.flatten(1)[:, 0].tolist()
        if poison & set(firsts):
            msg = "CUDA out of memory (simulated)"
            raise RuntimeError(msg)
        return np.array([np.nan if f in nan else f for f in firsts])

    return score, calls


def test_a_clean_batch_is_scored_once() -> None:
    score, calls = _scorer(set(), set())
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1)
    scores, failures = score_isolating_failures(score, x)
    assert scores.tolist() == list(range(8)) and failures == {} and calls == [8]


def test_only_the_images_at_fault_fail() -> None:
    score, calls = _scorer({3.0, 6.0}, {5.0})
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1)
    scores, failures = score_isolating_failures(score, x)
    assert sorted(failures) == [3, 5, 6]
    assert failures[3].reason == failures[6].reason == "model_error" and "out of memory" in failures[3].message
    assert failures[5].reason == "non_finite_score"
    assert [scores[i] for i in (0, 1, 2, 4, 7)] == [0, 1, 2, 4, 7]
    assert calls == [8] + [1] * 8  # the batch, then one image at a time


def test_any_exception_is_the_images_not_the_loops() -> None:
    def score(x: torch.Tensor) -> np.ndarray:
        if len(x) > 1:
            msg = "shape mismatch (simulated)"
            raise ValueError(msg)
        return np.array([1.0])

    scores, failures = score_isolating_failures(score, torch.zeros(3, 1, 1, 1))
    assert failures == {} and scores.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_score_never_passes_as_normal(bad: float) -> None:
    scores, failures = score_isolating_failures(lambda x: np.array([0.1, bad]), torch.zeros(2, 1, 1, 1))
    assert list(failures) == [1] and failures[1].reason == "non_finite_score" and scores[0] == 0.1
