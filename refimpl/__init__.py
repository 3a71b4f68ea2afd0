"""refimpl -- a readable, autodiff-free NumPy reference trainer for MLPs and CNNs.

The oracle (pure NumPy) lives here; fast Numba/CUDA versions of the same ops live in the
sub-package ``refimpl.kernels``. See README.md for a tour.
"""

__version__ = "0.1.0"
