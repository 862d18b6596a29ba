"""RigL (Evci et al. 2020): magnitude drop, dense-gradient grow; no multi-step, fixed buffer."""

from rlx2.methods import DynamicSparseMethod, register


@register
class RigL(DynamicSparseMethod):
    name = "rigl"
    description = "RigL: drop smallest magnitudes, grow largest dense gradients (cosine schedule)"
