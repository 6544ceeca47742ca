"""ML models on the local server: :mod:`.routes` (the HTTP handlers) over :mod:`.store` (their
SQL); :mod:`.runner` trains in the background and predicts, through the per-task modules of
:mod:`.trainers`; :mod:`.wire` holds the family's component schemas."""

from labric.server.ml_models.routes import ML_TRAINING, install, register

__all__ = ["ML_TRAINING", "install", "register"]
