"""Visual Explanation by Interpretation (Oramas, Wang & Tuytelaars, ICLR 2019): the filters
relevant to each class, found by a constrained non-negative lasso on pooled filter responses
over a labelled data set (:func:`relevant_features`), their average visualizations
(:func:`average_visualizations`), and test-time explanations (:func:`explain`).
docs/interpretation.md says what the paper and the authors' code fix and what is ours."""

from .explain import (
    AverageVisualizations,
    ExplainedFilter,
    Explanation,
    average_visualizations,
    explain,
)
from .lasso import positive_lasso
from .responses import ResponseTable
from .result import RelevantFeatures, RelevantFilter
from .run import relevant_features

__all__ = [
    "AverageVisualizations",
    "ExplainedFilter",
    "Explanation",
    "RelevantFeatures",
    "RelevantFilter",
    "ResponseTable",
    "average_visualizations",
    "explain",
    "positive_lasso",
    "relevant_features",
]
