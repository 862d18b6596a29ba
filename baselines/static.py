"""Static sparse (SS): the initial ER masks (largest initial weights, by default), never changed."""

from rlx2.methods import SparseMethod, register


@register
class Static(SparseMethod):
    name = "static"
    description = "static sparse: ER masks at initialisation (mask_init), never changed"
