"""The Helmholtz PINN's loss and gradients on the CPU: fused stream loops and BLAS products.

Same math as :meth:`refimpl.pinn.HelmholtzPINN.loss_and_grads` (its oracle; docs/methods.md
§9), for networks whose hidden activations are all ``sin`` or ``cos``. The three streams
(value, first and second input derivative) of a layer sit stacked in one ``(3M, width)``
array, so each dense layer is one BLAS product forward, one for ``dW`` and one for the input
gradient. Between the products one loop per layer does all the element-wise work:

* forward (:func:`activation_streams`): ``sin z`` and ``cos z`` once per element, the next
  layer's streams ``h = s(z)``, ``h' = d1 z'``, ``h'' = d2 z' + d1 z''`` and the layer's
  stream Jacobian ``d1 = s'(z)``, ``d2 = s''(z) z'``, ``d3 = s'''(z) z'^2 + s''(z) z''``,
  kept for the backward;
* backward (:func:`jacobian_transpose`): in place, ``g_z = d1 g_h + d2 g_h' + d3 g_h''``,
  ``g_z' = d1 g_h' + 2 d2 g_h''``, ``g_z'' = d1 g_h''``, and the bias gradient ``sum g_z``.

The first layer's pre-activations come straight from ``x`` (:func:`first_layer_streams`:
``z = x w + b``, ``z' = w``, ``z'' = 0``) and the last hidden layer's ``g_h`` streams, outer
products with the linear output's weights, are formed inside its backward loop
(:func:`output_jacobian_transpose`), which spares two passes over memory. With few points a
stacked product is issued as three (:data:`SMALL_PRODUCT`).

Why a sine of our own (:func:`sincos`). NumPy's float64 ``sin`` and ``cos`` run one element at
a time on CPUs where NumPy has no vector routine for them (measured on an AVX-512 Xeon:
about 10 ns per element, ~40% of a whole PINN step), and Numba's ``math.sin`` calls the same
scalar libm. :func:`sincos` is the classic fdlibm/musl algorithm -- Cody-Waite reduction by
``pi/2`` in three parts, then the minimax kernels of ``sin`` and ``cos`` on ``[-pi/4, pi/4]``
-- written without branches so that LLVM vectorises the loop: it returns both functions
within 1 ulp of the C library's, measured (``tests/experiments/test_pinn.py``), at about a
tenth of the time. Beyond ``|z| > 2^20 pi/2``, where the three-part reduction is no longer
exact, and for inf and NaN, the loops fall back to ``math.sin``/``math.cos``.

float32: everything is float32 -- the products, the stored arrays and the element loops,
whose sine and cosine are cephes' float32 algorithm (:func:`sincos_float32`, three-part
reduction and short kernels, within 1.5 ulp as NumPy's float32 ``sin``); beyond
``|z| > 8192`` the float64 libm fallback, rounded on store.

Buffers are kept per number of points and dtype in a dict the caller owns
(:func:`loss_and_grads`'s ``buffers``), so a training loop allocates only the gradients.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

__all__ = ["SUPPORTED", "activation_streams", "first_layer_streams", "jacobian_transpose",
           "loss_and_grads", "output_jacobian_transpose", "sincos", "sincos_array",
           "sincos_float32"]

#: Activations these kernels implement (kind codes of the loops).
SUPPORTED = {"sin": 0, "cos": 1}

# fdlibm/musl constants: 2/pi, pi/2 in 33-bit parts (each part times an integer below 2^20
# is exact) and the tail of the second part; kernel polynomials of sin and cos.
_INV_PIO2 = 6.36619772367581382433e-01
_PIO2_1 = 1.57079632673412561417e+00
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_2T = 2.02226624879595063154e-21
_TO_INT = 6755399441055744.0  # 1.5 * 2^52: x + it - it rounds x to an integer
#: Beyond this |z| the reduction's products are no longer exact: the libm fallback.
REDUCTION_LIMIT = 2.0**20 * (math.pi / 2)
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11


@njit(cache=True, inline="always", fastmath=False)
def sincos(z):
    """``(sin z, cos z)`` for a float64 ``z`` with ``|z| <= REDUCTION_LIMIT``, branch-free.

    ``z = q pi/2 + r + y`` (``|r| <= pi/4``, ``y`` the tail of ``r``), then
    ``sin z, cos z = (S, C), (C, -S), (-S, -C), (-C, S)`` for ``q mod 4 = 0, 1, 2, 3`` with
    ``S = sin(r + y)``, ``C = cos(r + y)`` from the minimax kernels.
    """
    q_float = (z * _INV_PIO2 + _TO_INT) - _TO_INT
    r0 = z - q_float * _PIO2_1  # exact
    w = q_float * _PIO2_2  # exact
    r1 = r0 - w
    tail = ((r0 - r1) - w) - q_float * _PIO2_2T
    r = r1 + tail
    y = (r1 - r) + tail
    rr = r * r
    r4 = rr * rr
    poly_s = _S2 + rr * (_S3 + rr * _S4) + rr * r4 * (_S5 + rr * _S6)
    v = rr * r
    s = r - ((rr * (0.5 * y - v * poly_s) - y) - v * _S1)
    poly_c = rr * (_C1 + rr * (_C2 + rr * _C3)) + r4 * r4 * (_C4 + rr * (_C5 + rr * _C6))
    half = 0.5 * rr
    one_minus = 1.0 - half
    c = one_minus + (((1.0 - one_minus) - half) + (rr * poly_c - r * y))
    q = np.int64(q_float)
    odd = (q & 1) != 0
    sign_s = 1.0 - 2.0 * ((q >> 1) & 1)
    sign_c = 1.0 - 2.0 * (((q + 1) >> 1) & 1)
    return sign_s * (c if odd else s), sign_c * (s if odd else c)


# float32 (cephes' sinf/cosf): pi/2 in three float32 parts (exact products for |q| < 2^13),
# kernels on [-pi/4, pi/4]; within 1.5 ulp of the correctly rounded values, as NumPy's own
# float32 sin.
_F32 = np.float32
_INV_PIO2_F32, _TO_INT_F32 = _F32(6.36619772367581382433e-01), _F32(12582912.0)  # 1.5 * 2^23
_PIO2_F32 = (_F32(1.5703125), _F32(4.837512969970703125e-4), _F32(7.54978995489188216e-8))
_S_F32 = (_F32(-1.6666654611e-1), _F32(8.3321608736e-3), _F32(-1.9515295891e-4))
_C_F32 = (_F32(4.166664568298827e-2), _F32(-1.388731625493765e-3), _F32(2.443315711809948e-5))
_HALF_F32, _ONE_F32 = _F32(0.5), _F32(1.0)
#: The float32 reduction's range (beyond it: the float64 libm fallback).
REDUCTION_LIMIT_F32 = 8192.0


@njit(cache=True, inline="always", fastmath=False)
def sincos_float32(z):
    """``(sin z, cos z)`` in float32 arithmetic for a float32 ``z`` with ``|z| <= 8192``."""
    q_float = (z * _INV_PIO2_F32 + _TO_INT_F32) - _TO_INT_F32
    r = ((z - q_float * _PIO2_F32[0]) - q_float * _PIO2_F32[1]) - q_float * _PIO2_F32[2]
    rr = r * r
    s = r + r * rr * (_S_F32[0] + rr * (_S_F32[1] + rr * _S_F32[2]))
    c = _ONE_F32 - _HALF_F32 * rr + rr * rr * (_C_F32[0] + rr * (_C_F32[1] + rr * _C_F32[2]))
    q = np.int32(q_float)
    odd = (q & 1) != 0
    sign_s = _F32(1 - 2 * ((q >> 1) & 1))
    sign_c = _F32(1 - 2 * (((q + 1) >> 1) & 1))
    return sign_s * (c if odd else s), sign_c * (s if odd else c)


def _fast_sincos(z):
    """``(sin z, cos z, in_range)`` in ``z``'s precision (compiled through the overload)."""
    raise NotImplementedError("only called from compiled code")


