"""The method registry and what each built-in method decides."""

import pytest
import torch

from rlx2.baselines.tiny import matching_hidden_sizes
from rlx2.sparse.flops import mlp_weights as weight_count
from rlx2.config import RunConfig
from rlx2.methods import DynamicSparseMethod, Method, SparseMethod, available_methods, get_method, register
from rlx2.sparse.topology import gradient_grow_scores, random_grow_scores

BUILTIN = {"dense", "tiny", "static", "set", "rigl", "rlx2"}


def test_every_builtin_method_is_registered_with_a_description():
    methods = available_methods()
    assert BUILTIN <= set(methods)
    assert all(cls.description for cls in methods.values())


def test_unknown_method_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"method='nope'.*available: .*rlx2"):
        get_method("nope")


def test_a_second_class_cannot_take_a_registered_name():
    class Impostor(Method):
        name = "rigl"
        description = "not RigL"

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)


def test_set_rigl_and_rlx2_differ_only_where_they_should():
    set_, rigl, rlx2 = (get_method(n) for n in ("set", "rigl", "rlx2"))
    assert all(issubclass(cls, DynamicSparseMethod) for cls in (set_, rigl, rlx2))
    weight, grad = torch.randn(8, 8), torch.randn(8, 8)
    for cls, rule in ((rigl, gradient_grow_scores), (rlx2, gradient_grow_scores), (set_, random_grow_scores)):
        assert torch.equal(cls.grow_scores(weight, grad, torch.Generator().manual_seed(3)),
                           rule(weight, grad, torch.Generator().manual_seed(3)))
    assert rigl.grow_scores is rlx2.grow_scores  # one rule, inherited
    assert (rigl.n_step, rigl.dynamic_buffer) == (1, False)
    assert (rlx2.n_step, rlx2.dynamic_buffer) == (3, True)
    assert issubclass(get_method("static"), SparseMethod) and get_method("static")().schedule(RunConfig(), 1) is None


def test_resolve_fills_method_and_algorithm_defaults_but_keeps_user_overrides():
    cfg = get_method("rlx2")().resolve(RunConfig(algo="sac", steps=100_000, warmup_steps=10_000))
    # the buffer minimum scales with the budget (2e5 x 100k/3M); the capacity stays the algorithm's
    assert (cfg.n_step, cfg.dynamic_buffer, cfg.buffer_min, cfg.buffer_max, cfg.t_end) == (3, True, 6_667, 3_000_000, 90_000)
    assert (cfg.warmup_steps, cfg.nstep_delay, cfg.delta) == (10_000, 10_000, 333)  # given / scaled
    cfg = get_method("rigl")().resolve(RunConfig(n_step=3, dynamic_buffer=True))  # an ablation
    assert (cfg.n_step, cfg.dynamic_buffer) == (3, True)
    dense = get_method("dense")().resolve(RunConfig(actor_sparsity=0.9))
    assert dense.actor_sparsity == 0.0 and dense.critic_sparsity == 0.0


@pytest.mark.parametrize("density", [0.02, 0.1, 0.15, 0.5])
def test_tiny_widths_match_the_sparse_weight_count(density):
    widths = matching_hidden_sizes((256, 256), 17, 6, density)
    target = density * weight_count(17, (256, 256), 6)
    best = weight_count(17, widths, 6)
    assert widths[0] == widths[1]
    # no other width is closer to the target
    for w in (widths[0] - 1, widths[0] + 1):
        assert abs(best - target) <= abs(weight_count(17, (w, w), 6) - target)


def test_tiny_sizes_each_network_from_its_own_sparsity():
    tiny = get_method("tiny")()
    cfg = tiny.resolve(RunConfig(actor_sparsity=0.9, critic_sparsity=0.5))
    actor = tiny.hidden_sizes(cfg, "actor", 17, 6)
    critic = tiny.hidden_sizes(cfg, "critic", 23, 1)
    assert actor[0] < critic[0] < 256
