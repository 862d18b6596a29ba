"""Static sparse (SS): a random layer-wise mask at initialisation, never changed."""

from rlx2.methods import SparseMethod, register


@register
class Static(SparseMethod):
    name = "static"
    description = "static sparse: random ER masks at initialisation, never changed"
