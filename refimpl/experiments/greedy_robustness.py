"""GreedyLR's robustness to noise (GreedyLR paper §4.4 and A.6; docs/methods.md §8).

The paper: 8,100 runs of 200 optimization steps, mostly neural networks (12 architectures:
convolutional and fully connected families, attention and transformer families) trained by
a standard optimizer, plus four test functions; four schedulers (GreedyLR, cosine, cosine
with restarts, exponential), five noise types "applied as additive perturbations to the
loss function" (A.6, which argues that such noise has about zero gradient): Gaussian,
periodic spikes (every 50-100 steps), random spikes (2% per step), adversarial noise that
"opposes optimization progress, scaling proportionally to recent loss improvements", and
none.

Here the pool is network-dominated as the paper's is: five networks on a Fashion-MNIST
subset -- the project's ``mlp`` (784-1000-10), a small CNN (``cnn``), a residual MLP
(``resmlp``: two blocks ``y = x + relu(x W1 + b1) W2 + b2``, :class:`ResidualDense`), a
row-attention net (``attention``: one head of self-attention over the 28 image rows as
tokens, with a residual connection, :class:`SelfAttention`) and the LRPO paper's CNN
(``lrpo_cnn``, 245,290 parameters) -- and, as a minority, four 2-D functions (quadratic,
Rosenbrock, Rastrigin, Ackley). 200 steps, base optimizer Adam or SGD with momentum 0.9.
The noise is added to the loss the scheduler sees; the gradient is the true one
(functions) or the mini-batch one (networks), so cosine, restarts and exponential follow
the same trajectory under every noise, and only GreedyLR reacts. The seed draws the start
point (the weights) and the noise; every scheduler of a cell sees the same ones.

Noise on the observed loss ``l_t`` of the true loss ``f_t`` (strengths are our choice; the
paper parameterises each type by a strength it does not state):

* ``none``      -- ``l = f``;
* ``gaussian``  -- ``l = f (1 + 0.05 xi)``, ``xi`` standard normal;
* ``periodic``  -- ``l = f + 2 f_0`` every ``P`` steps (``P`` from 50..100 per seed);
* ``spike``     -- the same spike with probability 0.02 per step;
* ``adversarial`` -- ``l = f + 2 max(0, f_{t-5} - f_t)``: the observed loss rises as fast
  as the true loss falls over the last 5 steps.

Metrics: final loss = mean of the last 10 true losses; recovery = max observed loss / final
loss. A run whose loss passes 1e12 or turns NaN is scored ``inf`` (diverged). Medians come
with a distribution-free 95% confidence interval (:func:`median_ci`: two order statistics
chosen from the binomial(n, 1/2) distribution), and every cell states its n.

Budget. One network run (200 steps, batch 32, float32, numba backend), measured on a
2-core x86_64 machine shared with other jobs (load 2-5), NUMBA_NUM_THREADS=1, CPU seconds
of two runs each (Adam, SGD; they differ mostly by the load; wall seconds were 1-2.5
times these):
``mlp`` 7.8 / 5.3, ``cnn`` 2.3 / 7.1, ``resmlp`` 1.7 / 3.4, ``attention`` 3.5 / 6.3,
``lrpo_cnn`` 34 / 30 (on 200 steps of a 2,000-image subset). One seed of every network,
noise, scheduler and optimizer is 200 runs, 1,700-2,300 CPU seconds; :data:`FULL`'s 5
network seeds are 1,000 runs, about 2.4-3.3 CPU-hours at one thread, two thirds of it
``lrpo_cnn``. Its 4 function seeds are 640 runs, so 61% of the runs train a network.
The functions are recomputed on every call (a few ms a run) and never recorded. Each
network run is appended to ``results/greedy-robustness.jsonl``
(:mod:`refimpl.experiments._records`); a re-run skips it and ``--report`` trains nothing
and builds every table from the runs that have finished. The network runs loop over the
seeds outermost, so a stopped study leaves every (network, optimizer, noise, scheduler)
cell with the same number of seeds, give or take one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, partial
from pathlib import Path

import numpy as np

from refimpl.experiments._records import cell, progress, records_for
from refimpl.experiments.common import (
    StudyResult,
    Table,
    Timer,
    fmt,
    machine,
    new_figure,
    save_figure,
)
from refimpl.init import init_weight
from refimpl.layers import Activation, Dense, Flatten, Layer
from refimpl.model import MODELS
from refimpl.schedulers import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
)
from refimpl.schedulers.greedy import GreedyLR

STEPS = 200
NOISES = ("none", "gaussian", "periodic", "spike", "adversarial")
SCHEDULERS = ("greedy", "cosine", "cosine-restarts", "exponential")
OPTIMIZERS = ("adam", "sgd-momentum")
PAPER_FINAL = {"greedy": 0.148, "cosine": 0.232, "cosine-restarts": 0.226, "exponential": 0.249}
#: the paper's Table 12: median recovery under clean conditions (noise none)
PAPER_RECOVERY = {"greedy": 134, "cosine": 132.3, "cosine-restarts": 35.7, "exponential": 4.9}
DIVERGED = 1e12
LEVEL = 0.95  # of the medians' confidence intervals
CI_NOTE = ("[low, high] is a distribution-free 95% confidence interval of the median: the "
           "order statistics x_(l) and x_(n+1-l) with l the largest such that "
           "P(B <= l - 1) <= 0.025 for B ~ binomial(n, 1/2) (coverage >= 95%; none for "
           "n < 6); n counts the runs in the cell")


class ResidualDense(Layer):
    """A residual MLP block, ``y = x + relu(x W1 + b1) W2 + b2``, on (N, features) input.

    ``W1`` (features, hidden) He-uniform, ``W2`` (hidden, features) Glorot-uniform, biases
    zero. Backward, with ``a = x W1 + b1``, ``h = relu(a)``::

        dW2 = hᵀ dy,  db2 = Σ_n dy,  dh = dy W2ᵀ,  da = dh [a > 0],
        dW1 = xᵀ da,  db1 = Σ_n da,  dx = dy + da W1ᵀ

    The affine maps and the relu are the backend's ops (docs/methods.md §1).
    """

    def __init__(self, features: int, hidden: int, *, rng: np.random.Generator,
                 dtype=np.float32) -> None:
        super().__init__()
        dtype = np.dtype(dtype)
        self.params = {"W1": init_weight("he_uniform", rng, (features, hidden), dtype),
                       "b1": np.zeros(hidden, dtype),
                       "W2": init_weight("glorot_uniform", rng, (hidden, features), dtype),
                       "b2": np.zeros(features, dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        a, dense1 = self.ops.dense_forward(x, p["W1"], p["b1"])
        h, relu = self.ops.relu_forward(a)
        z, dense2 = self.ops.dense_forward(h, p["W2"], p["b2"])
        self._cache = (dense1, relu, dense2)
        return x + z

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        dense1, relu, dense2 = self._take_cache()
        dh, dW2, db2 = self.ops.dense_backward(dy, dense2)
        da = self.ops.relu_backward(dh, relu)
        dx, dW1, db1 = self.ops.dense_backward(da, dense1, need_dx=need_dx)
        self._store_grads(W1=dW1, b1=db1, W2=dW2, b2=db2)
        return dy + dx if need_dx else None

    def __repr__(self) -> str:
        return f"ResidualDense({self.params['W1'].shape[0]}, hidden={self.params['W1'].shape[1]})"


class SelfAttention(Layer):
    """One head of scaled dot-product self-attention with a residual connection, on tokens
    ``x`` (N, T, D)::

        Q = x Wq,  K = x Wk,  V = x Wv,  A = softmax(Q Kᵀ / √D)  (over the last axis),
        y = x + A V Wo + bo

    ``Wq, Wk, Wv, Wo`` (D, D) Glorot-uniform, ``bo`` zero. Backward, with ``H = A V`` and
    ``s = 1/√D``::

        dWo = Σ Hᵀ dy,  dbo = Σ dy,  dH = dy Woᵀ,  dV = Aᵀ dH,  dA = dH Vᵀ,
        dS = A ⊙ (dA − rowsum(dA ⊙ A)),  dQ = s dS K,  dK = s dSᵀ Q,
        dW· = Σ xᵀ d·  (· = Q, K, V),  dx = dy + dQ Wqᵀ + dK Wkᵀ + dV Wvᵀ

    (sums over the batch and the tokens). Written with NumPy matmuls on every backend.
    """

    def __init__(self, dim: int, *, rng: np.random.Generator, dtype=np.float32) -> None:
        super().__init__()
        dtype = np.dtype(dtype)
        self.params = {name: init_weight("glorot_uniform", rng, (dim, dim), dtype)
                       for name in ("Wq", "Wk", "Wv", "Wo")}
        self.params["bo"] = np.zeros(dim, dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: np.ndarray) -> np.ndarray:
        p, dim = self.params, self.params["Wq"].shape[0]
        if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != dim:
            raise ValueError(f"x must have shape (N, tokens, {dim}), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        q, k, v = x @ p["Wq"], x @ p["Wk"], x @ p["Wv"]
        scores = q @ k.transpose(0, 2, 1) * self.scale
        scores -= scores.max(axis=2, keepdims=True)  # a shift softmax ignores; no overflow
        attn = np.exp(scores)
        attn /= attn.sum(axis=2, keepdims=True)
        h = attn @ v
        self._cache = (x, q, k, v, attn, h)
        return x + h @ p["Wo"] + p["bo"]

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        x, q, k, v, attn, h = self._take_cache()
        p = self.params
        flat = lambda t: t.reshape(-1, t.shape[-1])  # (N, T, D) -> (N T, D)
        dh = dy @ p["Wo"].T
        dv = attn.transpose(0, 2, 1) @ dh
        da = dh @ v.transpose(0, 2, 1)
        ds = attn * (da - np.sum(da * attn, axis=2, keepdims=True)) * self.scale
        dq, dk = ds @ k, ds.transpose(0, 2, 1) @ q
        self._store_grads(Wq=flat(x).T @ flat(dq), Wk=flat(x).T @ flat(dk),
                          Wv=flat(x).T @ flat(dv), Wo=flat(h).T @ flat(dy),
                          bo=dy.sum(axis=(0, 1)))
        if not need_dx:
            return None
        return dy + dq @ p["Wq"].T + dk @ p["Wk"].T + dv @ p["Wv"].T

    def __repr__(self) -> str:
        return f"SelfAttention({self.params['Wq'].shape[0]})"


def _residual_mlp(rng: np.random.Generator, dtype) -> list[Layer]:
    return [Dense(784, 128, init="he_uniform", rng=rng, dtype=dtype), Activation("relu"),
            ResidualDense(128, 128, rng=rng, dtype=dtype),
            ResidualDense(128, 128, rng=rng, dtype=dtype),
            Dense(128, 10, rng=rng, dtype=dtype)]


def _row_attention(rng: np.random.Generator, dtype) -> list[Layer]:
    return [SelfAttention(28, rng=rng, dtype=dtype), Flatten(),
            Dense(784, 128, init="he_uniform", rng=rng, dtype=dtype), Activation("relu"),
            Dense(128, 10, rng=rng, dtype=dtype)]


@dataclass(frozen=True)
class Network:
    """A network of the pool: a :func:`refimpl.model.build` spec, or ``layers`` (a function
    of ``(rng, dtype)``) with ``spec`` describing them; the per-example input shape."""

    spec: str
    shape: tuple[int, ...]
    layers: Callable[[np.random.Generator, object], list[Layer]] | None = None


#: the pool's networks, in their order within a seed (the costliest, ``lrpo_cnn``, last)
NETWORKS = {
    "mlp": Network(*MODELS["mlp"]),
    "cnn": Network("conv:8x3,relu,pool2,conv:16x3,relu,pool2,flatten,dense:10", (1, 28, 28)),
    "resmlp": Network("dense:128,relu,residual:128,residual:128,dense:10", (784,),
                      _residual_mlp),
    "attention": Network("attention:28 (rows as tokens),flatten,dense:128,relu,dense:10",
                         (28, 28), _row_attention),
}
NETWORKS["lrpo_cnn"] = Network(*MODELS["lrpo_cnn"])
#: base rates of the networks per optimizer
NET_LR = {"adam": 1e-3, "sgd-momentum": 0.01}
FULL = {"n_seeds": 4, "net_seeds": 5, "n_train": 2000, "networks": tuple(NETWORKS),
        "noises": NOISES}
QUICK = {"n_seeds": 4, "net_seeds": 1, "n_train": 600, "networks": (), "noises": NOISES}


def build_network(net: str, seed: int, dtype=np.float32, backend: str = "numba"):
    """The :class:`~refimpl.model.Sequential` of network ``net`` with weights from ``seed``."""
    from refimpl.model import Sequential, build

    if net not in NETWORKS:
        raise ValueError(f"net must be one of {sorted(NETWORKS)}, got {net!r}")
    network = NETWORKS[net]
    if network.layers is None:
        return build(network.spec, network.shape, seed=seed, dtype=dtype, backend=backend)
    return Sequential(network.layers(np.random.default_rng(seed), dtype), backend=backend)


@dataclass(frozen=True)
class TestFunction:
    """A 2-D function with minimum value 0, its gradient, start box and base rates."""

    name: str
    f: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    low: tuple[float, float]
    high: tuple[float, float]
    lr: dict[str, float]


def _quadratic(x):
    return 0.5 * (x[0] ** 2 + 10.0 * x[1] ** 2)


def _quadratic_grad(x):
    return np.array([x[0], 10.0 * x[1]])


def _rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def _rosenbrock_grad(x):
    return np.array([-2.0 * (1.0 - x[0]) - 400.0 * x[0] * (x[1] - x[0] ** 2),
                     200.0 * (x[1] - x[0] ** 2)])


def _rastrigin(x):
    return float(20.0 + np.sum(x ** 2 - 10.0 * np.cos(2.0 * np.pi * x)))


def _rastrigin_grad(x):
    return 2.0 * x + 20.0 * np.pi * np.sin(2.0 * np.pi * x)


def _ackley(x):
    r = math.sqrt(0.5 * float(x @ x))
    return (-20.0 * math.exp(-0.2 * r) - math.exp(0.5 * float(np.sum(np.cos(2 * np.pi * x))))
            + math.e + 20.0)


def _ackley_grad(x):
    r = math.sqrt(0.5 * float(x @ x))
    cos_mean = math.exp(0.5 * float(np.sum(np.cos(2 * np.pi * x))))
    radial = 2.0 * math.exp(-0.2 * r) * x / r if r > 0 else np.zeros(2)
    return radial + cos_mean * np.pi * np.sin(2 * np.pi * x)


#: Start boxes and base rates (Adam, SGD with momentum 0.9) per function.
FUNCTIONS = (
    TestFunction("quadratic", _quadratic, _quadratic_grad, (-3, -3), (3, 3),
                 {"adam": 0.1, "sgd-momentum": 0.01}),
    TestFunction("rosenbrock", _rosenbrock, _rosenbrock_grad, (-2, -1), (2, 3),
                 {"adam": 0.02, "sgd-momentum": 1e-4}),
    TestFunction("rastrigin", _rastrigin, _rastrigin_grad, (-1, -1), (1, 1),
                 {"adam": 0.01, "sgd-momentum": 2e-4}),
    TestFunction("ackley", _ackley, _ackley_grad, (-2, -2), (2, 2),
                 {"adam": 0.05, "sgd-momentum": 0.005}),
)


def make_scheduler(name: str, lr: float):
    """The four schedulers, stepping once per optimizer step over 200 steps.

    GreedyLR: F = 0.9, patience 2, min_lr = lr/100, max_lr = 10 lr, no smoothing (our
    choice; the paper's patience 10 / window 50 were for its 1,000-5,000 step runs).
    Cosine: T_max = 200. Restarts: T_0 = 50. Exponential: gamma = 0.99.
    """
    if name == "greedy":
        return GreedyLR(lr, factor=0.9, patience=2, min_lr=lr / 100, max_lr=10 * lr)
    if name == "cosine":
        return CosineAnnealingLR(lr, T_max=STEPS, interval="step")
    if name == "cosine-restarts":
        return CosineAnnealingWarmRestarts(lr, T_0=50, interval="step")
    if name == "exponential":
        return ExponentialLR(lr, gamma=0.99, interval="step")
    raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")


def make_optimizer(name: str, params: list, lr: float):
    """Adam or SGD with momentum 0.9 over ``params``."""
    from refimpl.optim import SGD, Adam

    if name == "adam":
        return Adam(params, lr=lr)
    if name == "sgd-momentum":
        return SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def noise_plan(noise: str, seed: int) -> dict[str, np.ndarray]:
    """All random draws of one run, made up front so every scheduler sees the same ones."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    rng = np.random.default_rng([seed, NOISES.index(noise)])
    plan = {"xi": np.zeros(STEPS), "spike": np.zeros(STEPS, dtype=bool),
            "adversarial": noise == "adversarial"}
    if noise == "gaussian":
        plan["xi"] = rng.standard_normal(STEPS)
    elif noise == "periodic":
        period = int(rng.integers(50, 101))
        plan["spike"][period - 1::period] = True
    elif noise == "spike":
        plan["spike"] = rng.random(STEPS) < 0.02
    return plan


class LossNoise:
    """The observed loss: the true loss plus one run's noise (added to the loss only)."""

    def __init__(self, noise: str, seed: int):
        self.plan = noise_plan(noise, seed)
        self.true: list[float] = []
        self.observed: list[float] = []

    def observe(self, loss: float) -> float:
        """Record the true loss of the next step and return what the scheduler sees."""
        t = len(self.true)
        if not self.true:
            self.spike = 2.0 * abs(loss)
        self.true.append(loss)
        seen = loss * (1.0 + 0.05 * self.plan["xi"][t])
        if self.plan["spike"][t]:
            seen += self.spike
        if self.plan["adversarial"] and t >= 5:
            seen += 2.0 * max(0.0, self.true[t - 5] - loss)
        self.observed.append(seen)
        return seen


class NoisyLossScheduler:
    """A per-step scheduler as the Trainer sees it, whose loss signal passes through
    :class:`LossNoise` first; schedulers without a loss signal are stepped plainly."""

    interval = "step"
    signal = "loss"

    def __init__(self, inner, noise: LossNoise):
        self.inner, self.noise = inner, noise

    @property
    def lrs(self):
        return self.inner.lrs

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def step(self, loss: float) -> None:
        seen = self.noise.observe(float(loss))
        if isinstance(self.inner, GreedyLR):
            self.inner.step(seen)
        else:
            self.inner.step()


def run_one(fn: TestFunction, scheduler: str, noise: str, seed: int,
            optimizer: str = "adam") -> dict[str, np.ndarray]:
    """One 200-step run on a 2-D function; the true and observed losses and the rates."""
    x = np.random.default_rng([seed, FUNCTIONS.index(fn)]).uniform(fn.low, fn.high)
    lr = fn.lr[optimizer]
    sched = make_scheduler(scheduler, lr)
    opt = make_optimizer(optimizer, [x], lr)
    observe = LossNoise(noise, seed)
    lrs = []
    for _ in range(STEPS):
        loss = fn.f(x)
        if not loss < DIVERGED:  # also catches NaN
            break
        lrs.append(opt.lr)
        seen = observe.observe(loss)
        opt.step([fn.grad(x)])
        opt.lr = sched.step(seen) if isinstance(sched, GreedyLR) else sched.step()
    true = np.full(STEPS, np.inf)
    observed = np.full(STEPS, np.inf)
    true[:len(observe.true)], observed[:len(observe.observed)] = observe.true, observe.observed
    return {"true": true, "observed": observed, "lr": np.asarray(lrs)}


def run_network(net: str, scheduler: str, noise: str, seed: int, optimizer: str,
                train) -> dict:
    """200 steps (batch 32) of a network on ``train``.

    Returns the true batch losses (6 significant digits), the final loss and the largest
    observed loss (full precision) and whether the run diverged. The observed losses are
    not stored: they follow from the true ones and :func:`noise_plan`.
    """
    from refimpl.train import NonFiniteLossError, Trainer

    shape = NETWORKS[net].shape
    X = train[0].reshape(len(train[0]), *shape)
    model = build_network(net, seed)
    lr = NET_LR[optimizer]
    noise_ = LossNoise(noise, seed)
    trainer = Trainer(model, make_optimizer(optimizer, model.parameters(), lr),
                      NoisyLossScheduler(make_scheduler(scheduler, lr), noise_),
                      batch_size=32, seed=seed, progress=False)
    # the fewest epochs (a divisor of 200) whose full batches fit the images: 200 steps exactly
    epochs = min(e for e in range(1, STEPS + 1) if STEPS % e == 0 and STEPS // e * 32 <= len(X))
    n = STEPS // epochs * 32
    try:
        history = trainer.fit((X[:n], train[1][:n]), epochs=epochs)
        ok = all(math.isfinite(v) and v < DIVERGED for v in history.loss)
    except NonFiniteLossError:
        ok = False
    true = noise_.true[:STEPS]
    final = final_loss(true) if ok else math.inf
    return {"true": [float(f"{v:.6g}") for v in true], "final": final,
            "max_observed": float(np.max(noise_.observed[:STEPS])), "diverged": not ok}


def final_loss(true) -> float:
    """Mean of the last 10 true losses (inf when the run diverged)."""
    true = np.asarray(true, dtype=np.float64)
    return float(np.mean(true[-10:])) if len(true) == STEPS else math.inf


def recovery(observed, final: float) -> float:
    """max observed loss / final loss (inf for a diverged run or a final loss of 0)."""
    if not np.isfinite(final):
        return math.inf
    return float(np.max(observed) / final) if final > 0 else math.inf


@cache
def _order_rank(n: int, level: float) -> int:
    """The largest ``l`` with ``P(B <= l - 1) <= (1 - level) / 2``, ``B ~ binomial(n, 1/2)``;
    0 when even ``[x_(1), x_(n)]`` covers less than ``level``. Exact integer arithmetic."""
    tail = Fraction(1 - level).limit_denominator(10**6) / 2
    below, term, rank = 0, 1, 0  # below = 2^n P(B <= i), term = C(n, i)
    for i in range(n // 2 + 1):
        below += term
        if below > tail * 2**n:
            break
        rank = i + 1
        term = term * (n - i) // (i + 1)
    return rank


def median_ci(values, level: float = LEVEL) -> tuple[float, float, float]:
    """Median of ``values`` and a distribution-free ``level`` confidence interval of it.

    The interval is ``[x_(l), x_(n+1-l)]`` of the sorted values with the largest ``l`` such
    that ``P(B <= l - 1) <= (1 - level) / 2`` for ``B ~ binomial(n, 1/2)``: the number of
    values below the true median is ``B``, so the interval covers it with probability
    ``1 - 2 P(B <= l - 1) >= level`` whatever the distribution (continuous). Infinite
    values (diverged runs) sort last. ``(median, nan, nan)`` when n is too small (n < 6
    for 95%); all nan for no values.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if not len(x):
        return math.nan, math.nan, math.nan
    rank = _order_rank(len(x), level)
    middle = float(np.median(x))
    if rank == 0:
        return middle, math.nan, math.nan
    return middle, float(x[rank - 1]), float(x[len(x) - rank])


def _check_config(cfg: dict) -> None:
    unknown = [net for net in cfg["networks"] if net not in NETWORKS]
    if unknown:
        raise ValueError(f"networks must be names of {sorted(NETWORKS)}, got {unknown}")
    unknown = [noise for noise in cfg["noises"] if noise not in NOISES]
    if unknown:
        raise ValueError(f"noises must be names of {NOISES}, got {unknown}")


def network_share(cfg: dict) -> float:
    """The share of the configuration's runs that train a network."""
    nets = len(cfg["networks"]) * cfg["net_seeds"]
    return nets / (nets + len(FUNCTIONS) * cfg["n_seeds"])


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        results: str | Path | None = None,
        report: bool = False, **overrides) -> StudyResult:
    """Networks and functions x noises x schedulers x seeds, over Adam and SGD-momentum.

    ``results``: the directory of ``greedy-robustness.jsonl``; ``report``: train no
    network, build the tables from the network runs in it (the functions always run).
    ``overrides`` replace entries of :data:`FULL` / :data:`QUICK` (``networks``,
    ``noises``, ``n_seeds``, ``net_seeds``, ``n_train``).
    """
    cfg = {**(QUICK if quick else FULL), **overrides}
    _check_config(cfg)
    noises = tuple(cfg["noises"])
    result = StudyResult("greedy-robustness", quick, machine=machine())
    networks = (f"networks {list(cfg['networks'])} on {cfg['n_train']} Fashion-MNIST images "
                f"x {cfg['net_seeds']} seeds" if cfg["networks"] else "no network")
    result.scale = (f"{networks} and {len(FUNCTIONS)} 2-D functions x "
                    f"{cfg['n_seeds']} seeds ({network_share(cfg):.0%} of the runs train a "
                    f"network); x {len(noises)} noise types x 4 schedulers x 2 base "
                    f"optimizers (Adam, SGD momentum 0.9); {STEPS} steps; noise on the loss only")
    result.paper_scale = ("8,100 runs, mostly 12 neural architectures (conv/FC and "
                          "attention/transformer families) plus the four test functions, 200 "
                          "steps, GreedyLR given more runs than the baselines; noise added to "
                          "the loss (A.6)")
    runs: dict[tuple, tuple[float, float]] = {}
    planned: list[tuple] = []
    with Timer() as timer:
        _function_runs(cfg, seed, runs, planned)
        records = _network_runs(cfg, seed, quick, out, results, report, runs, planned)
    result.wall_time = timer.seconds
    if records is not None:
        result.records = records.summary()
        if records.missing:
            result.notes.append(f"{records.missing} of {records.total} network runs have not "
                                "finished; their cells give n")
    problems = list(cfg["networks"]) + [fn.name for fn in FUNCTIONS]
    _tables(result, runs, planned, list(cfg["networks"]), noises)
    result.data.update({"runs": {"|".join(map(str, k)): v for k, v in runs.items()},
                        "problems": problems})
    _figure(runs, problems, out, result.figures)
    return result


def _function_runs(cfg: dict, seed: int, runs: dict, planned: list) -> None:
    """Every function run (cheap: recomputed on every call, never recorded)."""
    for opt in OPTIMIZERS:
        for fn in FUNCTIONS:
            for noise in cfg["noises"]:
                for sched in SCHEDULERS:
                    for s in range(cfg["n_seeds"]):
                        trace = run_one(fn, sched, noise, seed + s, opt)
                        final = final_loss(trace["true"][np.isfinite(trace["true"])])
                        planned.append((opt, fn.name, noise, sched, s))
                        runs[planned[-1]] = (final, recovery(trace["observed"], final))
        count = len(FUNCTIONS) * len(cfg["noises"]) * len(SCHEDULERS) * cfg["n_seeds"]
        progress("greedy-robustness", f"{opt}: {count} test-function runs done")


def network_settings(net: str, opt: str, noise: str, sched: str, seed: int,
                     n_train: int) -> dict:
    """The settings that key one network run in the record file (a changed architecture
    or rate is a new run)."""
    return {"net": net, "arch": NETWORKS[net].spec, "opt": opt, "lr": NET_LR[opt],
            "noise": noise, "sched": sched, "seed": seed, "n_train": n_train, "steps": STEPS}


def _network_runs(cfg: dict, seed: int, quick: bool, out, results, report: bool,
                  runs: dict, planned: list):
    """Every network run, seeds outermost, through the record file; the RunRecords (None
    when the configuration has no network). Fashion-MNIST is read on the first run that
    trains, so a report never reads it."""
    if not cfg["networks"]:
        return None
    records = records_for("greedy-robustness", quick, out, results, report,
                          total=cfg["net_seeds"] * len(cfg["networks"]) * len(OPTIMIZERS)
                          * len(cfg["noises"]) * len(SCHEDULERS))
    data = {}

    def one(net, sched, noise, s, opt):
        if not data:
            from refimpl.data import load_fashion_mnist
            from refimpl.experiments.common import data_source
            data["train"] = load_fashion_mnist("train", source=data_source(quick),
                                               subset=cfg["n_train"], seed=seed, flatten=True)
        return run_network(net, sched, noise, s, opt, data["train"])

    for s in range(cfg["net_seeds"]):
        for net in cfg["networks"]:
            for opt in OPTIMIZERS:
                for noise in cfg["noises"]:
                    for sched in SCHEDULERS:
                        settings = network_settings(net, opt, noise, sched, seed + s,
                                                    cfg["n_train"])
                        record = records.get_or_run(
                            settings, partial(one, net, sched, noise, seed + s, opt))
                        planned.append((opt, net, noise, sched, s))
                        if record is not None:
                            final = math.inf if record["diverged"] else record["final"]
                            runs[planned[-1]] = (final,
                                                 recovery([record["max_observed"]], final))
    return records


_FIELDS = ("opt", "problem", "noise", "sched", "seed")


def _match(keys, **fixed) -> list[tuple]:
    """The run keys whose fields have the given values (a list or tuple: any of them)."""
    want = {_FIELDS.index(name): value if isinstance(value, (list, tuple)) else (value,)
            for name, value in fixed.items()}
    return [k for k in keys if all(k[i] in allowed for i, allowed in want.items())]


def _values(runs, planned, column: int, **fixed) -> tuple[list[float], int]:
    """The finished runs' values of ``column`` (0 final loss, 1 recovery) among the planned
    runs matching ``fixed``, and how many were planned."""
    keys = _match(planned, **fixed)
    return [runs[k][column] for k in keys if k in runs], len(keys)


def _median_cell(values, asked: int) -> str:
    """``median [low, high]`` with n: the whole cell when all asked runs have finished,
    else :func:`~refimpl.experiments._records.cell`'s ``(n=k of N)``."""
    if not asked:
        return "none asked"
    if not values:
        return cell(values, asked, "")
    middle, low, high = median_ci(values)
    interval = f"[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "[n too small]"
    text = f"{fmt(middle)} {interval}"
    return f"{text} (n={len(values)})" if len(values) == asked else cell(values, asked, text)


def _summary(values, asked: int) -> dict:
    middle, low, high = median_ci(values)
    return {"median": middle, "low": low, "high": high, "n": len(values), "asked": asked}


def _tables(result, runs, planned, nets: list[str], noises) -> None:
    funcs = [fn.name for fn in FUNCTIONS]
    groups = {"networks": nets, "functions": funcs, "pooled": nets + funcs}
    rows, medians = [], {}
    for opt in OPTIMIZERS:
        for sched in SCHEDULERS:
            row = [opt, sched]
            for group, members in groups.items():
                values, asked = _values(runs, planned, 0, opt=opt, sched=sched, problem=members)
                row.append(_median_cell(values, asked))
                medians[f"{opt}|{sched}|{group}"] = _summary(values, asked)
            pooled, _ = _values(runs, planned, 0, opt=opt, sched=sched)
            rows.append([*row, PAPER_FINAL[sched], int(np.sum(~np.isfinite(pooled)))])
    result.tables.append(Table(
        "Median final loss [95% CI of the median] per base optimizer and scheduler (paper, "
        "pooled: GreedyLR lowest, 0.148 vs 0.232 / 0.226 / 0.249)",
        ["optimizer", "scheduler", *groups, "paper median", "diverged"], rows))
    rows, clean = [], {}
    for opt in OPTIMIZERS:
        for sched in SCHEDULERS:
            row = [opt, sched]
            for group, members in groups.items():
                values, asked = _values(runs, planned, 1, opt=opt, sched=sched,
                                        problem=members, noise="none")
                row.append(_median_cell(values, asked))
                clean[f"{opt}|{sched}|{group}"] = _summary(values, asked)
            row.append(_median_cell(*_values(runs, planned, 1, opt=opt, sched=sched)))
            rows.append([*row, PAPER_RECOVERY[sched]])
    result.tables.append(Table(
        "Median recovery (max observed loss / final loss) [95% CI] under clean conditions "
        "(noise none), as the paper's Table 12 reports it, and pooled over every noise type",
        ["optimizer", "scheduler", *(f"clean, {g}" for g in groups), "all noises, pooled",
         "paper (clean)"], rows))
    result.notes.append(CI_NOTE)
    result.data.update({"medians": medians, "recovery_clean": clean})
    _median_tables(result, runs, planned, nets, groups, noises)
    _paired_table(result, runs, planned, groups)


def _median_tables(result, runs, planned, nets, groups, noises) -> None:
    def median_text(**fixed) -> str:
        values, asked = _values(runs, planned, 0, **fixed)
        return cell(values, asked, fmt(float(np.median(values))) if values else "")

    rows = [[opt, problem, *(median_text(opt=opt, problem=problem, sched=sched)
                             for sched in SCHEDULERS)]
            for opt in OPTIMIZERS for problem in nets + [fn.name for fn in FUNCTIONS]]
    result.tables.append(Table("Median final loss per problem (all noise types)",
                               ["optimizer", "problem", *SCHEDULERS], rows))
    rows = [[opt, group, noise, *(median_text(opt=opt, problem=members, noise=noise,
                                              sched=sched) for sched in SCHEDULERS)]
            for opt in OPTIMIZERS for group, members in groups.items()
            if members and (group != "pooled" or nets) for noise in noises]
    result.tables.append(Table("Median final loss per noise type",
                               ["optimizer", "problems", "noise", *SCHEDULERS], rows))


def _paired_table(result, runs, planned, groups) -> None:
    rows = []
    for opt in OPTIMIZERS:
        for group, members in groups.items():
            greedy_keys = _match(planned, opt=opt, problem=members, sched="greedy")
            if group == "pooled" or not greedy_keys:
                continue
            for baseline in SCHEDULERS[1:]:
                pairs = [(runs[k][0], runs[k[:3] + (baseline,) + k[4:]][0]) for k in greedy_keys
                         if k in runs and k[:3] + (baseline,) + k[4:] in runs]
                g, b = np.asarray(pairs, dtype=np.float64).reshape(-1, 2).T
                tie = (g == b) | np.isclose(g, b, rtol=1e-9, atol=0.0)
                share = (lambda mask: float(np.mean(mask))) if len(g) else (lambda _: math.nan)
                rows.append([opt, group, baseline, share(~tie & (g < b)), share(tie),
                             share(~tie & (g > b)),
                             cell(pairs, len(greedy_keys), str(len(pairs)))])
    result.tables.append(Table(
        "Paired comparison per (problem, noise, seed) cell: share where GreedyLR's final loss "
        "is lower / equal (rel. 1e-9) / higher", ["optimizer", "problems", "baseline", "lower",
                                                  "equal", "higher", "cells"], rows))


def _figure(runs, problems, out, figures) -> None:
    """Per problem, each scheduler's median final loss over the best scheduler's (1 = best);
    blank where a problem has no finished run."""
    fig, axes = new_figure(len(OPTIMIZERS), width=max(5.5, 0.7 * len(problems)))
    for ax, opt in zip(axes, OPTIMIZERS):
        med = np.full((len(SCHEDULERS), len(problems)), np.nan)
        for i, sched in enumerate(SCHEDULERS):
            for j, problem in enumerate(problems):
                values = [v[0] for k, v in runs.items()
                          if k[0] == opt and k[1] == problem and k[3] == sched]
                if values:
                    med[i, j] = np.median(values)
        with np.errstate(divide="ignore", invalid="ignore"):
            best = np.min(np.where(np.isnan(med), np.inf, med), axis=0)
            ratio = med / best
        image = ax.imshow(np.log10(ratio), cmap="viridis", aspect="auto", vmin=0)
        for (i, j), value in np.ndenumerate(ratio):
            label = "no runs" if np.isnan(med[i, j]) else f"{value:.3g}"
            ax.text(j, i, label, ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(len(problems)), problems, rotation=30)
        ax.set_yticks(range(len(SCHEDULERS)), SCHEDULERS)
        ax.set_title(f"{opt}: median final loss / best median")
        fig.colorbar(image, ax=ax, label="log10 ratio")
    save_figure(fig, out, "results_greedy_robustness", figures)
