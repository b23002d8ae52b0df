"""Real image data, offline, as torch Datasets (``cv.datasets``); sources in docs/data.md.

- :func:`fashion_mnist`: Fashion-MNIST's 70,000 labelled 28 x 28 greyscale images.
- :func:`photos`: 273 real labelled photos for ImageNet models, with alpha masks for
  the cut-outs.
- :func:`image_folder` / :func:`image_files`: your own images (sub-folders = labels).
- :func:`concepts`: a concept set for Network Dissection (colour, object, texture masks).
- :func:`an8flower`: synthetic flowers whose class is the colour of one part, with that part's
  mask: ground truth for explanations (Oramas et al. 2019; docs/an8flower.md), and its scores
  (:func:`iou_curve`, :func:`area_under_iou_curve`, :func:`pointing_game`).

``make data`` installs the Debian packages they read.
"""

from .an8flower import An8Flower, an8flower, area_under_iou_curve, iou_curve, pointing_game
from .broden import Broden, broden
from .concept_set import ConceptSet, concepts
from .fashion import FashionMNIST, fashion_mnist, read_idx
from .files import IMAGE_EXTENSIONS, ImageFiles, image_files, image_folder
from .label_maps import LabelFolder, label_folder
from .photo_sources import Photos, photos

__all__ = [
    "An8Flower",
    "an8flower",
    "area_under_iou_curve",
    "iou_curve",
    "pointing_game",
    "Broden",
    "ConceptSet",
    "IMAGE_EXTENSIONS",
    "FashionMNIST",
    "ImageFiles",
    "LabelFolder",
    "Photos",
    "broden",
    "concepts",
    "fashion_mnist",
    "image_files",
    "image_folder",
    "label_folder",
    "photos",
    "read_idx",
]