@overload(_fast_sincos)
def _fast_sincos_typed(z):
    if z == types.float32:
        def in_float32(z):
            s, c = sincos_float32(z)
            return s, c, abs(z) <= REDUCTION_LIMIT_F32
        return in_float32

    def in_float64(z):
        s, c = sincos(np.float64(z))
        return s, c, abs(z) <= REDUCTION_LIMIT
    return in_float64


@njit(cache=True, fastmath=False)
def sincos_array(z, s, c):
    """``s[i], c[i] = sin z[i], cos z[i]`` for 1-D float32 or float64 arrays, in the array's
    precision, as the loops below compute them (the tests' view of the sine and cosine)."""
    for i in range(z.size):
        s[i], c[i], _ = _fast_sincos(z[i])
    for i in range(z.size):
        if not _fast_sincos(z[i])[2]:
            s[i], c[i] = math.sin(np.float64(z[i])), math.cos(np.float64(z[i]))


@njit(cache=True, inline="always", fastmath=False)
def _store_streams(streams, jacobian, i, j, n, sin_z, cos_z, z1, z2, kind):
    """Element ``(i, j)`` of ``h, h', h''`` and ``d1, d2, d3`` from ``sin z``, ``cos z``."""
    s0 = sin_z if kind == 0 else cos_z  # s(z)
    s1 = cos_z if kind == 0 else -sin_z  # s'(z); s'' = -s and s''' = -s' for both
    d2 = -s0 * z1
    streams[i, j], streams[n + i, j], streams[2 * n + i, j] = s0, s1 * z1, d2 * z1 + s1 * z2
    jacobian[i, j], jacobian[n + i, j], jacobian[2 * n + i, j] = s1, d2, -s1 * z1 * z1 - s0 * z2


