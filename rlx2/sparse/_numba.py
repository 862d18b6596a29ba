"""The numba kernels behind ``rlx2.sparse.kernels`` (imported only there, and only when numba is present).

Networks are given as *pattern layers*: each layer's active entries in CSR order (row
pointers ``crow``, column indices ``col`` and flat positions ``flat`` into the dense
weight; an unmasked layer lists every entry), all layers concatenated, with ``meta[l] =
(first row pointer, first entry, out features, in features)``. Activations are
feature-major ``[features, batch]``, so every inner loop runs over the batch, contiguous.

Products (the forward's, and an input gradient computed alone) and element-wise updates use
no fast-math, so their results do not depend on the CPU's vector width. The reductions (a
weight gradient is a dot product over the batch, a bias gradient a sum) may be reassociated,
which is what lets them vectorise, and so may the input gradient of a layer whose weight
gradients are wanted too: both come from one pass over the output gradient's rows
(``_input_and_weight_grads``). Their rounding then follows the vector width of the CPU they
were compiled for (the golden runs pin ``NUMBA_CPU_NAME``).
"""

from __future__ import annotations

import math

import numpy as np

from rlx2.sparse.numba_setup import prepare_numba

prepare_numba()  # before numba loads: it fixes its cache directory and compile target then

import numba  # noqa: E402 - after prepare_numba

_REDUCE = {"reassoc", "nsz", "contract"}
_PRODUCT = {"contract"}


@numba.njit(cache=True, nogil=True, fastmath=_REDUCE)
def _dot(a, b):
    total = np.float32(0.0)
    for j in range(a.shape[0]):
        total += a[j] * b[j]
    return total


@numba.njit(cache=True, nogil=True, fastmath=_REDUCE)
def _sum(a):
    total = np.float32(0.0)
    for j in range(a.shape[0]):
        total += a[j]
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _adam_entry(param, grad, exp_avg, exp_avg_sq, k, one_minus_beta1, one_minus_beta2, b2, epsilon, step_size,
                bc2_sqrt):
    g = grad[k]
    m = exp_avg[k] + one_minus_beta1 * (g - exp_avg[k])  # exp_avg.lerp_(grad, 1 - beta1)
    v = exp_avg_sq[k] * b2 + (one_minus_beta2 * g) * g  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    exp_avg[k] = m
    exp_avg_sq[k] = v
    denom = np.sqrt(v) / bc2_sqrt + epsilon
    param[k] = param[k] + ((-step_size) * m) / denom  # param.addcdiv_(exp_avg, denom, value=-step_size)


@numba.njit(cache=True, nogil=True)
def adam(params, grads, exp_avgs, exp_avg_sqs, steps, active, decaying, lr, beta1, beta2, eps):
    """One ``torch.optim.Adam`` step (single-tensor formulas) of every parameter of a network, in place.

    Parameter ``n``'s step counter ``steps[n]`` (a 0-d array) is incremented; with an empty
    ``active[n]`` every entry steps, otherwise only the listed flat positions, and the
    positions ``decaying[n]`` (inactive, moments not yet zero) get a zero gradient's moment decay.
    """
    one_minus_beta1 = np.float32(1.0 - beta1)
    one_minus_beta2 = np.float32(1.0 - beta2)
    b1, b2, epsilon = np.float32(beta1), np.float32(beta2), np.float32(eps)
    for n in range(len(params)):
        param, grad, exp_avg, exp_avg_sq = params[n], grads[n], exp_avgs[n], exp_avg_sqs[n]
        step_t = steps[n]
        step_t[()] += np.float32(1.0)
        step = np.float64(step_t[()])
        step_size = np.float32(lr / (1.0 - beta1**step))
        bc2_sqrt = np.float32((1.0 - beta2**step) ** 0.5)
        positions = active[n]
        if positions.shape[0] == 0:
            for k in range(param.shape[0]):  # contiguous: vectorises
                _adam_entry(param, grad, exp_avg, exp_avg_sq, k, one_minus_beta1, one_minus_beta2, b2, epsilon,
                            step_size, bc2_sqrt)
        else:
            for i in range(positions.shape[0]):
                _adam_entry(param, grad, exp_avg, exp_avg_sq, positions[i], one_minus_beta1, one_minus_beta2, b2,
                            epsilon, step_size, bc2_sqrt)
        _decay(exp_avg, exp_avg_sq, decaying[n], one_minus_beta1, b2)


