"""SET (Mocanu et al. 2018): magnitude drop, random grow, on RLx2's schedule."""

from rlx2.methods import DynamicSparseMethod, register
from rlx2.sparse.topology import random_grow_scores


@register
class SET(DynamicSparseMethod):
    name = "set"
    description = "SET: drop smallest magnitudes, grow at random (cosine schedule)"
    grow_scores = staticmethod(random_grow_scores)
