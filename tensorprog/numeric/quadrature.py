"""Quadrature rules for Gaussian expectations E[F(m + L z)], z ~ N(0, I_d).

* 1-D: Gauss-Legendre on [-Z, Z] (Z = 12, the Gaussian mass beyond is < 1e-32), split at the kinks
  of F, so kinked integrands (relu, step, |x| of a shifted argument) converge exponentially,
  unlike Gauss-Hermite's 1/q (PERFORMANCE_NOTES);
* d-D smooth: tensor Gauss-Hermite (probabilists') rules;
* 2-D kinked with kinks along rays through the mean (functions of linear forms of z): polar
  coordinates, Gauss-Legendre in the angle split at the kink angles, and a generalised
  Gauss-Laguerre rule in the radius (weight r exp(-r^2/2)).

Every rule is used at two orders; the difference is the error estimate.
"""
from __future__ import annotations

import functools
import math

import numpy as np

ZMAX = 12.0


@functools.lru_cache(maxsize=64)
def gauss_legendre(q):
    x, w = np.polynomial.legendre.leggauss(q)
    return x, w


@functools.lru_cache(maxsize=64)
def gauss_hermite(q):
    """Nodes and weights with sum_k w_k f(x_k) ~= E f(z), z ~ N(0, 1)."""
    x, w = np.polynomial.hermite_e.hermegauss(q)
    return x, w / math.sqrt(2 * math.pi)


@functools.lru_cache(maxsize=16)
def tensor_gauss_hermite(q, d):
    """Nodes (Q, d) and weights (Q,) of the d-fold tensor rule."""
    x, w = gauss_hermite(q)
    grids = np.meshgrid(*([x] * d), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    wg = np.meshgrid(*([w] * d), indexing="ij")
    weights = np.prod(np.stack([g.ravel() for g in wg], axis=1), axis=1)
    return nodes, weights


def piecewise_legendre_1d(breaks, q):
    """Nodes (Q,) and weights (Q,) on [-ZMAX, ZMAX] split at ``breaks``, including the N(0,1) density."""
    pts = sorted({-ZMAX, ZMAX} | {float(b) for b in breaks if -ZMAX < b < ZMAX})
    x, w = gauss_legendre(q)
    nodes, weights = [], []
    for a, b in zip(pts[:-1], pts[1:]):
        half = 0.5 * (b - a)
        z = a + half * (x + 1.0)
        nodes.append(z)
        weights.append(half * w * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    return np.concatenate(nodes), np.concatenate(weights)


@functools.lru_cache(maxsize=16)
def radial_rule(q):
    """Nodes r_k, weights w_k with sum w_k g(r_k) ~= int_0^inf g(r) r exp(-r^2/2) dr.

    With s = r^2 / 2 this is int_0^inf g(sqrt(2 s)) exp(-s) ds: Gauss-Laguerre.
    """
    s, w = np.polynomial.laguerre.laggauss(q)
    return np.sqrt(2.0 * s), w


def polar_2d(angles, q_angle, q_radius):
    """Nodes (Q, 2) and weights (Q,) for E f(z), z ~ N(0, I_2), exact in the angle between kink rays.

    ``angles``: the directions (in [0, 2 pi)) along which f has kinks.
    """
    pts = sorted({0.0, 2 * math.pi} | {float(a) % (2 * math.pi) for a in angles})
    x, w = gauss_legendre(q_angle)
    r, wr = radial_rule(q_radius)
    nodes, weights = [], []
    for a, b in zip(pts[:-1], pts[1:]):
        if b - a < 1e-15:
            continue
        half = 0.5 * (b - a)
        t = a + half * (x + 1.0)
        wt = half * w / (2 * math.pi)
        rr, tt = np.meshgrid(r, t, indexing="ij")
        ww = np.outer(wr, wt)
        nodes.append(np.stack([(rr * np.cos(tt)).ravel(), (rr * np.sin(tt)).ravel()], axis=1))
        weights.append(ww.ravel())
    return np.concatenate(nodes), np.concatenate(weights)
