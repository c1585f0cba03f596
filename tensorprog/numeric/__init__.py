"""Numeric backend: numba kernels, quadrature, series and Monte Carlo evaluation of limits."""
