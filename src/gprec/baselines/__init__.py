"""Reference models that gprec's own models are compared against, on gprec's own splits.

`surprise_models`: the classic collaborative-filtering baselines of scikit-surprise (SVD,
SVD++, NMF, the three k-NN variants) and three non-learned predictors (popularity, random,
perfect). scikit-surprise is an optional dependency (`pip install gprec[baselines]`): it is
imported only inside the functions that fit a Surprise model, so neither `gprec --help` nor
training ever loads it.
"""

from gprec.baselines.surprise_models import (
    BASELINES,
    SURPRISE_MODELS,
    PerfectPredictor,
    PopularityPredictor,
    RandomPredictor,
    RatingModel,
    RatingSplit,
    SurpriseModel,
    make_baseline,
)

__all__ = [
    "BASELINES",
    "SURPRISE_MODELS",
    "PerfectPredictor",
    "PopularityPredictor",
    "RandomPredictor",
    "RatingModel",
    "RatingSplit",
    "SurpriseModel",
    "make_baseline",
]
