"""SAC's squashed Gaussian sample as one compiled call each way (``GaussianActor.sample``).

Sampling from the network's output is about twenty element-wise PyTorch operations (the
log-std map, the reparameterised sample, tanh, the log-probability with its tanh
correction), each recorded by autograd and each with a node to run backward: at batch 256
and 3 actions their fixed costs are all there is. ``squashed_gaussian`` does the forward in
one numba call and its backward (the derivatives below, written out) in another. It is
used where the network itself runs on the compiled kernels (``rlx2.sparse.kernels``);
elsewhere ``GaussianActor.sample`` keeps the PyTorch operations, the reference
``tests/test_acting.py`` holds this to.

With ``u = mean + exp(s) eps``, ``a = tanh(u)`` and
``log pi = sum(-eps^2/2 - s - log(2 pi)/2 - 2 (log 2 - u - softplus(-2u)))``:
``d a/d u = 1 - a^2``, ``d log pi/d u = 2 - 4 sigmoid(-2u)``, ``d u/d s = exp(s) eps``,
``d log pi/d s = -1``, and ``s`` is ``-5 + 3.5 (tanh(raw) + 1)`` (derivative
``3.5 (1 - tanh(raw)^2)``) or ``raw`` clamped to [-5, 2] (derivative 1 inside, 0 outside).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlx2.sparse.numba_setup import prepare_numba

prepare_numba()  # before numba loads: it fixes its cache directory and compile target then

import numba  # noqa: E402 - after prepare_numba

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def _softplus(z):
    return z if z > 20.0 else math.log1p(math.exp(z))  # torch's softplus threshold


@numba.njit(cache=True, nogil=True)
def forward(out, noise, clamp, action, logp, pre, log_std):
    """``out``: the network's ``[2A, B]`` (mean rows, then raw log-std rows); ``noise``: ``[B, A]``."""
    acts, batch = noise.shape[1], noise.shape[0]
    for b in range(batch):
        total = 0.0
        for a in range(acts):
            raw = out[acts + a, b]
            if clamp:
                s = min(max(raw, LOG_STD_MIN), LOG_STD_MAX)
            else:
                s = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (math.tanh(raw) + 1.0)
            eps = noise[b, a]
            u = out[a, b] + math.exp(s) * eps
            pre[b, a] = u
            log_std[b, a] = s
            action[b, a] = math.tanh(u)
            total += -0.5 * eps * eps - s - _HALF_LOG_TWO_PI - 2.0 * (math.log(2.0) - u - _softplus(-2.0 * u))
        logp[b] = total


@numba.njit(cache=True, nogil=True)
def backward(out, noise, clamp, action, pre, log_std, grad_action, grad_logp, grad_out):
    """The gradient of ``out`` (``[2A, B]``) from those of the action (``[B, A]``) and log-probability (``[B]``)."""
    acts, batch = noise.shape[1], noise.shape[0]
    for b in range(batch):
        gl = grad_logp[b]
        for a in range(acts):
            u, s, eps, act = pre[b, a], log_std[b, a], noise[b, a], action[b, a]
            sigmoid = 1.0 / (1.0 + math.exp(2.0 * u))  # sigmoid(-2u)
            g_u = grad_action[b, a] * (1.0 - act * act) + gl * (2.0 - 4.0 * sigmoid)
            g_s = g_u * math.exp(s) * eps - gl
            raw = out[acts + a, b]
            if clamp:
                g_raw = g_s if LOG_STD_MIN <= raw <= LOG_STD_MAX else 0.0
            else:
                t = math.tanh(raw)
                g_raw = g_s * 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (1.0 - t * t)
            grad_out[a, b] = g_u
            grad_out[acts + a, b] = g_raw


def sample(out: torch.Tensor, noise: torch.Tensor, clamp: bool) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """``(action [B, A], log_prob [B], what sample_backward needs)`` from the network output ``out`` (``[B, 2A]``)."""
    out_t = np.ascontiguousarray(out.detach().numpy().T)  # [2A, B]; the compiled MLP's own layout: no copy
    noise_array = noise.numpy()
    batch, acts = noise_array.shape
    action, pre, log_std = (np.empty((batch, acts), np.float32) for _ in range(3))
    logp = np.empty(batch, np.float32)
    forward(out_t, noise_array, clamp, action, logp, pre, log_std)
    return torch.from_numpy(action), torch.from_numpy(logp), (out_t, noise_array, clamp, action, pre, log_std)


def sample_backward(saved: tuple, grad_action: torch.Tensor | None, grad_logp: torch.Tensor | None) -> torch.Tensor:
    """The gradient of ``sample``'s ``out`` (``[B, 2A]``) from those of its action and log-probability."""
    out_t, noise_array, clamp, action, pre, log_std = saved
    batch, acts = noise_array.shape
    grad_action = np.zeros((batch, acts), np.float32) if grad_action is None else grad_action.contiguous().numpy()
    grad_logp = np.zeros(batch, np.float32) if grad_logp is None else grad_logp.contiguous().numpy()
    grad_out = np.empty((2 * acts, batch), np.float32)
    backward(out_t, noise_array, clamp, action, pre, log_std, grad_action, grad_logp, grad_out)
    return torch.from_numpy(grad_out).t()


class SquashedGaussian(torch.autograd.Function):
    """``(action, log_prob)`` from the network output ``out`` (``[B, 2A]``) and the standard normal ``noise``."""

    @staticmethod
    def forward(ctx, out, noise, clamp: bool):
        action, logp, ctx.saved = sample(out, noise, clamp)
        ctx.set_materialize_grads(False)
        return action, logp

    @staticmethod
    def backward(ctx, grad_action, grad_logp):
        return sample_backward(ctx.saved, grad_action, grad_logp), None, None