@numba.njit(cache=True, nogil=True, inline="always")
def _subnormal_times(bits, mantissa, shift):
    """``x * f`` for a float32 ``x`` that is zero or subnormal (given as its bits) and ``0 < f < 1`` given as
    ``mantissa * 2**-shift``, rounded to nearest-even as IEEE 754 rounds it: subnormals are integers times
    ``2**-149``, so the product is ``round(k * mantissa / 2**shift)`` of them. Returns (sign bits, magnitude)."""
    sign = bits & np.int32(-2147483648)
    product = np.int64(bits & np.int32(0x7FFFFFFF)) * mantissa
    quotient = product >> shift
    remainder = product & ((np.int64(1) << shift) - 1)
    half = np.int64(1) << (shift - 1)
    if remainder > half or (remainder == half and (quotient & 1) == 1):
        quotient += 1
    return sign, quotient


@numba.njit(cache=True, nogil=True)
def _decay(exp_avg, exp_avg_sq, positions, one_minus_beta1, b2):
    """Adam's moment update with a zero gradient at ``positions``: ``m += (1 - beta1) (0 - m)``, ``v *= beta2``.

    Why not just those two lines: in float32 they never bring a moment to zero. ``m`` stops
    at 1-4 units of 2**-149 and ``v`` at up to about 500, where the rounded decrement is zero,
    so every weight a run ever dropped keeps subnormal moments, and on this CPU each
    operation on a subnormal takes a microcode assist (about 80 ns for an entry's two
    updates against about 1 ns): late in a RigL or RLx2 run that was half of every step.
    Zero and subnormal moments are updated on their integer bits instead, rounded as IEEE
    754 rounds (bit-identical: ``tests/test_compiled.py``); normal ones by the two lines.
    """
    m1, e1 = math.frexp(np.float64(one_minus_beta1))  # (1 - beta1) = m1 * 2**e1, m1 in [0.5, 1): 24 exact bits
    m2, e2 = math.frexp(np.float64(b2))
    mantissa1, shift1 = np.int64(m1 * 16777216.0), 24 - e1
    mantissa2, shift2 = np.int64(m2 * 16777216.0), 24 - e2
    m_bits, v_bits = exp_avg.view(np.int32), exp_avg_sq.view(np.int32)
    for i in range(positions.shape[0]):
        k = positions[i]
        bits = m_bits[k]
        if bits & np.int32(0x7F800000) == 0:  # m + c (0 - m) = m - c m: exact once c m is rounded; 0 when equal
            sign, cm = _subnormal_times(bits, mantissa1, shift1)
            magnitude = np.int64(bits & np.int32(0x7FFFFFFF)) - cm
            m_bits[k] = np.int32(0) if magnitude == 0 else sign | np.int32(magnitude)
        else:
            exp_avg[k] = exp_avg[k] + one_minus_beta1 * (np.float32(0.0) - exp_avg[k])
        bits = v_bits[k]
        if bits & np.int32(0x7F800000) == 0:
            sign, magnitude = _subnormal_times(bits, mantissa2, shift2)
            v_bits[k] = sign | np.int32(magnitude)
        else:
            exp_avg_sq[k] = exp_avg_sq[k] * b2


@numba.njit(cache=True, nogil=True)
def squared_error_grad(q, y, norm, grad):
    """``grad = (q - y) norm``, ``mse_loss``'s backward (``norm = 2 / B``) in its two IEEE operations, so it
    rounds as PyTorch's does; returns the mean squared error, summed in float64 (a logged value only)."""
    total = 0.0
    for j in range(q.shape[0]):
        grad[j] = (q[j] - y[j]) * norm
        error = np.float64(q[j]) - np.float64(y[j])
        total += error * error
    return total / q.shape[0]


@numba.njit(cache=True, nogil=True)
def mean_grad(values, scale, grad):
    """``grad[:] = scale / n``, the gradient of ``scale * mean(values)`` as the mean's backward computes it (one
    float32 division); returns ``mean(values)``, summed in float64 (a logged value only)."""
    fill = np.float32(scale) / np.float32(values.size)
    total = 0.0
    flat, out = values.ravel(), grad.ravel()
    for j in range(flat.shape[0]):
        out[j] = fill
        total += np.float64(flat[j])
    return total / flat.shape[0]


