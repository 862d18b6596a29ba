"""SET (Mocanu et al. 2018): magnitude drop, random grow, on RLx2's schedule."""

from rlx2.methods import DynamicSparseMethod, register


@register
class SET(DynamicSparseMethod):
    name = "set"
    description = "SET: drop smallest magnitudes, grow at random (cosine schedule)"

    @staticmethod
    def grow_scores(weight, dense_grad, generator):
        """``rlx2.sparse.topology.random_grow_scores`` (imported here: naming a method does not need torch)."""
        from rlx2.sparse.topology import random_grow_scores

        return random_grow_scores(weight, dense_grad, generator)