@njit(cache=True, fastmath=False)
def activation_streams(z, bias, n, kind, streams, jacobian):
    """A hidden layer's activation on stacked streams (any layer but the first).

    ``z`` (3n, m): the products ``[a W; a' W; a'' W]`` without the bias; ``bias`` (m,).
    Writes the next layer's streams ``[h; h'; h'']`` into ``streams`` (3n, m) and
    ``[d1; d2; d3]`` into ``jacobian`` (3n, m).
    """
    m = z.shape[1]
    large = False
    for i in range(n):
        for j in range(m):
            pre = z[i, j] + bias[j]
            sin_z, cos_z, in_range = _fast_sincos(pre)
            large |= not in_range
            _store_streams(streams, jacobian, i, j, n, sin_z, cos_z, z[n + i, j],
                           z[2 * n + i, j], kind)
    if large:  # rare: redo the elements beyond the reduction's range with libm
        for i in range(n):
            for j in range(m):
                pre = z[i, j] + bias[j]
                if not _fast_sincos(pre)[2]:
                    wide = np.float64(pre)
                    _store_streams(streams, jacobian, i, j, n, math.sin(wide), math.cos(wide),
                                   z[n + i, j], z[2 * n + i, j], kind)


@njit(cache=True, fastmath=False)
def first_layer_streams(x, weight, bias, kind, streams, jacobian):
    """The first layer, whose input is ``x`` (n,) with ``x' = 1``, ``x'' = 0``: its
    pre-activation streams are ``z = x w + b``, ``z' = w``, ``z'' = 0`` (``weight`` (1, m)),
    formed here instead of by a product. Outputs as :func:`activation_streams`."""
    n, m = x.size, weight.shape[1]
    zero = np.zeros(1, weight.dtype)[0]  # z'' in the weights' precision
    large = False
    for i in range(n):
        for j in range(m):
            pre = x[i] * weight[0, j] + bias[j]
            sin_z, cos_z, in_range = _fast_sincos(pre)
            large |= not in_range
            _store_streams(streams, jacobian, i, j, n, sin_z, cos_z, weight[0, j], zero, kind)
    if large:
        for i in range(n):
            for j in range(m):
                pre = x[i] * weight[0, j] + bias[j]
                if not _fast_sincos(pre)[2]:
                    wide = np.float64(pre)
                    _store_streams(streams, jacobian, i, j, n, math.sin(wide), math.cos(wide),
                                   weight[0, j], zero, kind)


