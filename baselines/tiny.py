"""Tiny: dense networks narrowed until their weight count matches the sparse model's."""

from rlx2.methods import Method, register


def matching_hidden_sizes(hidden: tuple[int, ...], in_dim: int, out_dim: int, density: float) -> tuple[int, ...]:
    """Hidden widths, ``hidden`` scaled down uniformly, whose weight count is closest to ``density`` times the full one."""
    from rlx2.sparse.flops import mlp_weights  # here: naming or resolving the method does not need torch

    target = density * mlp_weights(in_dim, hidden, out_dim)
    widest = max(hidden)

    def scaled(width: int) -> tuple[int, ...]:
        return tuple(max(1, round(h * width / widest)) for h in hidden)

    best = min(range(1, widest + 1), key=lambda w: abs(mlp_weights(in_dim, scaled(w), out_dim) - target))
    return scaled(best)


@register
class Tiny(Method):
    name = "tiny"
    description = "dense networks with hidden widths shrunk to the sparse model's weight count"
    uses_sparsity = True  # the sparsities size the networks; no masks are used

    def hidden_sizes(self, cfg, role, in_dim, out_dim):
        return matching_hidden_sizes(cfg.hidden_sizes, in_dim, out_dim, 1.0 - self.sparsity(cfg, role))
