"""Pure GANomaly maths: networks, losses, scoring and calibration.

Nothing in this subpackage does I/O or imports Kafka, Redis, settings or logging;
everything above it (training, artifacts, the stream worker) depends on it, never
the reverse.
"""

from ganomaly.model.calibration import Calibration, calibrate
from ganomaly.model.loss import AdvLoss, DiscriminatorLoss, GeneratorLoss, GeneratorLossParts
from ganomaly.model.networks import Discriminator, GanomalyConfig, Generator, weights_init
from ganomaly.model.scoring import SCORE_KINDS, ScoreBatch, Scorer, ScoreSpec, latent_score

__all__ = [
    "SCORE_KINDS",
    "AdvLoss",
    "Calibration",
    "Discriminator",
    "DiscriminatorLoss",
    "GanomalyConfig",
    "Generator",
    "GeneratorLoss",
    "GeneratorLossParts",
    "ScoreBatch",
    "ScoreSpec",
    "Scorer",
    "calibrate",
    "latent_score",
    "weights_init",
]
