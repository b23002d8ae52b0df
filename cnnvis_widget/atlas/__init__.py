"""Model-level analysis over a data set: one streaming pass that keeps per-unit statistics
(:func:`unit_atlas`), and what it gives (:class:`UnitAtlas`: each unit's top dataset
examples, moments, class means, upper quantile), saved and reloaded with its provenance."""

from .fingerprint import data_fingerprint, model_fingerprint
from .result import Example, UnitAtlas
from .run import unit_atlas

__all__ = ["Example", "UnitAtlas", "data_fingerprint", "model_fingerprint", "unit_atlas"]
