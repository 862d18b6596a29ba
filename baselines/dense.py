"""Dense: the unmasked agent every percentage is relative to."""

from rlx2.methods import Method, register


@register
class Dense(Method):
    name = "dense"
    description = "dense actor and critic (the reference every % of dense is relative to)"
