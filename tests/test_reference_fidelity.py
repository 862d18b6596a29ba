"""The reference implementation's behaviour is the default; each difference is a named setting.

Constructed cases for every setting of issue "reference fidelity" (RLX2.md sections 3, 4, 7):
initial masks, the SAC behaviour policy, log-std map and temperature loss, and the critic's
grow score (regrow / grown_adam are in test_topology.py).
"""

import copy
import json
import math

import numpy as np
import pytest
import torch

from rlx2.agents import make_agent
from rlx2.agents.networks import GaussianActor
from rlx2.cli import main
from rlx2.config import RunConfig
from rlx2.methods import get_method
from rlx2.sparse.distribution import active_counts, layer_densities
from rlx2.sparse.layers import magnitude_mask, masked_layers, sparsify, top_k_mask
from test_backend import filled_buffer


def test_magnitude_mask_keeps_exactly_the_largest_entries_and_breaks_ties_by_index():
    weight = torch.tensor([[0.3, -0.9, 0.1], [-0.3, 0.0, 0.5]])
    assert magnitude_mask(weight, 3).tolist() == [[True, True, False], [False, False, True]]  # 0.3 beats -0.3
    assert magnitude_mask(weight, 4).tolist() == [[True, True, False], [True, False, True]]
    assert top_k_mask(torch.ones(2, 2), 3).tolist() == [[True, True], [True, False]]


def test_active_counts_are_the_references_n_minus_int_s_n():
    # density 0.34 of 10 weights: the reference keeps 10 - int(0.66 * 10) = 4 (rounding would keep 3)
    assert active_counts([(2, 5)], [0.34]) == [4]
    assert active_counts([(4, 3), (2, 4)], [0.5, 1.0]) == [6, 8]


@pytest.mark.parametrize("init", ["magnitude", "random"])
def test_initial_masks_by_magnitude_or_at_random(init):
    from rlx2.agents.networks import TwinQ

    g = torch.Generator().manual_seed(0)
    net = TwinQ(11, 3, (64, 64))
    for _, layer in masked_layers(net):
        layer.reset_parameters(g)
    weights = {name: layer.weight.detach().clone() for name, layer in masked_layers(net)}
    shapes = [tuple(w.shape) for w in weights.values()]
    counts = active_counts(shapes, layer_densities(shapes, 0.9))
    sparsify(net, 0.9, g, "er", init)
    for (name, layer), count in zip(masked_layers(net), counts):
        assert int(layer.mask.sum()) == count
        kept = weights[name].abs()[layer.mask]
        if layer.mask.all():
            continue
        dropped_max = weights[name].abs()[~layer.mask].max()
        if init == "magnitude":  # every kept weight is at least as large as every dropped one, values untouched
            assert kept.min() >= dropped_max
            assert torch.equal(layer.weight[layer.mask], weights[name][layer.mask])
        else:
            assert kept.min() < dropped_max


def sac_agent(method="rlx2", **changes):
    method_obj = get_method(method)()
    cfg = method_obj.resolve(RunConfig(algo="sac", steps=10_000, warmup_steps=0, hidden_sizes=(32, 32), batch_size=16,
                                       actor_sparsity=0.8, critic_sparsity=0.7, **changes))
    return make_agent("sac", cfg=cfg, method=method_obj, obs_dim=11, act_dim=3,
                      generator=torch.Generator().manual_seed(1))


def test_sac_acts_with_the_mean_action_by_default_and_samples_as_the_variant():
    obs = np.linspace(-1, 1, 11).astype(np.float32)
    agent = sac_agent()
    action, behaviour = agent.explore(obs, np.random.default_rng(0))
    assert np.array_equal(action, behaviour) and np.array_equal(action, agent.deterministic_action(obs))
    sampling = sac_agent(sac_explore="sample")
    action, behaviour = sampling.explore(obs, np.random.default_rng(0))
    assert np.array_equal(behaviour, sampling.deterministic_action(obs)) and not np.allclose(action, behaviour)


def test_log_std_maps_on_chosen_raw_values():
    raw = torch.tensor([-100.0, -1.0, 0.0, 1.0, 100.0])
    tanh = GaussianActor(2, 1, (4,), "tanh").log_std(raw)
    expected = [-5.0, -5 + 3.5 * (math.tanh(-1.0) + 1), -1.5, -5 + 3.5 * (math.tanh(1.0) + 1), 2.0]
    assert tanh.tolist() == pytest.approx(expected)
    assert GaussianActor(2, 1, (4,), "clamp").log_std(raw).tolist() == [-5.0, -1.0, 0.0, 1.0, 2.0]


def test_the_reference_temperature_gradient_is_alpha_times_the_log_alpha_one():
    logp = torch.tensor([-1.0, -4.0, 0.5])
    grads = {}
    for rule in ("reference", "log-alpha"):
        agent = sac_agent(alpha_loss=rule)
        agent.log_alpha.data.fill_(math.log(0.3))
        agent.temperature_loss(logp).backward()
        grads[rule] = agent.log_alpha.grad.item()
    assert grads["log-alpha"] != 0 and grads["reference"] == pytest.approx(0.3 * grads["log-alpha"], rel=1e-6)


def capture_grow_gradients(agent):
    """Record the dense gradient every critic topology update grows by."""
    seen = []
    ctrl = agent.controllers["critic"]
    rule = ctrl.grow_scores

    def spy(weight, dense_grad, generator):
        seen.append(dense_grad.clone())
        return rule(weight, dense_grad, generator)

    ctrl.grow_scores = spy
    return seen


