"""Every tunable of the ranking service, with its default, in one typed object: `RankingConfig`.

How the service runs comes from the environment (`RankingConfig.from_environment`):

    LIMELIGHT_RANKING_SCORER            `ray` (default): scoring actors on Ray (local Ray, or the
                                        cluster at RAY_ADDRESS); `in-process`: numpy in this process
                                        (a service run without Ray, and unit tests)
    LIMELIGHT_RANKING_SCORING_ACTORS    scoring actors (default 1; one call in flight per actor)
    LIMELIGHT_RANKING_RETRAIN_SECONDS   how often the collaborative factors are retrained from the
                                        engagement log (default 600; 0 = only at start)
    LIMELIGHT_RANKING_CONSENT           `compliance` (default): ask compliance's CheckConsent;
                                        `none`: nobody has consented (every feed non-personalised)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from services.ranking.catalogue import CatalogueSettings
from services.ranking.engagement import BotPolicy
from services.ranking.usecases import FeedPolicy


@dataclass(frozen=True)
class TrainingConfig:
    # Videos the batch trainer factorises (EASE^R inverts an items x items matrix: 4,000 is
    # about two seconds on two cores); the rest keep their content vectors until they are engaged with.
    max_items: int = 4_000
    l2: float = 100.0  # EASE^R's λ, tuned on the MovieLens validation split (`limelight rank eval`)
    retrain_seconds: float = 600.0


@dataclass(frozen=True)
class RankingConfig:
    catalogue: CatalogueSettings = field(default_factory=CatalogueSettings)
    feed: FeedPolicy = field(default_factory=FeedPolicy)
    bots: BotPolicy = field(default_factory=BotPolicy)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    scorer: str = "ray"
    scoring_actors: int = 1
    consent: str = "compliance"

    @classmethod
    def from_environment(cls) -> RankingConfig:
        config = cls()
        retrain = os.environ.get("LIMELIGHT_RANKING_RETRAIN_SECONDS")
        if retrain:
            config = dataclasses.replace(config, training=dataclasses.replace(
                config.training, retrain_seconds=float(retrain)))
        return dataclasses.replace(
            config,
            scorer=os.environ.get("LIMELIGHT_RANKING_SCORER", config.scorer),
            scoring_actors=int(os.environ.get("LIMELIGHT_RANKING_SCORING_ACTORS", config.scoring_actors)),
            consent=os.environ.get("LIMELIGHT_RANKING_CONSENT", config.consent),
        )
