"""3x3, stride-1 convolution by Winograd's F(2x2, 3x3): fewer multiplications, same sums.

An equivalent form of the im2col definition (docs/methods.md §1, (1.3)–(1.5) and the
Winograd subsection there). The padded input is cut into 4x4 tiles at stride 2, one per 2x2
block of outputs (``T = N ceil(H_out / 2) ceil(W_out / 2)`` tiles; a last block that
overhangs the output is computed on zeros and dropped). With

    Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G  = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]

each tile ``d`` (per input channel) and filter ``g`` (per output, input channel) go to the 16
transform points ``V = Bᵀ d B`` and ``U = G g Gᵀ``, and the 2x2 outputs of a tile are

    Y = Aᵀ [ Σ_c U[o, c] ⊙ V[c] ] A        (forward: 16 products (C_out, C_in) @ (C_in, T))

The two backward products are the adjoints of the same map, on the same 16 points:

    dx tile = B [ Σ_o U[o, c] ⊙ Z[o] ] Bᵀ,  Z = A dY Aᵀ  (16 products (C_in, C_out) @ (C_out, T))
    dW      = Gᵀ [ Σ_tiles Z[o] ⊙ V[c] ] G             (16 products (C_out, T) @ (T, C_in))

with the dx tiles added where they overlap. Per 2x2 outputs and channel pair the products
stage multiplies 16 times instead of 36. The transforms run in Numba in the working dtype
(only additions, subtractions and halvings: each 1-D transform rounds at most twice; the filter
transforms, a negligible cost, in float64), and the 16 products go to BLAS as one stacked
``np.matmul``. The rounding this adds is bounded in docs/methods.md §1. Layouts: ``U`` (16,
C_out, C_in), ``V`` (16, C_in, tiles, N), ``Z`` (16, C_out, tiles, N) with the tiles of an image
in row-major order and the batch last, so that every transform loop runs over the batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refimpl.kernels.numba import profile

#: Transform points of F(2x2, 3x3): a 4x4 tile.
POINTS = 16


def tile_grid(h_out: int, w_out: int) -> tuple[int, int]:
    """Tiles down and across: one per 2x2 block of outputs, the last one possibly overhanging."""
    return (h_out + 1) // 2, (w_out + 1) // 2


@njit(cache=True, parallel=True, fastmath=False)
def filter_transform(W):  # pragma: no cover - compiled
    """U[4p + q, o, c] = (G g Gᵀ)[p, q] for g = W[o, c] (3x3), in float64, rounded once."""
    c_out, c_in = W.shape[0], W.shape[1]
    U = np.empty((POINTS, c_out, c_in), dtype=W.dtype)
    for o in prange(c_out):
        t = np.empty((4, 3))  # G g
        for c in range(c_in):
            g = W[o, c]
            for v in range(3):
                g0, g1, g2 = np.float64(g[0, v]), np.float64(g[1, v]), np.float64(g[2, v])
                t[0, v], t[1, v] = g0, 0.5 * (g0 + g1 + g2)
                t[2, v], t[3, v] = 0.5 * (g0 - g1 + g2), g2
            for p in range(4):
                t0, t1, t2 = t[p, 0], t[p, 1], t[p, 2]
                U[4 * p, o, c] = t0
                U[4 * p + 1, o, c] = 0.5 * (t0 + t1 + t2)
                U[4 * p + 2, o, c] = 0.5 * (t0 - t1 + t2)
                U[4 * p + 3, o, c] = t2
    return U


@njit(cache=True, parallel=True, fastmath=False)
def filter_transform_adjoint(dU):  # pragma: no cover - compiled
    """dW[o, c] = Gᵀ dU[:, o, c] G (3x3), in float64, rounded once."""
    c_out, c_in = dU.shape[1], dU.shape[2]
    dW = np.empty((c_out, c_in, 3, 3), dtype=dU.dtype)
    for o in prange(c_out):
        t = np.empty((3, 4))  # Gᵀ f
        for c in range(c_in):
            for q in range(4):
                f0, f1 = np.float64(dU[q, o, c]), np.float64(dU[4 + q, o, c])
                f2, f3 = np.float64(dU[8 + q, o, c]), np.float64(dU[12 + q, o, c])
                t[0, q], t[1, q], t[2, q] = f0 + 0.5 * (f1 + f2), 0.5 * (f1 - f2), \
                    0.5 * (f1 + f2) + f3
            for u in range(3):
                f0, f1, f2, f3 = t[u, 0], t[u, 1], t[u, 2], t[u, 3]
                dW[o, c, u, 0] = f0 + 0.5 * (f1 + f2)
                dW[o, c, u, 1] = 0.5 * (f1 - f2)
                dW[o, c, u, 2] = 0.5 * (f1 + f2) + f3
    return dW


# The tile transforms work on images stored batch-last, (C, rows, cols, N), and on points
# stored (16, C, tiles, N): the innermost loop runs over the batch with unit stride. Each 2-D
# transform is two 1-D ones (down the columns, then along the rows), and each output row of a
# 1-D transform is one loop ``out = c0 a0 + c1 a1 + c2 a2`` over the batch, which vectorises (a
# loop over more arrays would need more run-time overlap checks than the compiler allows). The
# matrices are stored as their non-zero entries, at most three a row: ``TERMS[p, j]`` is the
# input index of term j of row p (-1: none) and ``COEFS[p, j]`` its coefficient.
BT_TERMS = np.array([[0, 2, -1], [1, 2, -1], [1, 2, -1], [1, 3, -1]])
BT_COEFS = np.array([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]])
B_TERMS = np.array([[0, -1, -1], [1, 2, 3], [0, 1, 2], [3, -1, -1]])  # B = (Bᵀ)ᵀ
B_COEFS = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])
AT_TERMS = np.array([[0, 1, 2], [1, 2, 3]])
AT_COEFS = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])
A_TERMS = np.array([[0, -1, -1], [0, 1, -1], [0, 1, -1], [1, -1, -1]])  # A = (Aᵀ)ᵀ
A_COEFS = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]])


@njit(cache=True, inline="always", fastmath=False)
def _terms(table, row):  # pragma: no cover - compiled
    """The input indices of row ``row`` of a term table, a missing one replaced by the first
    (it is then not read), and how many there are."""
    k0, k1, k2 = table[row, 0], table[row, 1], table[row, 2]
    return k0, k1 if k1 >= 0 else k0, k2 if k2 >= 0 else k0, 1 + (k1 >= 0) + (k2 >= 0)


@njit(cache=True, inline="always", fastmath=False)
def _combine(out, coefs, row, count, a0, a1, a2, bias, accumulate, relu):  # pragma: no cover
    """out = c0 a0 + c1 a1 + c2 a2 + bias, the first ``count`` terms (+ out when
    ``accumulate``; then max(., 0) as a select when ``relu``), c = coefs[row], summed in
    out's dtype (the coefficients ±1 multiply exactly). A missing term is skipped, never
    multiplied by 0 (an infinite input would turn into NaN)."""
    kind = out.dtype.type
    c0, c1, c2 = kind(coefs[row, 0]), kind(coefs[row, 1]), kind(coefs[row, 2])
    b = kind(bias)
    for n in range(out.shape[0]):
        value = c0 * a0[n]
        if count > 1:
            value += c1 * a1[n]
        if count > 2:
            value += c2 * a2[n]
        value += b
        if accumulate:
            value += out[n]
        if relu and value < 0.0:
            value = 0.0
        out[n] = value


@njit(cache=True, parallel=True, fastmath=False)
def to_batch_last(a, offset, rows, cols):  # pragma: no cover - compiled
    """(N, C, H, W) -> (C, rows, cols, N) with a[n, c] placed at (offset, offset), zeros around."""
    n_img, channels, height, width = a.shape
    out = np.empty((channels, rows, cols, n_img), dtype=a.dtype)
    for c in prange(channels):
        out[c] = 0
        for first in range(0, n_img, 16):  # 16 images: one cache line of every output row
            for i in range(height):
                for j in range(width):
                    target = out[c, i + offset, j + offset]
                    for n in range(first, min(first + 16, n_img)):
                        target[n] = a[n, c, i, j]
    return out


@njit(cache=True, parallel=True, fastmath=False)
def from_batch_last(a, offset, height, width, out):  # pragma: no cover - compiled
    """Fill ``out`` (N, C, height, width) with a[c, offset + i, offset + j, n] (cast to its
    dtype)."""
    n_img, channels = out.shape[0], out.shape[1]
    for c in prange(channels):
        for first in range(0, n_img, 16):
            for i in range(height):
                for j in range(width):
                    source = a[c, i + offset, j + offset]
                    for n in range(first, min(first + 16, n_img)):
                        out[n, c, i, j] = source[n]


@njit(cache=True, parallel=True, fastmath=False)
def input_transform(xt, tiles_h, tiles_w):  # pragma: no cover - compiled
    """V[4p + q, c, r tiles_w + s, n] = (Bᵀ d B)[p, q], d the 4x4 tile at rows 2r.., columns
    2s.. of image n of the batch-last padded input ``xt``."""
    c_in, n_img = xt.shape[0], xt.shape[3]
    V = np.empty((POINTS, c_in, tiles_h * tiles_w, n_img), dtype=xt.dtype)
    for c in prange(c_in):
        image = xt[c]
        half = np.empty((4, 4, n_img), dtype=xt.dtype)  # Bᵀ d
        for r in range(tiles_h):
            for s in range(tiles_w):
                tile, top = r * tiles_w + s, 2 * r
                for p in range(4):
                    k0, k1, k2, count = _terms(BT_TERMS, p)
                    for col in range(2 * s, 2 * s + 4):
                        _combine(half[p, col - 2 * s], BT_COEFS, p, count, image[top + k0, col],
                                 image[top + k1, col], image[top + k2, col], 0.0, False, False)
                for q in range(4):
                    k0, k1, k2, count = _terms(BT_TERMS, q)
                    for p in range(4):
                        _combine(V[4 * p + q, c, tile], BT_COEFS, q, count, half[p, k0],
                                 half[p, k1], half[p, k2], 0.0, False, False)
    return V


@njit(cache=True, parallel=True, fastmath=False)
def output_transform(M, b, tiles_h, tiles_w, relu):  # pragma: no cover - compiled
    """yt[o, 2r + i, 2s + j, n] = (Aᵀ M[:, o, r tiles_w + s, n] A)[i, j] + b[o] (then max(., 0)
    when ``relu``), batch-last."""
    c_out, n_img = M.shape[1], M.shape[3]
    yt = np.empty((c_out, 2 * tiles_h, 2 * tiles_w, n_img), dtype=M.dtype)
    for o in prange(c_out):
        bias = b[o]
        half = np.empty((2, 4, n_img), dtype=M.dtype)  # Aᵀ M
        for r in range(tiles_h):
            for s in range(tiles_w):
                tile = r * tiles_w + s
                for i in range(2):
                    p0, p1, p2, count = _terms(AT_TERMS, i)
                    for q in range(4):
                        _combine(half[i, q], AT_COEFS, i, count, M[4 * p0 + q, o, tile],
                                 M[4 * p1 + q, o, tile], M[4 * p2 + q, o, tile], 0.0, False,
                                 False)
                for j in range(2):
                    q0, q1, q2, count = _terms(AT_TERMS, j)
                    for i in range(2):
                        _combine(yt[o, 2 * r + i, 2 * s + j], AT_COEFS, j, count, half[i, q0],
                                 half[i, q1], half[i, q2], bias, False, relu)
    return yt


@njit(cache=True, parallel=True, fastmath=False)
def grad_transform(gt, tiles_h, tiles_w):  # pragma: no cover - compiled
    """Z[4p + q, o, r tiles_w + s, n] = (A dY Aᵀ)[p, q], dY the 2x2 block at rows 2r..,
    columns 2s.. of image n of the batch-last gradient ``gt`` (zero past the output): the
    adjoint of the output transform."""
    c_out, n_img = gt.shape[0], gt.shape[3]
    Z = np.empty((POINTS, c_out, tiles_h * tiles_w, n_img), dtype=gt.dtype)
    for o in prange(c_out):
        g = gt[o]
        half = np.empty((4, 2, n_img), dtype=gt.dtype)  # A dY
        for r in range(tiles_h):
            for s in range(tiles_w):
                tile, top = r * tiles_w + s, 2 * r
                for p in range(4):
                    i0, i1, i2, count = _terms(A_TERMS, p)
                    for col in range(2 * s, 2 * s + 2):
                        _combine(half[p, col - 2 * s], A_COEFS, p, count, g[top + i0, col],
                                 g[top + i1, col], g[top + i2, col], 0.0, False, False)
                for q in range(4):
                    j0, j1, j2, count = _terms(A_TERMS, q)
                    for p in range(4):
                        _combine(Z[4 * p + q, o, tile], A_COEFS, q, count, half[p, j0],
                                 half[p, j1], half[p, j2], 0.0, False, False)
    return Z


@njit(cache=True, parallel=True, fastmath=False)
def input_transform_adjoint(dV, tiles_h, tiles_w):  # pragma: no cover - compiled
    """dxt[c, 2r + k, 2s + l, n] += (B dV[:, c, r tiles_w + s, n] Bᵀ)[k, l] over all tiles, in a
    batch-last buffer (C_in, 2 tiles_h + 2, 2 tiles_w + 2, N): the adjoint of the input
    transform, overlapping tiles added."""
    c_in, n_img = dV.shape[1], dV.shape[3]
    dxt = np.zeros((c_in, 2 * tiles_h + 2, 2 * tiles_w + 2, n_img), dtype=dV.dtype)
    for c in prange(c_in):
        acc = dxt[c]
        half = np.empty((4, 4, n_img), dtype=dV.dtype)  # B dV
        for r in range(tiles_h):
            for s in range(tiles_w):
                tile = r * tiles_w + s
                for k in range(4):
                    p0, p1, p2, count = _terms(B_TERMS, k)
                    for q in range(4):
                        _combine(half[k, q], B_COEFS, k, count, dV[4 * p0 + q, c, tile],
                                 dV[4 * p1 + q, c, tile], dV[4 * p2 + q, c, tile], 0.0, False,
                                 False)
                for col in range(4):
                    q0, q1, q2, count = _terms(B_TERMS, col)
                    for k in range(4):
                        _combine(acc[2 * r + k, 2 * s + col], B_COEFS, col, count, half[k, q0],
                                 half[k, q1], half[k, q2], 0.0, True, False)
    return dxt


def _products(name: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The 16 products ``left[p] @ right[p]`` (BLAS, one stacked call), timed as a GEMM."""
    m, k, n = left.shape[1], left.shape[2], right.shape[2]
    with profile.phase(name, f"16x{m}x{k}x{n}", 2.0 * POINTS * m * k * n):
        return np.matmul(left, right)