def actor_loss_critic_gradient(agent, batch, saved):
    """The gradient w.r.t. the critic's sparse weights of the SAC actor loss, recomputed from saved state."""
    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    actor.load_state_dict(saved["actor"])
    critic.load_state_dict(saved["critic"])
    action, logp = actor.sample(batch.obs, torch.Generator().set_state(saved["generator"]))
    q1, q2 = critic(batch.obs, action)
    loss = (saved["alpha"] * logp - torch.minimum(q1, q2)).mean()
    by_name = dict(masked_layers(critic))
    return torch.autograd.grad(loss, [by_name[name].weight for name, _ in agent.controllers["critic"].layers])


def test_the_reference_critic_grow_score_adds_the_actor_loss_gradient_of_the_iteration_before():
    delta = 5
    buffer = filled_buffer(11, 3)
    batches = [buffer.sample(16, 1, 0.99) for _ in range(delta)]
    reference, critic_only = sac_agent(delta=delta), sac_agent(delta=delta, critic_grow_gradient="critic-loss")
    seen = {"reference": capture_grow_gradients(reference), "critic-loss": capture_grow_gradients(critic_only)}
    saved = {}
    original = reference.actor.sample

    def remember(obs, generator):  # the last call of iteration delta-1 is the actor loss's sample
        saved.update(actor=copy.deepcopy(reference.actor.state_dict()), alpha=reference.alpha.clone(),
                     critic=copy.deepcopy(reference.critic.state_dict()), generator=generator.get_state())
        return original(obs, generator)

    for i, batch in enumerate(batches):
        if i == delta - 2:
            reference.actor.sample = remember
        if i == delta - 1:
            reference.actor.sample = original
            carried = [c.clone() for c in reference.controllers["critic"].carried]
            actor_term = actor_loss_critic_gradient(reference, batches[delta - 2], saved)
        reference.update(batch)
        critic_only.update(batch)
    assert reference.controllers["critic"].events and critic_only.controllers["critic"].events
    assert critic_only.controllers["critic"].carried is None and reference.controllers["critic"].carried is None
    for term, carry in zip(actor_term, carried):
        torch.testing.assert_close(carry, term, rtol=1e-5, atol=1e-7)  # what was carried is the actor-loss term
    evolved = [i for i, (_, layer) in enumerate(reference.controllers["critic"].layers) if not layer.mask.all()]
    assert len(seen["reference"]) == len(seen["critic-loss"]) == len(evolved) > 0
    for got, own, i in zip(seen["reference"], seen["critic-loss"], evolved):
        torch.testing.assert_close(got, own + actor_term[i], rtol=1e-5, atol=1e-6)  # the explicit sum
        assert actor_term[i].abs().sum() > 0


@pytest.mark.parametrize(("delta", "carries"), [(6, False), (5, True)])
def test_td3s_critic_grow_score_gets_the_actor_term_only_when_delta_is_odd(delta, carries):
    # TD3's actor updates on even iterations; the iteration before a critic update at t = k delta is odd
    # unless delta is odd, so the reference's accumulation touches TD3 only then.
    method = get_method("rigl")()
    cfg = method.resolve(RunConfig(algo="td3", steps=10_000, warmup_steps=0, hidden_sizes=(32, 32), batch_size=16,
                                   actor_sparsity=0.8, critic_sparsity=0.7, delta=delta))
    agent = make_agent("td3", cfg=cfg, method=method, obs_dim=11, act_dim=3, generator=torch.Generator().manual_seed(1))
    buffer = filled_buffer(11, 3)
    carried = []
    for _ in range(2 * delta):
        agent.update(buffer.sample(16, 1, 0.99))
        carried.append(agent.controllers["critic"].carried is not None)
    assert any(carried) == carries


def test_a_checkpoint_between_carry_and_update_resumes_exactly():
    delta = 5
    buffer = filled_buffer(11, 3)
    batches = [buffer.sample(16, 1, 0.99) for _ in range(delta + 2)]
    a = sac_agent(delta=delta)
    for batch in batches[: delta - 1]:
        a.update(batch)
    assert a.controllers["critic"].carried is not None
    state = copy.deepcopy(a.training_state())
    generator_state = a.generator.get_state()
    b = sac_agent(delta=delta)
    b.load_training_state(state)
    b.generator.set_state(generator_state)
    for batch in batches[delta - 1:]:
        assert a.update(batch) == b.update(batch)
    for name, tensor in a.state_dict()["critic"].items():
        assert torch.equal(tensor, b.state_dict()["critic"][name]), name


def test_a_short_rlx2_run_scales_its_schedule_switches_to_nstep_and_checks_the_buffer(tmp_path, capsys):
    # No step-count flag given: warm-up, n-step delay, buffer checks and minimum scale to the 6 000-step budget.
    assert main(["run", "--method", "rlx2", "--env", "Hopper-v5", "--steps", "6000", "--batch-size", "64",
                 "--hidden-sizes", "64", "64", "--eval-episodes", "2", "--quiet", "--out", str(tmp_path)]) == 0
    run = tmp_path / "td3/Hopper-v5/rlx2/seed-0"
    meta = json.loads((run / "config.json").read_text())
    cfg = meta["config"]
    assert (cfg["warmup_steps"], cfg["nstep_delay"], cfg["buffer_check_every"], cfg["buffer_min"]) == (1_000, 600,
                                                                                                       500, 1_000)
    assert {"warmup_steps", "nstep_delay", "buffer_check_every", "buffer_min", "delta"} <= set(meta["scaled_to_budget"])
    rows = (run / "diagnostics.csv").read_text().splitlines()
    header = rows[0].split(",")
    values = [dict(zip(header, row.split(","))) for row in rows[1:]]
    assert {r["n_step"] for r in values} == {"1", "3"} and values[-1]["n_step"] == "3"
    assert any(r["policy_distance"] not in ("", "nan") for r in values)  # the dynamic buffer was checked
    assert json.loads(capsys.readouterr().out)["final_window"] == 3
