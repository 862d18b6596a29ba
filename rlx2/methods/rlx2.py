"""RLx2 (Tan et al., ICLR 2023): RigL topology evolution + delayed n-step targets + dynamic buffer."""

from rlx2.methods.base import DynamicSparseMethod
from rlx2.methods.registry import register


@register
class RLx2(DynamicSparseMethod):
    name = "rlx2"
    description = "RigL drop/grow, delayed 3-step TD targets and the dynamic-capacity replay buffer"
    n_step = 3
    dynamic_buffer = True