def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, padding: int, relu: bool
            ) -> tuple[np.ndarray, tuple]:
    """``y = conv2d(x, W, b, 1, padding)`` (then relu when asked), NCHW, for 3x3 ``W``;
    contiguous arrays, arguments already checked. Returns y and the cache of :func:`backward`:
    the transformed input V and filters U."""
    yt, cache = forward_batch_last(x, W, b, padding, relu)
    n, c_out, h_out, w_out = x.shape[0], W.shape[0], *cache[3]
    y = np.empty((n, c_out, h_out, w_out), dtype=x.dtype)
    with profile.phase("winograd output to NCHW"):
        from_batch_last(yt, 0, h_out, w_out, y)
    return y, cache


def forward_batch_last(x: np.ndarray, W: np.ndarray, b: np.ndarray, padding: int, relu: bool
                       ) -> tuple[np.ndarray, tuple]:
    """:func:`forward` with the output left batch-last, (C_out, 2 tiles_h, 2 tiles_w, N), its
    rows and columns past (H_out, W_out) unused (for a pooling that reads it in place)."""
    height, width = x.shape[2], x.shape[3]
    h_out, w_out = height + 2 * padding - 2, width + 2 * padding - 2
    tiles_h, tiles_w = tile_grid(h_out, w_out)
    with profile.phase("winograd filter transform"):
        U = filter_transform(W)
    with profile.phase("winograd input transform"):
        V = input_transform(to_batch_last(x, padding, 2 * tiles_h + 2, 2 * tiles_w + 2),
                            tiles_h, tiles_w)
    M = _products("winograd gemm M=U.V", U, _flat(V))
    with profile.phase("winograd output transform" + (", bias+relu" if relu else ", bias")):
        yt = output_transform(M.reshape(V.shape[0], -1, *V.shape[2:]), b, tiles_h, tiles_w,
                              relu)
    return yt, (V, U, x.shape, (h_out, w_out), padding)