@numba.njit(cache=True, nogil=True)
def smoothed_actions(action, noise, scale, limit, out):
    """TD3's target policy smoothing: ``out[j, a] = clip(action[a, j] + clamp(scale noise[j, a], -limit, limit),
    -1, 1)`` for the target actor's ``tanh`` output ``action`` (``[act, B]``); single IEEE operations, rounded
    as PyTorch rounds them (``scale`` and ``limit`` float32, as PyTorch takes a Python scalar)."""
    scale, limit = np.float32(scale), np.float32(limit)
    one = np.float32(1.0)
    for j in range(out.shape[0]):
        for a in range(out.shape[1]):
            smoothing = min(max(noise[j, a] * scale, -limit), limit)
            out[j, a] = min(max(action[a, j] + smoothing, -one), one)


@numba.njit(cache=True, nogil=True)
def bootstrapped_target(returns, discount, q1, q2, out):
    """``out = returns + discount min(q1, q2)``, TD3's target, as two IEEE operations per entry (no fused
    multiply-add), rounded as PyTorch rounds them."""
    for j in range(out.shape[0]):
        q = q1[j] if q1[j] < q2[j] else q2[j]
        out[j] = returns[j] + discount[j] * q


@numba.njit(cache=True, nogil=True)
def sac_next_actions(action, logp, valid, n, pairs, offset, next_logp):
    """SAC's ``a'`` and ``log pi(a')``: for sample ``b``, the policy's sample at its bootstrap state, entry
    ``b n + m - 1`` of the policy's pass over every next state (``m``: its valid steps, ``valid[b]`` summed;
    PyTorch's index -1 where none), into ``pairs[b, offset:]`` and ``next_logp[b]``."""
    for b in range(pairs.shape[0]):
        steps = np.float32(0.0)
        for k in range(n):
            steps += valid[b, k]
        last = int(steps) - 1
        if last < 0:
            last += n
        row = b * n + last
        for a in range(action.shape[1]):
            pairs[b, offset + a] = action[row, a]
        next_logp[b] = logp[row]


@numba.njit(cache=True, nogil=True)
def sac_bootstrapped_target(returns, discount, valid, logp, gammas, n, q1, q2, next_logp, alpha, out):
    """SAC's target (``SAC.td_target``) in PyTorch's order of IEEE operations: ``(returns + bonus) + discount
    (min(q1, q2) - alpha log pi(a'))``, with ``bonus = -sum_k ((alpha gamma^k) valid[b, k]) log pi_k``
    summed from zero in window order (PyTorch's order for up to 4 terms), and no bonus for ``n = 1``."""
    alpha = np.float32(alpha)
    for b in range(out.shape[0]):
        q = q1[b] if q1[b] < q2[b] else q2[b]
        tail = discount[b] * (q - alpha * next_logp[b])
        if n == 1:
            out[b] = returns[b] + tail
        else:
            total = np.float32(0.0)
            for k in range(n - 1):
                total += ((alpha * gammas[k]) * valid[b, k + 1]) * logp[b * n + k]
            out[b] = (returns[b] + (-total)) + tail


@numba.njit(cache=True, nogil=True)
def sac_actor_grads(q1, q2, logp, alpha, grad_q1, grad_q2, grad_logp):
    """The gradients of SAC's actor loss ``mean(alpha log pi - min(q1, q2))`` with respect to ``q1``, ``q2``
    (``minimum``'s backward: a tie gives each half) and ``log pi`` (``alpha / B``), as autograd computes them
    (the mean's ``1 / B``, its negation and halving, one product); returns the loss, summed in float64 (a
    logged value only)."""
    alpha = np.float32(alpha)
    fill = np.float32(1.0) / np.float32(q1.shape[0])
    minus = -fill
    half = minus / np.float32(2.0)
    zero = np.float32(0.0)
    total = 0.0
    for b in range(q1.shape[0]):
        a, c = q1[b], q2[b]
        split = half if a == c else minus
        grad_q1[b] = zero if a > c else split
        grad_q2[b] = zero if a < c else split
        grad_logp[b] = fill * alpha
        total += np.float64(alpha * logp[b] - (a if a < c else c))
    return total / q1.shape[0]


@numba.njit(cache=True, nogil=True)
def summed_rows_transposed(a, b, first, out):
    """``out[j, k] = a[first + k, j] + b[first + k, j]``: two feature-major input gradients' rows from ``first``
    on (an action's), summed and laid out batch-major."""
    for j in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[j, k] = a[first + k, j] + b[first + k, j]


