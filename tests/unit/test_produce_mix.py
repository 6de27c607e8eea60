"""``produce --anomaly-share``: an inspection-line stream of mostly normal images and a few anomalies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ganomaly.data.idx import load_split
from producers.sources import labelled_mix
from tests.conftest import FMNIST
from tests.integration.helpers import ROOT


def test_one_class_mix_has_the_share_asked_for_interleaved_and_reproducible() -> None:
    _, labels = load_split(FMNIST, "t10k")
    idx = labelled_mix(labels, protocol="one-class", klass=7, count=1000, anomaly_share=0.04, seed=0)
    assert len(idx) == 1000 and len(set(idx.tolist())) == 1000
    anomalous = labels[idx] != 7
    assert anomalous.sum() == 40
    assert len(set(labels[idx][anomalous].tolist())) >= 5  # drawn from the other classes alike, not one of them
    assert np.flatnonzero(anomalous)[0] < 200 and np.flatnonzero(anomalous)[-1] > 800  # spread over the stream
    assert (labelled_mix(labels, protocol="one-class", klass=7, count=1000, anomaly_share=0.04, seed=0) == idx).all()


def test_leave_one_out_mix_takes_the_class_as_the_anomaly() -> None:
    _, labels = load_split(FMNIST, "t10k")
    idx = labelled_mix(labels, protocol="leave-one-out", klass=0, count=500, anomaly_share=0.1, seed=1)
    assert (labels[idx] == 0).sum() == 50


def test_more_normals_than_the_split_has_is_refused() -> None:
    _, labels = load_split(FMNIST, "t10k")
    with pytest.raises(ValueError, match="lower --count"):
        labelled_mix(labels, protocol="one-class", klass=7, count=2000, anomaly_share=0.04, seed=0)


@pytest.mark.parametrize("args", [
    ["--anomaly-share", "0.04", "--count", "100"],  # no --protocol
    ["--anomaly-share", "0.04", "--protocol", "one-class", "--class", "7", "--count", "5000"],  # too many sneakers
])
def test_produce_mix_errors_are_one_line(args: list[str]) -> None:
    cli = subprocess.run([sys.executable, "-m", "ganomaly", "produce", "--from", "fashion-mnist", "--bootstrap-servers", "127.0.0.1:1", *args],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and cli.stderr.startswith("error: ") and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
