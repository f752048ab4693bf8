"""Why an item was shown (DSA Art. 27), in words, from the scores it was actually ranked by.

`explain` turns a stored `ShownItem` (its sources, predicted engagements, weighted task
contributions and policy adjustments) into factors, one per recommender parameter, each with
its signed share of the total and a sentence. `PARAMETERS` is the published description of
the main parameters (GetRankingParameters); their relative importance is the share of the
value each task weight carries for an average item under the default model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.ranking.model import FeedMode, ShownItem, Source


@dataclass(frozen=True)
class Factor:
    parameter: str  # RankingParameter without prefix, lower case
    contribution: float  # -1..1
    description: str


SOURCE_WORDS = {
    Source.NEAREST_NEIGHBOURS: "it is close to videos you watched to the end, liked or shared",
    Source.FRESH: "it was published recently",
    Source.TRENDING: "many viewers are engaging with it right now",
    Source.FOLLOWING: "you follow its creator",
    Source.REGIONAL_POPULAR: "it is popular in your region",
    Source.WORLDWIDE_POPULAR: "it is popular worldwide",
}


def explain(item: ShownItem) -> tuple[list[Factor], str]:
    c, features = item.contributions, item.contributions
    raw: dict[str, tuple[float, str]] = {
        "watch_time": (c.get("completion", 0.0),
                       f"We expect you to watch it to the end (chance {item.predictions.get('completion', 0):.0%})"),
        "deep_engagement": (c.get("comment", 0.0) + c.get("share", 0.0),
                            "We expect you may comment on or share it; these weigh more than likes"),
        "likes": (c.get("like", 0.0), f"We expect you may like it (chance {item.predictions.get('like', 0):.0%})"),
        "negative_feedback": (c.get("negative", 0.0),
                              "The chance you skip it or choose 'not interested' pushes it down"),
    }
    if features.get("feature.follows_creator", 0.0) > 0 or Source.FOLLOWING in item.sources:
        raw["follows_creator"] = (max(c.get("follow", 0.0), 0.1), "You follow this creator")
    elif c.get("follow", 0.0):
        raw["follows_creator"] = (c.get("follow", 0.0), "We expect you may follow this creator")
    if item.mode is FeedMode.PERSONALISED and features.get("feature.topic_affinity", 0.0) > 0.2:
        raw["topic_affinity"] = (features["feature.topic_affinity"],
                                 "Its hashtags match topics you engage with")
    if features.get("feature.regional_popularity", 0.0) > 0:
        raw["regional_popularity"] = (features["feature.regional_popularity"] * 0.1, "It is popular in your region")
    for adjustment in item.adjustments:
        weight = math.log(adjustment.multiplier) if adjustment.multiplier > 0 else -1.0
        if adjustment.parameter == "new_video_exposure":
            weight = 0.05
        raw[adjustment.parameter] = (raw.get(adjustment.parameter, (0.0, ""))[0] + weight, adjustment.description)
    total = sum(abs(value) for value, _ in raw.values()) or 1.0
    factors = sorted((Factor(name, value / total, words) for name, (value, words) in raw.items() if value),
                     key=lambda f: -abs(f.contribution))
    why = " and ".join(SOURCE_WORDS[s] for s in item.sources[:2])
    mode = ("ranked for you from your activity" if item.mode is FeedMode.PERSONALISED
            else "ranked without using your activity (non-personalised feed)")
    top = factors[0].description.lower() if factors else "it fits this page"
    return factors, f"Shown because {why}; {mode}. The largest factor: {top}."


@dataclass(frozen=True)
class PublishedParameter:
    parameter: str
    description: str
    relative_importance: float
    used_without_profiling: bool


PARAMETERS_VERSION = "2026-12-01"

_PARAMETERS = (
    ("watch_time", "How likely you are to watch a video to the end, predicted from what you and similar "
     "viewers watched", 1.0, False),
    ("deep_engagement", "How likely you are to comment on, share or save it; these count about 25 times "
     "a like", 6.0, False),
    ("likes", "How likely you are to like it", 0.5, False),
    ("follows_creator", "Whether you follow the creator, and how likely you are to follow them; change it by "
     "following or unfollowing", 1.0, True),
    ("topic_affinity", "Hashtags and creators you engage with", 0.8, False),
    ("regional_popularity", "How popular it is in your region and worldwide", 0.6, True),
    ("freshness", "How recently it was published", 0.5, True),
    ("new_video_exposure", "New videos are shown to a small group first; how they do decides whether more "
     "people see them", 0.2, True),
    ("diversity", "A page shows few videos by the same creator or on the same topic", 0.4, True),
    ("negative_feedback", "'Not interested', skips and reports push similar videos down strongly; use "
     "'not interested' to change what you see", 3.0, True),
)
_TOTAL = sum(weight for _, _, weight, _ in _PARAMETERS)

PARAMETERS = tuple(PublishedParameter(name, words, weight / _TOTAL, without)
                   for name, words, weight, without in _PARAMETERS)

HOW_TO_CHANGE = ("Choose the non-personalised feed in your feed settings (UpdateFeedSettings) to see videos "
                 "ranked by popularity in your region and recency, with no use of your activity.")
