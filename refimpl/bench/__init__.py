"""Measurements, each a command that prints its method beside its numbers.

* :mod:`refimpl.bench.epochs` -- ``refimpl bench``: training steps and epochs of every backend
  against PyTorch CPU, interleaved, with ratios, sgemm-peak fractions and peak memory.
* :mod:`refimpl.bench.profile` -- ``refimpl bench --profile``: where a step's time goes, per
  layer and phase.
* :mod:`refimpl.bench.sweep` -- ``python -m refimpl.bench.sweep``: sweep throughput on 1 and N
  Dask workers against a plain process pool.
"""

from refimpl.bench.epochs import main

__all__ = ["main"]