@njit(cache=True, inline="always", fastmath=False)
def _transpose_element(grad, jacobian, i, j, n, g, g1, g2):
    """``g_z, g_z', g_z''`` of element ``(i, j)`` into ``grad``; returns ``g_z``."""
    d1, d2, d3 = jacobian[i, j], jacobian[n + i, j], jacobian[2 * n + i, j]
    g_z = d1 * g + d2 * g1 + d3 * g2
    grad[i, j], grad[n + i, j], grad[2 * n + i, j] = g_z, d1 * g1 + (d2 + d2) * g2, d1 * g2
    return g_z


@njit(cache=True, fastmath=False)
def jacobian_transpose(grad, jacobian, n, bias_grad):
    """In place ``[g_h; g_h'; g_h''] -> [g_z; g_z'; g_z'']`` (both (3n, m)) through the
    layer's stream Jacobian, and ``bias_grad[j] = sum_i g_z[i, j]``."""
    m = grad.shape[1]
    total = np.zeros(m)  # float64 sums, also for float32 gradients
    for i in range(n):
        for j in range(m):
            total[j] += _transpose_element(grad, jacobian, i, j, n, grad[i, j],
                                           grad[n + i, j], grad[2 * n + i, j])
    bias_grad[:] = total


@njit(cache=True, fastmath=False)
def output_jacobian_transpose(g_out, weight, jacobian, n, grad, bias_grad):
    """:func:`jacobian_transpose` of the last hidden layer, whose ``g_h`` streams are the
    outer products ``g_out W^T`` with the linear output (``g_out`` (3n, 1), ``weight``
    (m, 1)), formed here instead of by a product; writes ``grad`` (3n, m)."""
    m = grad.shape[1]
    total = np.zeros(m)
    for i in range(n):
        g, g1, g2 = g_out[i, 0], g_out[n + i, 0], g_out[2 * n + i, 0]
        for j in range(m):
            w = weight[j, 0]
            total[j] += _transpose_element(grad, jacobian, i, j, n, g * w, g1 * w, g2 * w)
    bias_grad[:] = total


def _buffers_for(buffers: dict, n: int, widths: list[int], dtype) -> dict:
    key = (n, np.dtype(dtype).str, tuple(widths))
    if key not in buffers:
        buffers.clear()  # one size at a time: a training loop's last batch may differ
        buffers[key] = {
            "streams": [np.zeros((3 * n, 1), dtype)]
                       + [np.empty((3 * n, w), dtype) for w in widths],
            "jacobian": [np.empty((3 * n, w), dtype) for w in widths],
            "work": [np.empty((3 * n, w), dtype) for w in widths],
            "output": np.empty((3 * n, 1), dtype),
        }
        buffers[key]["streams"][0][n:2 * n] = 1.0  # x' = 1, x'' = 0
    return buffers[key]


#: Below this many multiply-adds per stream, a stacked product goes to BLAS as three
#: products, one per stream. OpenBLAS multiplies matrices this small on the calling thread
#: (its small-matrix path), whereas the stacked product, three times larger, wakes its
#: thread pool, which then costs more than the product (measured at 50 points, two BLAS
#: threads, a loaded 2-core machine: 2.5 ms for the stacked forward product against
#: 3 x 0.05 ms; at one thread the two ways take the same time).
SMALL_PRODUCT = 100**3


