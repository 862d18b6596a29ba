"""Acting on one observation (``Actor.act`` via ``MaskedMLP.infer``) gives the batch path's actions, and update pieces are marked."""

import numpy as np
import pytest
import torch

from rlx2.agents import make_agent
from rlx2.agents.base import NO_LAPS, Laps
from rlx2.config import RunConfig
from rlx2.methods import get_method
from rlx2.replay import ReplayBuffer


def agent_of(algo: str, method: str, sparsity: float = 0.9):
    m = get_method(method)()
    cfg = m.resolve(RunConfig(algo=algo, steps=10_000, warmup_steps=0, hidden_sizes=(64, 64), actor_sparsity=sparsity,
                              critic_sparsity=0.85, batch_size=32))
    return make_agent(algo, cfg=cfg, method=m, obs_dim=11, act_dim=3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", ["dense", "rlx2"])
@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_one_observation_acts_like_the_batch(algo, method, implementation):
    agent = agent_of(algo, method)
    observations = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    batch = agent.deterministic_action(observations)
    assert batch.shape == (5, 3)
    for obs, want in zip(observations, batch):
        got = agent.deterministic_action(obs)
        assert got.shape == (3,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    uses = agent.actor.net.network_pattern(agent.actor.net.fused_layers(), backward=False) is not None
    assert uses == (method == "rlx2" and implementation == "numba")  # the compiled path, else matrix-vector products


def test_an_actor_the_fused_paths_do_not_take_acts_through_its_modules():
    agent = agent_of("td3", "rlx2")
    from rlx2.sparse.layers import set_backend

    set_backend(agent.actor, "masked-dense")
    assert agent.actor.net.infer(np.zeros(11, np.float32)) is None
    obs = np.ones(11, np.float32)
    np.testing.assert_allclose(agent.deterministic_action(obs), agent.deterministic_action(obs[None]), rtol=1e-6)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_updates_mark_their_pieces_only_when_asked(algo):
    agent = agent_of(algo, "rlx2")
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(11, 3, 200, rng)
    for i in range(200):
        buffer.add(rng.normal(size=11), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), 1.0, rng.normal(size=11),
                   False, False)
    assert agent.laps is NO_LAPS
    agent.update(buffer.sample(32, 1, 0.99))
    assert NO_LAPS.seconds == {}
    agent.laps = Laps()
    for _ in range(2):  # TD3's actor steps every second iteration
        agent.update(buffer.sample(32, 1, 0.99))
    assert list(agent.laps.seconds) == ["target", "critic forward + loss", "critic backward", "critic step",
                                        "actor forward + backward", "actor step, soft updates"]
    assert all(seconds > 0 for seconds in agent.laps.seconds.values())


@pytest.mark.parametrize("log_std", ["tanh", "clamp"])
def test_compiled_squashed_gaussian_samples_and_differentiates_like_the_pytorch_operations(log_std, monkeypatch):
    from rlx2.agents.networks import GaussianActor
    from rlx2.sparse import kernels
    from rlx2.sparse.layers import random_mask

    if kernels.compiled() is None:
        pytest.skip("numba is not importable here")
    actor = GaussianActor(11, 3, (64, 64), log_std)
    generator = torch.Generator().manual_seed(3)
    actor.net[2].set_mask(random_mask((64, 64), 300, generator))
    with torch.no_grad():
        actor.net[4].bias.copy_(torch.tensor([0.1, -0.2, 0.3, -9.0, 0.5, 4.0]))  # raw log-std past the clamp on both sides
    obs = torch.randn(40, 11, generator=generator)
    results = {}
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "_KERNELS", False if compiled else None)
        assert actor.net.on_kernels() is compiled
        actor.zero_grad(set_to_none=True)
        action, logp = actor.sample(obs, torch.Generator().manual_seed(7))
        (action.pow(2).sum() + 0.3 * logp.sum()).backward()
        results[compiled] = [action.detach(), logp.detach()] + [p.grad.clone() for p in actor.parameters()]
    for name, got, want in zip(["action", "log_prob"] + [n for n, _ in actor.named_parameters()], results[True],
                               results[False]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("alpha_loss", ["reference", "log-alpha"])
def test_the_written_out_temperature_step_is_the_autograd_step(alpha_loss, monkeypatch):
    from rlx2.sparse import kernels

    if kernels.compiled() is None:
        pytest.skip("numba is not importable here")
    logp = torch.randn(64, generator=torch.Generator().manual_seed(1)) - 2.0
    results = {}
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "_KERNELS", False if compiled else None)
        m = get_method("rlx2")()
        cfg = m.resolve(RunConfig(algo="sac", steps=10_000, warmup_steps=0, hidden_sizes=(64, 64), actor_sparsity=0.9,
                                  critic_sparsity=0.85, alpha_loss=alpha_loss))
        agent = make_agent("sac", cfg=cfg, method=m, obs_dim=11, act_dim=3, generator=torch.Generator().manual_seed(0))
        assert agent.actor.net.on_kernels() is compiled
        with torch.no_grad():
            agent.log_alpha.fill_(-0.7)
        for _ in range(3):
            agent.temperature_step(logp)
        state = agent.alpha_opt.state[agent.log_alpha]
        results[compiled] = (agent.log_alpha.detach().clone(), state["exp_avg"].clone(), float(state["step"]))
    (got, got_m, got_step), (want, want_m, want_step) = results[True], results[False]
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got_m, want_m, rtol=1e-5, atol=1e-8)
    assert got_step == want_step == 3.0
