"""Analytic FLOPs and model size: hand counts, the paper's Table 2 rows, and consistency with runs."""

import pytest
import torch

from rlx2.agents import make_agent
from rlx2.agents.networks import mlp
from rlx2.cli import main
from rlx2.config import RunConfig
from rlx2.methods import get_method
from rlx2.agents import SAC, TD3
from rlx2.sparse.flops import NetworkCosts, Phase, flops_report, forward_flops, iterations_flops, run_flops


def test_forward_flops_of_a_hand_counted_two_layer_mlp():
    net = mlp(3, (4,), 2)  # weights 4x3 = 12 and 2x4 = 8
    mask = torch.zeros(4, 3, dtype=torch.bool)
    mask[0, :] = True
    mask[1, :2] = True  # 5 active
    net[0].set_mask(mask)
    assert forward_flops(net) == (5 + 8, 20)


def test_td3_run_flops_by_hand():
    cfg = RunConfig(algo="td3", steps=10, warmup_steps=2, batch_size=2, policy_delay=2, n_step=1)
    costs = NetworkCosts(actor=1, critic=2, q1=1, actor_dense=4, critic_dense=8)
    # 8 iterations: critic B(A + 4C) = 18 each; 4 actor updates of 3B(A + Q1) = 12; acting A = 1 each
    assert run_flops(cfg, TD3, [Phase(8, costs)], {}) == 8 * 18 + 4 * 12 + 8
    # one critic topology update adds B (D_C - F_C) = 2 * 6
    assert run_flops(cfg, TD3, [Phase(8, costs)], {"critic": 1}) == 8 * 18 + 4 * 12 + 8 + 12


def test_sac_run_flops_by_hand_with_delayed_nstep():
    cfg = RunConfig(algo="sac", steps=10, warmup_steps=2, batch_size=2, n_step=3, nstep_delay=5)
    costs = NetworkCosts(actor=1, critic=2, q1=1, actor_dense=4, critic_dense=8)
    # iterations 1-4 one-step (policy on B next states), 5-8 three-step (on 3B)
    policy_targets = 2 * 1 * (4 + 3 * 4)
    critic = 8 * 4 * 2 * 2
    actor = 8 * 3 * 2 * (1 + 2)
    assert run_flops(cfg, SAC, [Phase(8, costs)], {}) == policy_targets + critic + actor + 8
    # phases split the same run without changing the total
    split = run_flops(cfg, SAC, [Phase(3, costs), Phase(5, costs)], {})
    assert split == run_flops(cfg, SAC, [Phase(8, costs)], {})
    assert iterations_flops(cfg, SAC, costs, 5, 4) == 0.0


def report(algo, obs, act, actor_sp, critic_sp, method="rlx2", **changes):
    m = get_method(method)()
    cfg = m.resolve(RunConfig(algo=algo, method=method, actor_sparsity=actor_sp, critic_sparsity=critic_sp, **changes))
    agent = make_agent(algo, cfg=cfg, method=m, obs_dim=obs, act_dim=act, generator=torch.Generator().manual_seed(0))
    return flops_report(cfg, obs, act, m.training_cost(cfg, agent))


@pytest.mark.parametrize(
    ("algo", "obs", "act", "actor_sp", "critic_sp", "size", "inference"),
    [("td3", 17, 6, 0.90, 0.85, 0.133, 0.100),  # HalfCheetah (gym v3 sizes)
     ("sac", 111, 8, 0.90, 0.75, 0.220, 0.100)],  # Ant
)
def test_paper_table2_rows(algo, obs, act, actor_sp, critic_sp, size, inference):
    figures = report(algo, obs, act, actor_sp, critic_sp)
    assert round(figures["size"], 3) == size
    assert round(figures["inference_flops_relative"], 3) == inference


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_dense_agent_costs_exactly_its_analytic_dense_count(algo):
    figures = report(algo, 11, 3, 0.9, 0.9, method="dense", steps=50_000, warmup_steps=5_000)
    assert figures["size"] == 1.0 and figures["inference_flops_relative"] == 1.0
    assert figures["training_flops"] == figures["dense_training_flops"]
    assert figures["training_flops_relative"] == 1.0
    b, iters = 256, 45_000
    actor = 11 * 256 + 256 * 256 + 256 * (3 if algo == "td3" else 6)
    q = 14 * 256 + 256 * 256 + 256
    if algo == "td3":
        expected = iters * b * (actor + 4 * 2 * q) + iters // 2 * 3 * b * (actor + q) + iters * actor
    else:
        expected = iters * b * actor + iters * 4 * b * 2 * q + iters * 3 * b * (actor + 2 * q) + iters * actor
    assert figures["training_flops"] == expected


def test_sparse_methods_cost_less_and_dynamic_ones_pay_for_dense_gradients():
    static = report("td3", 17, 6, 0.9, 0.85, method="static")
    rigl = report("td3", 17, 6, 0.9, 0.85, method="rigl")
    assert static["topology_updates"] == {"actor": 0, "critic": 0}
    # 2.975M iterations, delta 10 000: critic updates at 10k..2.97M, the actor (t_end halved) at 10k..1.48M
    assert rigl["topology_updates"] == {"actor": 148, "critic": 297}
    assert static["training_flops_relative"] < rigl["training_flops_relative"] < 0.2
    tiny = report("td3", 17, 6, 0.9, 0.85, method="tiny")
    assert tiny["size"] == pytest.approx(static["size"], rel=0.05)


def test_flops_command(capsys):
    assert main(["flops", "--algo", "td3", "--obs-dim", "17", "--act-dim", "6", "--actor-sparsity", "0.9",
                 "--critic-sparsity", "0.85"]) == 0
    out = capsys.readouterr().out
    assert "0.133x" in out and "0.100x" in out
    with pytest.raises(SystemExit):
        main(["flops", "--algo", "td3", "--obs-dim", "0", "--act-dim", "6"])
    assert "obs-dim=0" in capsys.readouterr().err