def _streams_times(stacked: np.ndarray, matrix: np.ndarray, out: np.ndarray, n: int) -> None:
    """``out = stacked @ matrix`` for the stacked streams ``stacked`` (3n, k)."""
    if n * matrix.shape[0] * matrix.shape[1] > SMALL_PRODUCT:
        np.matmul(stacked, matrix, out=out)
        return
    for rows in (slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n)):
        np.matmul(stacked[rows], matrix, out=out[rows])


def _streams_inner(left: np.ndarray, right: np.ndarray, out: np.ndarray, n: int) -> None:
    """``out = left^T @ right`` summed over the stacked streams (both (3n, .))."""
    if n * left.shape[1] * right.shape[1] > SMALL_PRODUCT:
        np.matmul(left.T, right, out=out)
        return
    np.matmul(left[:n].T, right[:n], out=out)
    for rows in (slice(n, 2 * n), slice(2 * n, 3 * n)):
        out += left[rows].T @ right[rows]


def loss_and_grads(params: list[np.ndarray], activations: list[str], x: np.ndarray,
                   A: float, B: float, k: float, buffers: dict) -> tuple[float, list]:
    """``L = mean R^2`` and ``dL/dparams`` of the trial-solution network (``params`` as
    :class:`refimpl.pinn.HelmholtzPINN` holds them, all of one dtype; ``x`` (M,) of that
    dtype). ``buffers``: a dict kept between calls (the work arrays live in it)."""
    dtype = params[0].dtype
    n, hidden = x.size, len(activations)
    widths = [params[2 * layer].shape[1] for layer in range(hidden)]
    buf = _buffers_for(buffers, n, widths, dtype)
    streams, jacobian, work = buf["streams"], buf["jacobian"], buf["work"]
    streams[0][:n, 0] = x
    kinds = [SUPPORTED[name] for name in activations]
    first_layer_streams(x, params[0], params[1], kinds[0], streams[1], jacobian[0])
    for layer in range(1, hidden):  # forward: one product and one fused loop per layer
        _streams_times(streams[layer], params[2 * layer], work[layer], n)
        activation_streams(work[layer], params[2 * layer + 1], n, kinds[layer],
                           streams[layer + 1], jacobian[layer])
    W_out, b_out = params[2 * hidden], params[2 * hidden + 1]
    _streams_times(streams[hidden], W_out, buf["output"], n)
    out = buf["output"][:, 0]
    N, N1, N2 = out[:n] + b_out[0], out[n:2 * n], out[2 * n:]
    # the trial solution, its residual and dL/d(N, N', N'') (docs/methods.md 9.3, 9.4, 9.7)
    w = x * (1.0 - x)
    k2 = dtype.type(k * k)
    u = A * (1.0 - x) + B * x + w * N
    residual = -2.0 * N + 2.0 * (1.0 - 2.0 * x) * N1 + w * N2 + k2 * u
    g_R = (2.0 / n) * residual
    g_out = buf["output"]
    g_out[:n, 0] = g_R * (k2 * w - 2.0)
    g_out[n:2 * n, 0] = 2.0 * g_R * (1.0 - 2.0 * x)
    g_out[2 * n:, 0] = g_R * w
    grads: list[np.ndarray] = [np.empty_like(p) for p in params]
    _streams_inner(streams[hidden], g_out, grads[2 * hidden], n)
    grads[2 * hidden + 1][0] = g_out[:n, 0].sum()
    output_jacobian_transpose(g_out, W_out, jacobian[hidden - 1], n, work[hidden - 1],
                              grads[2 * hidden - 1])
    for layer in range(hidden - 1, -1, -1):  # backward: one loop and two products per layer
        if layer < hidden - 1:
            jacobian_transpose(work[layer], jacobian[layer], n, grads[2 * layer + 1])
        _streams_inner(streams[layer], work[layer], grads[2 * layer], n)
        if layer > 0:
            _streams_times(work[layer], params[2 * layer].T, work[layer - 1], n)
    return float(np.mean(residual * residual)), grads
