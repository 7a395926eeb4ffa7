"""Confident-GNMax on vote histograms, with exact integer noise (the 2018 paper's Algorithm 1).

For each asked query, in order: the top count plus a discrete Gaussian of variance sigma1**2 (on the grid
1: the counts are whole numbers) is compared with the threshold; below it the query is not answered
(None). Otherwise every count gets its own discrete Gaussian of variance sigma2**2 and the class of the
largest noisy count is the answer, ties broken uniformly at random (a post-processing; it also makes the
true argmax the likeliest answer, which rdp.py's bound q <= 1 - 1/m uses). The samplers are
cloakroom_client.protocol.noise's exact ones (Canonne, Kamath and Steinke 2020): no float noise is drawn,
and nothing but the answer leaves this module: neither a count nor a noisy count is returned.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from cloakroom_client.protocol.noise import discrete_gaussian, exact


def variance(sigma: float) -> Fraction:
    """sigma**2 as an exact fraction of sigma's shortest decimal (150.0 gives 22500)."""
    return exact(float(sigma)) ** 2


def confident_gnmax(
    counts: np.ndarray,
    threshold: float,
    sigma1: float,
    sigma2: float,
    rng: random.Random,
    progress: Callable[[int, int], None] | None = None,
) -> list[int | None]:
    """The answered class index of every row of ``counts`` (queries x classes), or None."""
    var1, var2 = variance(sigma1), variance(sigma2)
    cut = exact(float(threshold))
    out: list[int | None] = []
    total = len(counts)
    for i, row in enumerate(np.asarray(counts, dtype=np.int64)):
        top = int(row.max())
        if top + discrete_gaussian(rng, var1) >= cut:
            noisy = [int(v) + discrete_gaussian(rng, var2) for v in row]
            best = max(noisy)
            winners = [c for c, v in enumerate(noisy) if v == best]
            out.append(winners[rng.randrange(len(winners))])
        else:
            out.append(None)
        if progress is not None:
            progress(i + 1, total)
    return out
