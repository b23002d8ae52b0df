"""Network Dissection (Bau et al. 2017): label units with concepts by the dataset IoU of their
thresholded maps with concept masks (:func:`dissect`), read as :class:`DissectionResult`."""

from .report import IOU_THRESHOLD, DissectionResult, LayerDissection, UnitLabel
from .run import dissect
from .tally import IoUTally, unit_masks

__all__ = [
    "IOU_THRESHOLD",
    "DissectionResult",
    "IoUTally",
    "LayerDissection",
    "UnitLabel",
    "dissect",
    "unit_masks",
]
