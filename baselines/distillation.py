"""Policy distillation into a sparse student (in the spirit of PoPS, Livne and Cohen 2020).

A dense-to-sparse method: it needs a trained dense agent first, which is the cost RLx2
avoids.

1. **Teacher**: the dense run of the same algo/task/seed/budget. A finished one in the
   results root (``<out>/<algo>/<env>/dense/seed-<k>``) with the same resolved settings is
   reused; otherwise it is trained there, so the suite's dense run and the teacher are one.
2. **Student**: an actor of the teacher's shape with ER masks at the actor sparsity,
   initialised by magnitude-pruning the teacher (each layer keeps its largest weights).
3. **Teacher data**: run directories do not keep replay buffers, so the states come from
   ``teacher_state_fraction * steps`` steps of the teacher's own behaviour policy
   (TD3: deterministic action + Gaussian noise; SAC: sampled actions), labelled with the
   teacher's deterministic action.
4. **Distillation**: ``student_fraction * steps`` steps of the student's own rollouts
   (deterministic action + ``student_noise`` Gaussian noise), each labelled by the
   teacher, with one Adam step per environment step on a batch drawn half from teacher
   data and half from student data. Loss: mean squared error between student and teacher
   deterministic actions (TD3: the actions; SAC: the tanh-squashed means, i.e. mean-action
   MSE rather than a KL).

Evaluations of the student continue the teacher's step axis (``steps + k``); the score is
the student's. Training FLOPs = the teacher's whole run + labelling + the student phase.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch.nn import functional as F

from rlx2.agents import make_agent
from rlx2.config import final_window, run_id
from rlx2.evaluation import ActorPolicy, load_agent
from rlx2.methods import Method, register, resolve
from rlx2.procedure import RunContext, RunResult, Session
from rlx2.sparse.controller import MaskController
from rlx2.sparse.distribution import active_counts, layer_densities
from rlx2.sparse.flops import NetworkCosts, TrainingCost, dense_run_flops
from rlx2.sparse.layers import magnitude_mask, masked_layers, sparsify


def prune_into_student(teacher_actor: torch.nn.Module, sparsity: float, distribution: str) -> torch.nn.Module:
    """A copy of ``teacher_actor`` that keeps, per layer, its largest-magnitude weights (ER counts)."""
    student = copy.deepcopy(teacher_actor)
    layers = [layer for _, layer in masked_layers(student)]
    shapes = [tuple(layer.weight.shape) for layer in layers]
    for layer, keep in zip(layers, active_counts(shapes, layer_densities(shapes, sparsity, distribution))):
        layer.set_mask(magnitude_mask(layer.weight, keep))
    return student


@register
class Distillation(Method):
    name = "distillation"
    description = "dense teacher, then a sparse student actor distilled from it (PoPS-style); counts the teacher"
    uses_sparsity = True
    teacher_state_fraction = 0.1
    student_fraction = 0.2
    student_noise = 0.1
    own_step_axis = ("its student trains after its dense teacher's whole run, so its steps are not on this axis; its "
                     "teacher is the dense curve")

    def install_masks(self, role, network, cfg, generator):
        # What the deliverable looks like, for `rlx2 flops`: a sparse actor; the critic is the teacher's, dense.
        if role == "actor":
            sparsify(network, cfg.actor_sparsity, generator, cfg.sparsity_distribution, cfg.mask_init)

    def phase_steps(self, cfg) -> tuple[int, int]:
        """``(teacher-data states, student steps)`` for a run of ``cfg.steps`` steps."""
        return (max(cfg.batch_size, round(self.teacher_state_fraction * cfg.steps)),
                max(1, round(self.student_fraction * cfg.steps)))

    def training_cost(self, cfg, agent) -> TrainingCost:
        obs_dim = agent.obs_dim
        dense = NetworkCosts.dense(type(agent), obs_dim, agent.act_dim, cfg.hidden_sizes)
        teacher = dense_run_flops(cfg, type(agent), dense)
        student = NetworkCosts.of_agent(agent).actor
        teacher_states, student_steps = self.phase_steps(cfg)
        labelling = (teacher_states + student_steps) * dense.actor  # one teacher forward per state
        distill = student_steps * (student + 3 * cfg.batch_size * student)  # acting + forward/backward
        final = NetworkCosts(student, dense.critic, dense.q1, dense.actor, dense.critic)
        return TrainingCost(type(agent), final, teacher + labelling + distill, {"actor": 0, "critic": 0},
                            kept_weights=(student, dense.actor))

    def depends_on(self, cfg):
        return [resolve(cfg.replace(method="dense"))[0]]

    # -- the run ----------------------------------------------------------------
    def run(self, ctx: RunContext) -> RunResult:
        """Teacher (reused or trained through the lifecycle), its data, then the student's distillation."""
        cfg = ctx.cfg
        (teacher_cfg,) = self.depends_on(cfg)
        teacher_dir = ctx.dependency(teacher_cfg)
        teacher, teacher_result = load_agent(teacher_dir.path), teacher_dir.result()
        teacher_states, student_steps = self.phase_steps(cfg)
        session = Session(ctx, steps=student_steps, label=" student")
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
        student = prune_into_student(teacher.actor, cfg.actor_sparsity, cfg.sparsity_distribution)
        optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
        controller = MaskController(student, optimizer)
        accounting = make_agent(cfg.algo, cfg=cfg, method=self, obs_dim=session.obs_dim, act_dim=session.act_dim,
                                generator=torch.Generator().manual_seed(cfg.seed))
        flops = session.flops(self.training_cost(cfg, accounting))
        session.start({"student_actor": student}, {"actor": controller.densities()}, flops, {"actor": controller},
                      teacher={"run_id": run_id(teacher_cfg), "final_score": teacher_result.final_score})
        data_obs = np.zeros((teacher_states + student_steps, session.obs_dim), np.float32)
        data_act = np.zeros((teacher_states + student_steps, session.act_dim), np.float32)
        with session.attempt():
            self.teacher_data(cfg, teacher, session, rng, data_obs, data_act, teacher_states)
            seconds = self.distil(cfg, teacher, student, controller, session, rng, data_obs, data_act, teacher_states)
        return session.finish({"student_actor": student.state_dict()},
                              RunResult(steps=cfg.steps + student_steps, iterations=student_steps, wall_seconds=seconds,
                                        steps_per_second=student_steps / seconds, final_buffer_size=None,
                                        final_densities={"actor": controller.densities()}, flops=flops,
                                        extra={"teacher_final_score": teacher_result.final_score}),
                              window=final_window(len(session.evaluations)))  # the student's own evaluations

    @staticmethod
    def teacher_data(cfg, teacher, session: Session, rng, data_obs, data_act, count: int) -> None:
        """The first ``count`` rows: states of the teacher's behaviour policy, labelled by its deterministic action."""
        env, scale = session.env, session.scale
        obs, _ = env.reset(seed=cfg.seed + 1)
        for i in range(count):
            action, behaviour = teacher.explore(obs, rng)
            data_obs[i], data_act[i] = obs, behaviour
            obs, _, terminated, truncated, _ = env.step(scale(action))
            if terminated or truncated:
                obs, _ = env.reset()

    def distil(self, cfg, teacher, student, controller, session: Session, rng, data_obs, data_act,
               teacher_states: int) -> float:
        """The student's own rollouts, labelled by the teacher, one Adam step on a mixed batch per step.

        Returns the seconds it took."""
        env, scale, recorder = session.env, session.scale, session.recorder
        act_dim = data_act.shape[1]
        student_steps = len(data_obs) - teacher_states
        half = cfg.batch_size // 2
        losses: list[float] = []
        started = time.perf_counter()
        policy = ActorPolicy(student)
        obs, _ = env.reset(seed=cfg.seed + 2)
        for k in range(1, student_steps + 1):
            with torch.no_grad():
                x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
                label = teacher.actor(x).squeeze(0).numpy()
                action = student(x).squeeze(0).numpy()
            row = teacher_states + k - 1
            data_obs[row], data_act[row] = obs, label
            noisy = np.clip(action + rng.normal(0.0, self.student_noise, act_dim), -1.0, 1.0)
            obs, _, terminated, truncated, _ = env.step(scale(noisy))
            if terminated or truncated:
                obs, _ = env.reset()
            own = rng.integers(teacher_states, row + 1, size=min(half, k))
            from_teacher = rng.integers(0, teacher_states, size=cfg.batch_size - len(own))
            idx = np.concatenate([from_teacher, own])
            loss = F.mse_loss(student(torch.from_numpy(data_obs[idx])), torch.from_numpy(data_act[idx]))
            optimizer = controller.optimizer
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            controller.step()
            losses.append(loss.item())
            step = cfg.steps + k  # the student's evaluations continue the teacher's step axis
            if k % cfg.log_every == 0:
                recorder.diagnostics({"step": step, "iterations": k, "actor_loss": float(np.mean(losses)),
                                      "steps_per_second": k / (time.perf_counter() - started)})
                losses.clear()
            session.step(k, policy, logged_at=step)
        return time.perf_counter() - started