@numba.njit(cache=True, nogil=True)
def lerp(targets, sources, positions, weight):
    """``target += weight (source - target)`` for every pair, at its listed flat positions (empty: everywhere)."""
    w = np.float32(weight)
    for n in range(len(targets)):
        target, source, listed = targets[n], sources[n], positions[n]
        if listed.shape[0] == 0:
            for k in range(target.shape[0]):
                target[k] = target[k] + w * (source[k] - target[k])
        else:
            for i in range(listed.shape[0]):
                k = listed[i]
                target[k] = target[k] + w * (source[k] - target[k])


@numba.njit(cache=True, nogil=True, inline="always", fastmath=_PRODUCT)
def _rows_product(crow, col, flat, w, x, y, row, first, relu_of):
    """``y[row] = first + sum_k w[flat[k]] x[col[k]]`` over the entries of CSR row ``row``, then
    zeroed where ``relu_of[row] <= 0`` (``relu_of`` empty: kept as is). Four entries per pass:
    a quarter of the loads and stores of ``y[row]``."""
    yo = y[row]
    batch = yo.shape[0]
    for j in range(batch):
        yo[j] = first
    k, end = crow[row], crow[row + 1]
    while k + 4 <= end:
        w0, w1, w2, w3 = w[flat[k]], w[flat[k + 1]], w[flat[k + 2]], w[flat[k + 3]]
        x0, x1, x2, x3 = x[col[k]], x[col[k + 1]], x[col[k + 2]], x[col[k + 3]]
        for j in range(batch):
            yo[j] += (w0 * x0[j] + w1 * x1[j]) + (w2 * x2[j] + w3 * x3[j])
        k += 4
    while k < end:
        w0 = w[flat[k]]
        x0 = x[col[k]]
        for j in range(batch):
            yo[j] += w0 * x0[j]
        k += 1
    if relu_of.shape[0] > 0:
        gate = relu_of[row]
        for j in range(batch):
            if gate[j] <= 0.0:
                yo[j] = 0.0


@numba.njit(cache=True, nogil=True, fastmath=_PRODUCT)
def _layer_forward(crow, col, flat, w, b, x, y, relu):
    """``y = W x + b`` (ReLU'd when ``relu``) for one pattern layer; ``x``: ``[in, B]``, ``y``: ``[out, B]``."""
    none = y[:0]
    for o in range(y.shape[0]):
        _rows_product(crow, col, flat, w, x, y, o, b[o], y if relu else none)


@numba.njit(cache=True, nogil=True)
def transpose(x, xt):
    """``xt = x^T`` (a ``[B, in]`` batch into the feature-major ``[in, B]``)."""
    batch, n_in = x.shape
    for j in range(batch):
        for i in range(n_in):
            xt[i, j] = x[j, i]


@numba.njit(cache=True, nogil=True, fastmath=_PRODUCT)
def mlp_forward(meta, crow, col, flat, weights, biases, x, x_batch_major, hidden, out):
    """Pattern layers (ReLU between them and after none) on ``x``; keeps the hidden activations.

    ``x``: the input, ``[in, B]``; with a non-empty ``x_batch_major`` (``[B, in]``), ``x`` is
    first filled with its transpose. ``hidden``: ``[sum of hidden widths, B]`` (layer after
    layer); ``out``: ``[out, B]``.
    """
    if x_batch_major.shape[0] > 0:
        transpose(x_batch_major, x)
    layers = meta.shape[0]
    h = x
    row = 0
    for layer in range(layers):
        r0, e0, n_out = meta[layer, 0], meta[layer, 1], meta[layer, 2]
        rows = crow[r0:r0 + n_out + 1]
        if layer == layers - 1:
            y = out
        else:
            y = hidden[row:row + n_out]
            row += n_out
        _layer_forward(rows, col[e0:], flat[e0:], weights[layer], biases[layer], h, y, layer < layers - 1)
        h = y


