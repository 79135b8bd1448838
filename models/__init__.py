"""models: every detector behind one scikit-learn estimator interface (imports only ``telemetry``).

The hierarchy, cut where behaviour differs::

    Detector (base.py)                  parameters as dataclass fields, sklearn get/set_params/clone,
    |                                   merged tags, input checks, fit -> _fit, score_samples -> _score_samples,
    |                                   save/load
    +-- KerasWindowDetector (window.py) build, compile, seeded fit, batched predict, weights save/load
    |   +-- ErrorWindowDetector         per-channel error, standardised on validation nominal windows
    |   |   +-- ReconstructionDetector  autoencoders.py: dense, (bi)LSTM, conv, attention, deep LSTM
    |   |   +-- ForecastDetector        forecaster.py: the LSTM forecaster
    |   +-- CNNLSTMClassifier           classifier.py: supervised, a probability per window
    +-- RowDetector (baselines.py)      non-Keras, scored row by row: global_std, isolation_forest (baselines), pca.py

Every member turns its errors into row scores with :class:`models.scoring.RowScorer`. Adding a
member is one file (or class) subclassing the right base, plus its registry line.
"""
from models.base import Detector
from models.registry import REGISTRY, get, names, register

__all__ = ["Detector", "REGISTRY", "get", "names", "register"]
