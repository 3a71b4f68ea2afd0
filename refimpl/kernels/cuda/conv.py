"""2-D convolution (cross-correlation, NCHW) on device arrays, one thread per output element.

Equations (docs/methods.md §1), stride ``s``, zero padding ``p``, ``H_out = (H + 2p − kh)//s + 1``:

    y[n, o, i, j]  = b[o] + Σ_{c, u, v} W[o, c, u, v] · x[n, c, i·s − p + u, j·s − p + v]
    dx[n, c, h, w] = Σ_{o, u, v} W[o, c, u, v] · dy[n, o, (h + p − u)/s, (w + p − v)/s]
                     (terms whose output index is fractional or out of range vanish)
    dW[o, c, u, v] = Σ_{n, i, j} dy[n, o, i, j] · x[n, c, i·s − p + u, j·s − p + v]
    db[o]          = Σ_{n, i, j} dy[n, o, i, j]

Every gradient is a gather (each thread owns one output element and reads what it needs),
so no atomics are used and results are deterministic.
"""

from __future__ import annotations

from numba import cuda

from refimpl.ops.checks import check_conv2d_args, check_conv2d_grad

from ._common import check_on_device, for_dtypes, launch_1d


def _make_forward(scalar: type):
    @cuda.jit
    def conv_forward(x, w, b, stride, pad, y):
        idx = cuda.grid(1)
        if idx >= y.size:
            return
        _n_batch, c_out, h_out, w_out = y.shape
        j = idx % w_out
        i = (idx // w_out) % h_out
        o = (idx // (w_out * h_out)) % c_out
        n = idx // (w_out * h_out * c_out)
        c_in, kh, kw = w.shape[1], w.shape[2], w.shape[3]
        height, width = x.shape[2], x.shape[3]
        acc = scalar(0)
        for c in range(c_in):
            for u in range(kh):
                row = i * stride - pad + u
                if row < 0 or row >= height:
                    continue
                for v in range(kw):
                    col = j * stride - pad + v
                    if 0 <= col < width:
                        acc += w[o, c, u, v] * x[n, c, row, col]
        y[n, o, i, j] = acc + b[o]

    return conv_forward


def _make_backward_input(scalar: type):
    @cuda.jit
    def conv_backward_input(dy, w, stride, pad, dx):
        idx = cuda.grid(1)
        if idx >= dx.size:
            return
        _n_batch, c_in, height, width = dx.shape
        wc = idx % width
        h = (idx // width) % height
        c = (idx // (width * height)) % c_in
        n = idx // (width * height * c_in)
        c_out, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        h_out, w_out = dy.shape[2], dy.shape[3]
        acc = scalar(0)
        for u in range(kh):
            top = h + pad - u
            if top < 0 or top % stride != 0 or top // stride >= h_out:
                continue
            i = top // stride
            for v in range(kw):
                left = wc + pad - v
                if left < 0 or left % stride != 0 or left // stride >= w_out:
                    continue
                j = left // stride
                for o in range(c_out):
                    acc += w[o, c, u, v] * dy[n, o, i, j]
        dx[n, c, h, wc] = acc

    return conv_backward_input


def _make_backward_weight(scalar: type):
    @cuda.jit
    def conv_backward_weight(dy, x, stride, pad, dw):
        idx = cuda.grid(1)
        if idx >= dw.size:
            return
        _c_out, c_in, kh, kw = dw.shape
        v = idx % kw
        u = (idx // kw) % kh
        c = (idx // (kw * kh)) % c_in
        o = idx // (kw * kh * c_in)
        n_batch, height, width = x.shape[0], x.shape[2], x.shape[3]
        h_out, w_out = dy.shape[2], dy.shape[3]
        acc = scalar(0)
        for n in range(n_batch):
            for i in range(h_out):
                row = i * stride - pad + u
                if row < 0 or row >= height:
                    continue
                for j in range(w_out):
                    col = j * stride - pad + v
                    if 0 <= col < width:
                        acc += dy[n, o, i, j] * x[n, c, row, col]
        dw[o, c, u, v] = acc

    return conv_backward_weight


def _make_backward_bias(scalar: type):
    @cuda.jit
    def conv_backward_bias(dy, db):
        o = cuda.grid(1)
        if o >= db.size:
            return
        acc = scalar(0)
        for n in range(dy.shape[0]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    acc += dy[n, o, i, j]
        db[o] = acc

    return conv_backward_bias


_FORWARD = for_dtypes(_make_forward)
_BACKWARD_INPUT = for_dtypes(_make_backward_input)
_BACKWARD_WEIGHT = for_dtypes(_make_backward_weight)
_BACKWARD_BIAS = for_dtypes(_make_backward_bias)


def conv2d_forward(x, W, b, stride: int = 1, padding: int = 0):
    """Cross-correlation ``y = W ⋆ x + b`` (NCHW, as ``torch.nn.functional.conv2d``).

    Parameters
    ----------
    x : device array (N, C_in, H, W)
    W : device array (C_out, C_in, kh, kw)
    b : device array (C_out,)
    stride, padding : int

    Returns
    -------
    y : device array (N, C_out, H_out, W_out), ``H_out = (H + 2p − kh)//s + 1``
    cache : opaque, read by :func:`conv2d_backward`
    """
    check_on_device(x=x, W=W, b=b)
    stride, padding, h_out, w_out = check_conv2d_args(x, W, b, stride, padding)
    dtype = x.dtype
    y = cuda.device_array((x.shape[0], W.shape[0], h_out, w_out), dtype=dtype)
    _FORWARD[dtype][launch_1d(y.size)](x, W, b, stride, padding, y)
    return y, (x, W, stride, padding)


def conv2d_backward(dy, cache, *, need_dx: bool = True):
    """Gradients of :func:`conv2d_forward` (equations in the module docstring).

    ``need_dx=False`` skips the input gradient and returns None for it.

    Returns
    -------
    dx (N, C_in, H, W) or None, dW (C_out, C_in, kh, kw), db (C_out,) : device arrays
    """
    x, W, stride, padding = cache
    check_on_device(dy=dy)
    check_conv2d_grad(dy, tuple(x.shape), W, stride, padding)
    dtype = x.dtype
    dx = None
    if need_dx:
        dx = cuda.device_array(x.shape, dtype=dtype)
        _BACKWARD_INPUT[dtype][launch_1d(dx.size)](dy, W, stride, padding, dx)
    dW = cuda.device_array(W.shape, dtype=dtype)
    db = cuda.device_array(W.shape[0], dtype=dtype)
    _BACKWARD_WEIGHT[dtype][launch_1d(dW.size)](dy, x, stride, padding, dW)
    _BACKWARD_BIAS[dtype][launch_1d(db.size)](dy, db)
    return dx, dW, db
