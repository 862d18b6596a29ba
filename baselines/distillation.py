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
import json
import math
import time

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from rlx2.agents import make_agent
from rlx2.config import RunConfig, final_window, run_id
from rlx2.envs import ActionScaler, make_env
from rlx2.methods import Method, get_method, register
from rlx2.records import RunDirectory
from rlx2.sparse.controller import MaskController
from rlx2.sparse.distribution import active_counts, layer_densities
from rlx2.sparse.flops import NetworkCosts, Phase, TrainingCost, run_flops
from rlx2.sparse.layers import magnitude_mask, masked_layers, sparsify


class TeacherMismatch(RuntimeError):
    """A finished dense run sits where the teacher belongs but was trained with other settings."""


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

    def make_controller(self, role, network, optimizer, cfg, update_every, generator):
        # What the deliverable looks like, for `rlx2 flops`: a sparse actor; the critic is the teacher's, dense.
        if role == "actor":
            sparsify(network, cfg.actor_sparsity, generator, cfg.sparsity_distribution, cfg.mask_init)
        return MaskController(network, optimizer)

    def phase_steps(self, cfg) -> tuple[int, int]:
        """``(teacher-data states, student steps)`` for a run of ``cfg.steps`` steps."""
        return (max(cfg.batch_size, round(self.teacher_state_fraction * cfg.steps)),
                max(1, round(self.student_fraction * cfg.steps)))

    def training_cost(self, cfg, agent) -> TrainingCost:
        obs_dim = agent.obs_dim
        dense = NetworkCosts.dense(cfg.algo, obs_dim, agent.act_dim, cfg.hidden_sizes)
        teacher = run_flops(cfg.replace(n_step=1), [Phase(cfg.training_iterations, dense)], {})
        student = NetworkCosts.of_agent(agent).actor
        teacher_states, student_steps = self.phase_steps(cfg)
        labelling = (teacher_states + student_steps) * dense.actor  # one teacher forward per state
        distill = student_steps * (student + 3 * cfg.batch_size * student)  # acting + forward/backward
        final = NetworkCosts(student, dense.critic, dense.q1, dense.actor, dense.critic)
        return TrainingCost(final, teacher + labelling + distill, {"actor": 0, "critic": 0},
                            kept_weights=(student, dense.actor))

    def depends_on(self, cfg):
        return [get_method("dense")().resolve(cfg.replace(method="dense"))]

    # -- the run ----------------------------------------------------------------
    def teacher(self, cfg, out, progress):
        """The finished dense run this student learns from (reused or trained now)."""
        from rlx2.train import train

        dense = get_method("dense")()
        (teacher_cfg,) = self.depends_on(cfg)
        teacher_dir = RunDirectory(out / run_id(teacher_cfg))
        if teacher_dir.finished:
            saved = json.loads((teacher_dir.path / "config.json").read_text())["config"]
            differ = RunConfig.saved_matches(saved, teacher_cfg)
            if differ:
                raise TeacherMismatch(f"{teacher_dir.path} holds a dense run with other settings ({', '.join(differ)})")
        else:
            train(teacher_cfg, out, progress=progress)
        result = json.loads((teacher_dir.path / "result.json").read_text())
        return teacher_cfg, dense, teacher_dir, result

    def run(self, cfg, out, run_dir, *, progress=True):
        from rlx2.sparse.flops import flops_report
        from rlx2.train import evaluate_and_record, run_metadata

        teacher_cfg, dense, teacher_dir, teacher_result = self.teacher(cfg, out, progress)
        env, eval_env = make_env(cfg.env), make_env(cfg.env)
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        scale = ActionScaler(env.action_space)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
        teacher = make_agent(cfg.algo, cfg=teacher_cfg, method=dense, obs_dim=obs_dim, act_dim=act_dim,
                             generator=torch.Generator().manual_seed(cfg.seed))
        teacher.load_state_dict(torch.load(teacher_dir.path / "model.pt", weights_only=True))
        student = prune_into_student(teacher.actor, cfg.actor_sparsity, cfg.sparsity_distribution)
        optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
        controller = MaskController(student, optimizer)
        cost = self.training_cost(cfg, make_agent(cfg.algo, cfg=cfg, method=self, obs_dim=obs_dim, act_dim=act_dim,
                                                  generator=torch.Generator().manual_seed(cfg.seed)))
        flops = flops_report(cfg, obs_dim, act_dim, cost)
        meta = run_metadata(cfg, self, env, {"student_actor": student}, {"actor": controller.densities()}, flops)
        meta["teacher"] = {"run_id": run_id(teacher_cfg), "final_score": teacher_result["final_score"]}
        run_dir.start(meta)
        for name, layer in controller.layers:
            run_dir.topology.write({"step": 0, "network": "actor", "layer": name, "optimizer_step": 0, "fraction": 0.0,
                                    "replaced": 0, "regrown": 0, "active": int(layer.mask.sum()), "density": layer.density})

        teacher_states, student_steps = self.phase_steps(cfg)
        data_obs = np.zeros((teacher_states + student_steps, obs_dim), np.float32)
        data_act = np.zeros((teacher_states + student_steps, act_dim), np.float32)
        obs, _ = env.reset(seed=cfg.seed + 1)
        for i in range(teacher_states):  # the teacher's behaviour policy, labelled by its deterministic action
            action, behaviour = teacher.explore(obs, rng)
            data_obs[i], data_act[i] = obs, behaviour
            obs, _, terminated, truncated, _ = env.step(scale(action))
            if terminated or truncated:
                obs, _ = env.reset()

        started = time.perf_counter()
        evaluations, losses = [], []
        half = cfg.batch_size // 2
        obs, _ = env.reset(seed=cfg.seed + 2)
        bar = tqdm(total=student_steps, disable=not progress, unit="step", desc=f"{run_id(cfg)} student")
        try:
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
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                controller.step()
                losses.append(loss.item())
                step = cfg.steps + k
                if k % cfg.log_every == 0:
                    if not math.isfinite(float(np.mean(losses))):
                        raise FloatingPointError(f"non-finite distillation loss at step {step}")
                    run_dir.diagnostics.write({"step": step, "iterations": k, "actor_loss": float(np.mean(losses)),
                                               "steps_per_second": k / (time.perf_counter() - started)})
                    losses.clear()
                if k % cfg.eval_every == 0 or k == student_steps:
                    evaluations.append(evaluate_and_record(_ActorOnly(student), eval_env, scale, cfg, run_dir, step))
                    bar.set_postfix(eval_return=f"{evaluations[-1]:.1f}", refresh=False)
                bar.update(1)
        except BaseException:
            run_dir.abort()
            raise
        finally:
            bar.close()
            env.close()
            eval_env.close()

        last = evaluations[-final_window(len(evaluations)):]  # the student's own evaluations
        run_dir.save_model({"student_actor": student.state_dict()})
        result = {
            "run_id": run_id(cfg), "status": "finished", "final_score": float(np.mean(last)),
            "final_window": len(last), "evaluations": len(evaluations), "steps": cfg.steps + student_steps,
            "iterations": student_steps, "wall_seconds": time.perf_counter() - started,
            "steps_per_second": student_steps / (time.perf_counter() - started), "final_buffer_size": None,
            "final_densities": {"actor": controller.densities()}, "flops": flops,
            "teacher_final_score": teacher_result["final_score"],
        }
        run_dir.finish(result)
        return result


class _ActorOnly:
    """The one thing ``evaluate`` needs from an agent: a deterministic action."""

    def __init__(self, actor: torch.nn.Module) -> None:
        self.actor = actor

    @torch.no_grad()
    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        return self.actor(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).squeeze(0).numpy()
