"""Measurements, each a command that prints its method beside its numbers.

* :mod:`refimpl.bench.epochs` -- ``refimpl bench``: training steps and epochs of every backend
  against PyTorch CPU, interleaved, with ratios, sgemm-peak fractions and peak memory.
* :mod:`refimpl.bench.profile` -- ``refimpl bench --profile``: where a step's time goes, per
  layer and phase.
* :mod:`refimpl.bench.pinn` -- ``refimpl bench --pinn``: the Helmholtz PINN's loss and gradients
  against torch autograd's double backward, float64 and float32, with ratios.
* :mod:`refimpl.bench.sweep` -- ``python -m refimpl.bench.sweep``: sweep throughput on 1 and N
  Dask workers against a plain process pool.
* :mod:`refimpl.bench.conv` -- ``python -m refimpl.bench.conv``: each conv layer of a model on
  every numba path (im2col, Winograd, direct) and PyTorch, with GFLOPS, effective GFLOPS
  (direct-convolution operations per second) and ratios to im2col.
"""

from refimpl.bench.epochs import main

__all__ = ["main"]
