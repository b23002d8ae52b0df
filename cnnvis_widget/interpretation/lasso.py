"""The constrained non-negative lasso of Oramas et al. (ICLR 2019, Sec. 3.1):

    min_w ||X w - y||_2^2   subject to   ||w||_1 <= mu,  w >= 0

solved exactly by following scikit-learn's LARS-lasso path (``lars_path(method="lasso",
positive=True)``) until the L1 norm of the solution reaches ``mu``: the path is piecewise
linear and, with w >= 0, the L1 norm is the plain sum, linear on each piece, so the point
where it equals ``mu`` is one linear interpolation between two knots. (The penalized
solution at the penalty where ||w||_1 = mu is the constrained one: Lagrange duality.) When
the whole path stays below ``mu`` the bound is inactive and the answer is the non-negative
least-squares solution. scikit-learn is imported here only, when a fit runs."""

from __future__ import annotations

import warnings

import numpy as np


def positive_lasso(x: np.ndarray, y: np.ndarray, mu: float) -> np.ndarray:
    """The w (m,) >= 0 with sum(w) <= ``mu`` minimizing ||x w - y||^2 for ``x`` (n, m) and
    ``y`` (n,) (float64; no intercept: center both first)."""
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import lars_path
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "relevant features need scikit-learn for the lasso path: pip install scikit-learn"
        ) from error
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[1]
    steps = 64
    while True:
        with warnings.catch_warnings():
            # LARS notes collinear or constant columns; the path stays valid (they never enter).
            warnings.simplefilter("ignore", ConvergenceWarning)
            _, _, coefs = lars_path(x, y, method="lasso", positive=True, max_iter=steps)
        norms = coefs.sum(axis=0)
        crossed = np.flatnonzero(norms >= mu)
        if crossed.size:
            i = int(crossed[0])
            if i == 0:  # mu >= 0 always; only when the path starts at norm >= mu (never)
                return coefs[:, 0].copy()
            low, high = norms[i - 1], norms[i]
            t = (mu - low) / (high - low)
            w = coefs[:, i - 1] + t * (coefs[:, i] - coefs[:, i - 1])
            return np.maximum(w, 0.0)
        if coefs.shape[1] - 1 < steps or steps >= 4 * m + 64:
            break  # the path ended below mu
        steps *= 2
    return _nonnegative_least_squares(x, y, coefs[:, -1], mu)


def _nonnegative_least_squares(
    x: np.ndarray, y: np.ndarray, end: np.ndarray, mu: float
) -> np.ndarray:
    """The bound is inactive: the non-negative least-squares solution (LARS's path may stop
    at a small positive penalty instead of reaching it)."""
    from scipy.optimize import nnls

    w, _ = nnls(x, y)
    return w if w.sum() <= mu else end.copy()


def objective(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """||x w - y||^2."""
    r = x @ w - y
    return float(r @ r)