def backward(g: np.ndarray, cache: tuple, need_dx: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """``(dx or None, dW)`` of :func:`forward` from ``g``, the gradient at the conv output
    (N, C_out, H_out, W_out), contiguous."""
    V, U, x_shape, (h_out, w_out), padding = cache
    height, width = x_shape[2], x_shape[3]
    tiles_h, tiles_w = tile_grid(h_out, w_out)
    with profile.phase("winograd grad transform"):
        Z = grad_transform(to_batch_last(g, 0, 2 * tiles_h, 2 * tiles_w), tiles_h, tiles_w)
    dU = _products("winograd gemm dU=Z.VT", _flat(Z), _flat(V).transpose(0, 2, 1))
    with profile.phase("winograd filter adjoint"):
        dW = filter_transform_adjoint(dU)
    if not need_dx:
        return None, dW
    dV = _products("winograd gemm dV=UT.Z", U.transpose(0, 2, 1), _flat(Z))
    dx = np.empty(x_shape, dtype=g.dtype)
    with profile.phase("winograd input adjoint"):
        dxt = input_transform_adjoint(dV.reshape(V.shape), tiles_h, tiles_w)
        from_batch_last(dxt, padding, height, width, dx)
    return dx, dW


def _flat(points: np.ndarray) -> np.ndarray:
    """(16, C, tiles, N) -> (16, C, T), T = tiles N: the matrices of the 16 products."""
    return points.reshape(points.shape[0], points.shape[1], -1)