@numba.njit(cache=True, nogil=True, fastmath=_REDUCE)
def _input_and_weight_grads(rows, cols, flats, w, g, h, gw, g_in, gated):
    """One layer's input gradient ``g_in = W^T g`` (``[in, B]``, zero where ``gated`` and ``h <= 0``) and its
    weight gradients ``gw[flat] = g[o] . h[i]`` at every pattern entry, in one pass over the transposed
    pattern (``rows``, ``cols``, ``flats``).

    Why one pass: each entry's output-gradient row ``g[o]`` is read once for both, in the same loop
    over the batch, instead of once by the product and once by a dot product of its own (and one
    horizontal sum's set-up per entry fewer): 1.3-1.6x a network's backward repeated alone (256 x 256
    at 5-15 % density, batch 256), 1.06-1.14x inside real updates, where the rows come from further
    away. Under reassociation, so the input gradient's rounding, like the dot products', follows
    the vector width compiled for (module docstring).
    """
    batch = g.shape[1]
    for i in range(g_in.shape[0]):
        hi, gi = h[i], g_in[i]
        for j in range(batch):
            gi[j] = 0.0
        k, end = rows[i], rows[i + 1]
        while k + 4 <= end:
            f0, f1, f2, f3 = flats[k], flats[k + 1], flats[k + 2], flats[k + 3]
            w0, w1, w2, w3 = w[f0], w[f1], w[f2], w[f3]
            g0, g1, g2, g3 = g[cols[k]], g[cols[k + 1]], g[cols[k + 2]], g[cols[k + 3]]
            d0 = d1 = d2 = d3 = np.float32(0.0)
            for j in range(batch):
                gi[j] += (w0 * g0[j] + w1 * g1[j]) + (w2 * g2[j] + w3 * g3[j])
                hj = hi[j]
                d0 += g0[j] * hj
                d1 += g1[j] * hj
                d2 += g2[j] * hj
                d3 += g3[j] * hj
            gw[f0], gw[f1], gw[f2], gw[f3] = d0, d1, d2, d3
            k += 4
        while k < end:
            f0 = flats[k]
            w0, g0 = w[f0], g[cols[k]]
            d0 = np.float32(0.0)
            for j in range(batch):
                gi[j] += w0 * g0[j]
                d0 += g0[j] * hi[j]
            gw[f0] = d0
            k += 1
        if gated:
            for j in range(batch):
                if hi[j] <= 0.0:
                    gi[j] = 0.0


@numba.njit(cache=True, nogil=True, fastmath=_PRODUCT)
def mlp_backward(meta, crow, col, flat, crow_t, col_t, flat_t, weights, x, hidden, grad, weight_grads, bias_grads,
                 grad_in, need_weights, zero_weight_grads):
    """Backward of ``mlp_forward`` from ``grad`` (``[out, B]``, the gradient of its output).

    With ``need_weights``: every weight gradient at its layer's pattern positions (the rest of
    each flat array zeroed first with ``zero_weight_grads``; without it the caller's arrays are
    already zero there: buffers kept for one pattern, ``NetworkPattern.grad_buffers``) and
    every bias gradient. With a non-empty ``grad_in`` (``[in, B]``): the gradient of the input
    ``x``. An input gradient is a product with ``W^T``, row by row over the transposed pattern
    (``crow_t``, ``col_t``, ``flat_t``; ``meta[l, 4]`` its first row pointer), gated by the
    ReLU before the layer (none before the first); where the layer's weight gradients are
    wanted too, both come from that one pass (``_input_and_weight_grads``).
    """
    layers = meta.shape[0]
    batch = grad.shape[1]
    g = grad
    row = hidden.shape[0]
    for layer in range(layers - 1, -1, -1):
        r0, e0, n_out, n_in, t0 = meta[layer, 0], meta[layer, 1], meta[layer, 2], meta[layer, 3], meta[layer, 4]
        if layer > 0:
            h = hidden[row - n_in:row]
            row -= n_in
        else:
            h = x
        w = weights[layer]
        if layer == 0:
            g_in = grad_in
            gated = False  # the network's input: no ReLU before it
        else:
            g_in = np.empty((n_in, batch), np.float32)
            gated = True  # the ReLU between layers
        wants_input = g_in.shape[0] > 0
        rows, cols, flats = crow_t[t0:t0 + n_in + 1], col_t[e0:], flat_t[e0:]
        if need_weights:
            gw = weight_grads[layer]
            if zero_weight_grads:
                gw[:] = 0.0
            gb = bias_grads[layer]
            for o in range(n_out):
                gb[o] = _sum(g[o])
            if wants_input:
                _input_and_weight_grads(rows, cols, flats, w, g, h, gw, g_in, gated)
            else:  # the first layer, no input gradient: the weight gradients alone
                for o in range(n_out):
                    go = g[o]
                    for k in range(crow[r0 + o], crow[r0 + o + 1]):
                        gw[flat[e0 + k]] = _dot(go, h[col[e0 + k]])
        elif wants_input:
            gate = h if gated else h[:0]
            for i in range(n_in):
                _rows_product(rows, cols, flats, w, g, g_in, i, np.float32(0.0), gate)
        if not wants_input:
            break
        g = g_in
