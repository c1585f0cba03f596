"""Closed forms of E[phi(u) psi(v)], (u, v) ~ N(0, [[a, c], [c, b]]), written out for the tests.

These are the independent truths the tests compare tensorprog against (docs/theory.md, "Moment: closed forms");
they share nothing with the package's own rule table.  numpy expressions: a, b, c may be floats or
broadcasting arrays (all pairs of a kernel at once).  Where no closed form exists, ``integrate2``
integrates by nested Gauss-Legendre quadrature, graded at the turning points.
"""
import math

import numpy as np


def angle(a, b, c):
    """theta = acos(c / sqrt(ab)), computed as atan2(sqrt(ab - c^2), c) so that it is exactly 0 for
    c = a = b; pi/2 when a variance is 0.  Returns (theta, ab)."""
    ab = a * b
    return np.where(ab > 0, np.arctan2(np.sqrt(np.maximum(ab - c * c, 0.0)), c), np.pi / 2), ab


def relu_relu(a, b, c):
    """Arc-cosine kernel of order 1: sqrt(ab)/(2 pi) (sin t + (pi - t) cos t), t = theta."""
    t, ab = angle(a, b, c)
    return (np.sqrt(np.maximum(ab - c * c, 0.0)) + (np.pi - t) * c) / (2 * np.pi)


def step_step(a, b, c):
    """(pi - t) / (2 pi); with step(0) = 1/2 this is also right at zero variance (t = pi/2)."""
    return (np.pi - angle(a, b, c)[0]) / (2 * np.pi)


def erf_erf(a, b, c):
    """(2/pi) asin(2c / sqrt((1 + 2a)(1 + 2b)))."""
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * a) * (1 + 2 * b)))


def erfp_erfp(a, b, c):
    """E[erf'(u) erf'(v)] = (4/pi) / sqrt((1 + 2a)(1 + 2b) - 4c^2)."""
    return 4 / np.pi / np.sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * c * c)


def gelu_gelu(a, b, c):
    """c/4 + c/(2 pi) asin(c / sqrt((1+a)(1+b))) + (ab + c^2 (1/(1+a) + 1/(1+b) - 1)) / (2 pi sqrt(D))."""
    D = (1 + a) * (1 + b) - c * c
    return (c / 4 + c / (2 * np.pi) * np.arcsin(c / np.sqrt((1 + a) * (1 + b)))
            + (a * b + c * c * (1 / (1 + a) + 1 / (1 + b) - 1)) / (2 * np.pi * np.sqrt(D)))


# ------------------------------------------------------------------ independent 2-d integration

GRADING = np.array([0.0, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.5, 12.5])
XL, WL = np.polynomial.legendre.leggauss(20)


def graded_rule(center):
    """Gauss-Legendre on pieces of [-12.5, 12.5] graded towards ``center`` (where a steep function
    turns), including the N(0, 1) density: (nodes, weights)."""
    edges = np.unique(np.clip(np.concatenate([center - GRADING, center + GRADING, [-12.5, 12.5]]), -12.5, 12.5))
    a, b = edges[:-1, None], edges[1:, None]
    z = (0.5 * (b - a) * (XL + 1) + a).ravel()
    w = (0.5 * (b - a) * WL).ravel()
    return z, w * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def integrate2(f, g, a, b, c):
    """E[f(u) g(v)], (u, v) ~ N(0, [[a, c], [c, b]]), nested: u = sqrt(a) z, then v given u,
    v = (c/a) u + s z' with s^2 = b - c^2/a; each level graded towards the zero of its argument."""
    z, wz = graded_rule(0.0)
    if a <= 0:
        return float(f(np.zeros(1))[0] * np.sum(wz * g(math.sqrt(max(b, 0)) * z)))
    s = math.sqrt(max(b - c * c / a, 0.0))
    total = 0.0
    for zi, wi in zip(z, wz):
        u = math.sqrt(a) * zi
        m = (c / a) * u
        if s == 0:
            total += wi * f(np.array([u]))[0] * g(np.array([m]))[0]
            continue
        z2, w2 = graded_rule(-m / s)
        total += wi * f(np.array([u]))[0] * np.sum(w2 * g(m + s * z2))
    return float(total)
