"""Closed forms of E[phi(u) psi(v)], (u, v) ~ N(0, [[a, c], [c, b]]), written out for the tests.

These are the independent truths the tests compare tensorprog against (THEORY.md section 5);
they share nothing with the package's own rule table.  Scalar versions (plain floats).
"""
import math


def corr(a, b, c):
    """c / sqrt(a b) clamped to [-1, 1]; 0 when a variance is 0."""
    return 0.0 if a * b <= 0 else min(1.0, max(-1.0, c / math.sqrt(a * b)))


def relu_relu(a, b, c):
    """Arc-cosine kernel of order 1: sqrt(ab)/(2 pi) (sin t + (pi - t) cos t), t = acos(rho)."""
    t = math.acos(corr(a, b, c))
    return math.sqrt(a * b) / (2 * math.pi) * (math.sin(t) + (math.pi - t) * math.cos(t))


def step_step(a, b, c):
    """(pi - t) / (2 pi); with step(0) = 1/2 this is also right at zero variance (rho = 0)."""
    return (math.pi - math.acos(corr(a, b, c))) / (2 * math.pi)


def erf_erf(a, b, c):
    """(2/pi) asin(2c / sqrt((1 + 2a)(1 + 2b)))."""
    return 2 / math.pi * math.asin(2 * c / math.sqrt((1 + 2 * a) * (1 + 2 * b)))


def erfp_erfp(a, b, c):
    """E[erf'(u) erf'(v)] = (4/pi) / sqrt((1 + 2a)(1 + 2b) - 4c^2)."""
    return 4 / math.pi / math.sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * c * c)


def gelu_gelu(a, b, c):
    """c/4 + c/(2 pi) asin(c / sqrt((1+a)(1+b))) + (ab + c^2 (1/(1+a) + 1/(1+b) - 1)) / (2 pi sqrt(D))."""
    D = (1 + a) * (1 + b) - c * c
    return (c / 4 + c / (2 * math.pi) * math.asin(c / math.sqrt((1 + a) * (1 + b)))
            + (a * b + c * c * (1 / (1 + a) + 1 / (1 + b) - 1)) / (2 * math.pi * math.sqrt(D)))
