"""Monte Carlo Gaussian expectations with standard errors, reproducible for any thread count.

For every grid entry g we estimate E f_e(z), z = mu_g + L_g xi, xi ~ N(0, I_d), by the sample mean
of n draws, and its standard error se = sqrt(s^2 / n) with s^2 the unbiased sample variance.

Random numbers. xi is a pure function of (seed, sample index i, dimension j): the Philox4x32-10
counter-based generator (Salmon et al., SC'11; the Random123 reference, which passes TestU01's
BigCrush) is applied to the counter (i mod 2^32, i div 2^32, j div 4, 0) under the key
(seed mod 2^32, seed div 2^32). Its four 32-bit output words w0..w3 become uniforms
u = (w + 1/2) 2^-32 in (0, 1), and two Box-Muller pairs give dimensions 4q .. 4q+3:
xi = sqrt(-2 ln u0) (cos 2 pi u1, sin 2 pi u1), sqrt(-2 ln u2) (cos 2 pi u3, sin 2 pi u3).
With 32-bit uniforms the radius of a pair is capped at sqrt(-2 ln 2^-33) = 6.76 (its true tail
beyond that has probability 2^-33 = 1.2e-10), so |xi| <= 6.76 (true tail probability 1.4e-11).
Every grid entry sees the same xi (common random numbers), so differences between entries are
estimated with correlated, hence smaller, errors.

Reduction order. Samples are cut into work items of ITEM consecutive indices, and items into
blocks of ``block_length(d)`` samples (the length of the structure-of-arrays buffers). Each
block's mean and centred sum of squares M2 are computed serially within the block; blocks are
merged in order into their item, and items in order into the total, with Chan's update
(n = na + nb, delta = mean_b - mean_a, mean = mean_a + delta nb / n, M2 = M2a + M2b + delta^2 na nb
/ n). Threads only decide which item is computed where, never the order of any floating-point
operation, so results are bit-identical for any NUMBA_NUM_THREADS.

Integrands are generated code (``mc_kernel_source``), loaded through ``cache.load_generated`` so
numba's on-disk cache keeps them compiled across processes.
"""
import ast
import hashlib
import math
import pathlib
import re

import numpy as np
from numba import prange

from .cache import njit

from tensorprog.numeric import cache, special

ITEM = 8192
_CHUNK_CELLS = 1 << 20
_MAX_CHUNK_ITEMS = 64

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)
_TWO_POW_31 = 2147483648.0
_TWO_POW_M32 = 2.0 ** -32

_fast = dict(cache=True, error_model="numpy", fastmath={"contract"})


@njit(error_model="numpy", inline="always")
def _philox_round(c0, c1, c2, c3, k0, k1):
    p0 = _PHILOX_M0 * c0
    p1 = _PHILOX_M1 * c2
    return (p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32


@njit(error_model="numpy", inline="always")
def _bump(k0, k1):
    return (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32


@njit(cache=True, error_model="numpy", inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 block function: 10 rounds of
    (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)),
    M0 = 0xD2511F53, M1 = 0xCD9E8D57, with the key bumped by (0x9E3779B9, 0xBB67AE85) mod 2^32
    between rounds. Arguments and the returned four words are 32-bit values held in uint64 (the
    32 x 32 -> 64-bit products then map onto SIMD vpmuludq). The rounds are written out because
    numba's loop form does not vectorise across samples."""
    c0 = np.uint64(c0) & _MASK32
    c1 = np.uint64(c1) & _MASK32
    c2 = np.uint64(c2) & _MASK32
    c3 = np.uint64(c3) & _MASK32
    k0 = np.uint64(k0) & _MASK32
    k1 = np.uint64(k1) & _MASK32
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    k0, k1 = _bump(k0, k1)
    return _philox_round(c0, c1, c2, c3, k0, k1)


@njit(**_fast)
def _open_unit(w):
    """(w + 1/2) 2^-32 for a 32-bit word w: a uniform in (0, 1), never 0 or 1. The detour through
    int32 keeps the conversion vectorisable (AVX2 has no 64-bit integer to double instruction)."""
    return (float(np.int32(np.int64(w) - 2147483648)) + (_TWO_POW_31 + 0.5)) * _TWO_POW_M32


@njit(**_fast)
def _box_muller(u_radius, u_angle):
    """sqrt(-2 ln u_radius) (cos 2 pi u_angle, sin 2 pi u_angle): two independent N(0, 1).
    special's branch-free log and sincos2pi let the sample loop vectorise (libm calls do not)."""
    r = math.sqrt(-2.0 * special.log(u_radius))
    s, c = special.sincos2pi(u_angle)
    return r * c, r * s


@njit(**_fast)
def fill_standard_normals(seed, first, n, out):
    """out[j, b] = xi_j(seed, first + b) for b < n and all rows j of ``out`` (whose row count must
    be a multiple of 4): the module's counter-based standard normals. One loop over samples per
    group of four rows, with the generator and the transform fused, vectorises across samples
    (writing uniforms first and transforming them in place ran four times slower)."""
    key = np.uint64(seed)
    k0 = key & _MASK32
    k1 = key >> _SHIFT32
    for q in range(out.shape[0] // 4):
        j = 4 * q
        for b in range(n):
            i = np.uint64(first + b)
            w0, w1, w2, w3 = philox4x32_10(i & _MASK32, i >> _SHIFT32, np.uint64(q),
                                           np.uint64(0), k0, k1)
            x0, x1 = _box_muller(_open_unit(w0), _open_unit(w1))
            x2, x3 = _box_muller(_open_unit(w2), _open_unit(w3))
            out[j, b] = x0
            out[j + 1, b] = x1
            out[j + 2, b] = x2
            out[j + 3, b] = x3


@njit(**_fast)
def block_moments(f, n):
    """(mean, M2) of f[0:n]: mean = sum f / n, M2 = sum (f - mean)^2, each summed in a fixed
    order with four interleaved partial sums (a fixed order keeps results reproducible; four sums
    keep the adds from serialising)."""
    n4 = n - n % 4
    a0 = a1 = a2 = a3 = 0.0
    for b in range(0, n4, 4):
        a0 += f[b]
        a1 += f[b + 1]
        a2 += f[b + 2]
        a3 += f[b + 3]
    for b in range(n4, n):
        a0 += f[b]
    mean = ((a0 + a1) + (a2 + a3)) / n
    a0 = a1 = a2 = a3 = 0.0
    for b in range(0, n4, 4):
        d0 = f[b] - mean
        d1 = f[b + 1] - mean
        d2 = f[b + 2] - mean
        d3 = f[b + 3] - mean
        a0 += d0 * d0
        a1 += d1 * d1
        a2 += d2 * d2
        a3 += d3 * d3
    for b in range(n4, n):
        d0 = f[b] - mean
        a0 += d0 * d0
    return mean, (a0 + a1) + (a2 + a3)


@njit(**_fast)
def merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan's pairwise update: the (mean, M2) of the union of two samples of sizes n_a, n_b."""
    n = float(n_a) + float(n_b)
    delta = mean_b - mean_a
    return mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (float(n_a) * n_b / n)


@njit(**_fast)
def chunk_items(cells, n_items):
    """Work items evaluated per parallel pass when each item yields ``cells`` (grid entries x
    outputs) partial moments: bounds the partials to ~_CHUNK_CELLS doubles per array. It affects
    memory and scheduling only, never the result."""
    k = max(2, min(_MAX_CHUNK_ITEMS, _CHUNK_CELLS // max(cells, 1)))
    return max(1, min(k, n_items))


def block_length(d):
    """Samples per structure-of-arrays block in d dimensions: 512, halved for wide blocks so the
    normals and z buffers (2 x 4 ceil(d/4) x length doubles) stay within about 128 KiB (L2)."""
    rows = 4 * ((d + 3) // 4)
    length = 512
    while length > 64 and rows * length > 8192:
        length //= 2
    return length


@njit(**_fast)
def _words_block(seed, first, n, group, out):
    key = np.uint64(seed)
    for b in range(n):
        i = np.uint64(first + b)
        w = philox4x32_10(i & _MASK32, i >> _SHIFT32, np.uint64(group), np.uint64(0),
                          key & _MASK32, key >> _SHIFT32)
        for c in range(4):
            out[b, c] = w[c]


def random_words(seed, n, first=0, group=0):
    """(n, 4) uint32 array: row b is Philox4x32-10 of the counter (i mod 2^32, i div 2^32, group,
    0), i = first + b, under the key (seed mod 2^32, seed div 2^32)."""
    out = np.empty((n, 4), dtype=np.uint64)
    _words_block(np.uint64(_check_seed(seed)), first, n, group, out)
    return out.astype(np.uint32)


def standard_normals(seed, n, d, first=0):
    """(n, d) array whose row b holds xi_0..xi_{d-1} for sample index first + b: exactly the
    standard normals every Monte Carlo kernel of this module draws for that seed."""
    out = np.empty((4 * ((d + 3) // 4), n))
    fill_standard_normals(np.uint64(_check_seed(seed)), first, n, out)
    return np.ascontiguousarray(out[:d].T)


def _check_seed(seed):
    seed = int(seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


@njit(cache=True, parallel=True, error_model="numpy", fastmath={"contract"})
def _cholesky_psd(S, rtol, L, worst):
    G, d, _ = S.shape
    for g in prange(G):
        lowest = 0.0
        for j in range(d):
            diag = S[g, j, j]
            v = diag
            for k in range(j):
                v -= L[g, j, k] * L[g, j, k]
            scale = max(diag, 0.0)
            if scale > 0.0:
                lowest = min(lowest, v / scale)
            elif v < 0.0:
                lowest = -math.inf
            if v <= rtol * scale:
                for i in range(j, d):
                    L[g, i, j] = 0.0
                continue
            pivot = math.sqrt(v)
            L[g, j, j] = pivot
            for i in range(j + 1, d):
                s = S[g, i, j]
                for k in range(j):
                    s -= L[g, i, k] * L[g, j, k]
                L[g, i, j] = s / pivot
        worst[g] = lowest


def cholesky_psd(Sigma, rtol=1e-12, negative_tol=1e-8):
    """Lower-triangular L with L L^T = Sigma for symmetric positive *semi*-definite Sigma of shape
    (G, d, d) or (d, d); only the lower triangle of Sigma is read.

    Cholesky-Banachiewicz: v_j = S_jj - sum_{k<j} L_jk^2; if v_j <= rtol * S_jj the pivot counts
    as zero and column j of L is set to zero, else L_jj = sqrt(v_j) and
    L_ij = (S_ij - sum_{k<j} L_ik L_jk) / L_jj. A zero pivot of an exactly PSD matrix has a zero
    Schur-complement column, so nothing is lost; a dropped pivot v_j <= rtol S_jj changes
    (L L^T)_jj by v_j and (L L^T)_ij, i > j, by at most sqrt(v_i v_j) (Cauchy-Schwarz in the Schur
    complement). The default rtol makes repeated inputs exactly degenerate (z_i == z_j) rather
    than separated by rounding noise. Raises ValueError if some v_j < -negative_tol * S_jj (Sigma
    is not PSD).
    """
    S = np.asarray(Sigma, dtype=np.float64)
    single = S.ndim == 2
    if single:
        S = S[None]
    if S.ndim != 3 or S.shape[1] != S.shape[2]:
        raise ValueError(f"Sigma must have shape (G, d, d) or (d, d), got {np.shape(Sigma)}")
    S = np.ascontiguousarray(S)
    L = np.zeros_like(S)
    worst = np.empty(S.shape[0])
    _cholesky_psd(S, float(rtol), L, worst)
    bad = np.flatnonzero(worst < -negative_tol)
    if bad.size:
        raise ValueError(f"covariance {int(bad[0])} is not positive semi-definite "
                         f"(relative pivot {worst[bad[0]]:.3g})")
    return L[0] if single else L


def _engine_fingerprint():
    """Hash of this module's and special.py's source: numba does not notice when a helper that a
    cached kernel calls changes, so the helpers' source is made part of every generated file's
    name."""
    h = hashlib.sha256()
    here = pathlib.Path(__file__).resolve().parent
    for name in ("montecarlo.py", "special.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


_FINGERPRINT = _engine_fingerprint()
_ALLOWED_NAMES = {"math", "np", "special", "abs", "min", "max", "pow", "float"}
_VAR = re.compile(r"([zp])(\d+)\Z")

_KERNEL_TEMPLATE = '''\
"""Generated by tensorprog.numeric.montecarlo.mc_kernel_source: Monte Carlo E f_e(mu + L xi)."""
# engine {fingerprint}
import math

import numpy as np
from numba import njit, prange

from tensorprog.numeric import special
from tensorprog.numeric.montecarlo import (block_moments, chunk_items, fill_standard_normals,
                                           merge_moments)
{prelude}
D = {d}
ROWS = {rows}
N_OUT = {n_out}
B = {block}
ITEM = {item}


@njit(cache=True, error_model="numpy", fastmath={{"contract"}})
def _integrand_block(xi, n, L, mu, params, g, z, f):
    for k in range(D):
        m = mu[g, k]
        for b in range(n):
            z[k, b] = m
        for j in range(k + 1):
            c = L[g, k, j]
            if c != 0.0:
                for b in range(n):
                    z[k, b] += c * xi[j, b]
{param_loads}    for b in range(n):
{z_loads}{f_stores}

@njit(cache=True, parallel=True, error_model="numpy", fastmath={{"contract"}})
def {name}(seed, n_samples, L, mu, params, out_mean, out_se):
    G = L.shape[0]
    n_items = (n_samples + ITEM - 1) // ITEM
    K = chunk_items(G * N_OUT, n_items)
    part_mean = np.empty((K, G, N_OUT))
    part_m2 = np.empty((K, G, N_OUT))
    mean = np.zeros((G, N_OUT))
    m2 = np.zeros((G, N_OUT))
    for first_item in range(0, n_items, K):
        k_here = min(K, n_items - first_item)
        for i in prange(k_here):
            item_start = (first_item + i) * ITEM
            item_end = min(item_start + ITEM, n_samples)
            xi = np.empty((ROWS, B))
            z = np.empty((D, B))
            f = np.empty((N_OUT, B))
            for start in range(item_start, item_end, B):
                n = min(B, item_end - start)
                fill_standard_normals(seed, start, n, xi)
                for g in range(G):
                    _integrand_block(xi, n, L, mu, params, g, z, f)
                    for e in range(N_OUT):
                        bm, bm2 = block_moments(f[e], n)
                        if start > item_start:
                            bm, bm2 = merge_moments(start - item_start, part_mean[i, g, e],
                                                    part_m2[i, g, e], n, bm, bm2)
                        part_mean[i, g, e] = bm
                        part_m2[i, g, e] = bm2
        # Serial: merging costs ~1e-5 of evaluating an item, and a second parallel region per
        # pass would cost a thread wake-up.
        for g in range(G):
            for i2 in range(k_here):
                n_before = (first_item + i2) * ITEM
                n_item = min(ITEM, n_samples - n_before)
                for e in range(N_OUT):
                    tm, tm2 = merge_moments(n_before, mean[g, e], m2[g, e],
                                            n_item, part_mean[i2, g, e], part_m2[i2, g, e])
                    mean[g, e] = tm
                    m2[g, e] = tm2
    for g in range(G):
        for e in range(N_OUT):
            out_mean[g, e] = mean[g, e]
            out_se[g, e] = math.sqrt(m2[g, e] / (n_samples * (n_samples - 1.0)))
'''


# Names of the kernel module that a prelude must not rebind (re-importing math, np, numba's njit
# and prange or special is harmless).
_RESERVED_NAMES = {"block_moments", "chunk_items", "fill_standard_normals", "merge_moments", "D",
                   "ROWS", "N_OUT", "B", "ITEM", "_integrand_block"}


def _prelude_names(prelude):
    """Names bound at the top level of ``prelude`` (definitions, assignments, imports)."""
    try:
        tree = ast.parse(prelude)
    except SyntaxError as exc:
        raise ValueError(f"prelude is not valid Python: {exc.msg} (line {exc.lineno})") from None
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _expression_variables(expr, d, n_params, allowed):
    """Parse one integrand expression; return the z and p indices it reads. Only z0..z{d-1},
    p0..p{n_params-1} and the names in ``allowed`` may be named."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"integrand {expr!r} is not a Python expression: {exc.msg}") from None
    used = {"z": set(), "p": set()}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name):
            continue
        match = _VAR.match(node.id)
        if match:
            kind, index = match.group(1), int(match.group(2))
            limit = d if kind == "z" else n_params
            if index >= limit or match.group(2) != str(index):
                raise ValueError(f"{node.id} in {expr!r} is out of range "
                                 f"(d={d}, n_params={n_params})")
            used[kind].add(index)
        elif node.id not in allowed:
            raise ValueError(f"unknown name {node.id!r} in integrand {expr!r}")
    return used


def mc_kernel_source(name, d, exprs, n_params=0, prelude=""):
    """Source of a module defining the parallel njit kernel
    ``name(seed, n_samples, L, mu, params, out_mean, out_se)``.

    For every grid entry g < G it sets out_mean[g, e] to the mean of f_e(z, p) over samples
    i < n_samples and out_se[g, e] to its standard error, where z_k = mu[g, k] +
    sum_{j<=k} L[g, k, j] xi_j(seed, i) and p = params[g]. ``exprs`` are Python expressions in
    z0..z{d-1}, p0..p{n_params-1}, the modules ``math``, ``np`` and ``special``
    (tensorprog.numeric.special, whose branch-free functions keep the sample loop vectorised) and
    the builtins abs, min, max, pow and float, plus any name that ``prelude`` binds: module-level
    code (helper functions, imports) placed before the kernels. Shapes: L (G, d, d) lower
    triangular (only its lower triangle is read), mu (G, d), params (G, n_params), out_mean and
    out_se (G, len(exprs)); all float64 and C-contiguous; seed a uint64; n_samples >= 2.
    """
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"kernel name must be a public identifier, got {name!r}")
    if d < 1 or n_params < 0 or not exprs:
        raise ValueError("need d >= 1, n_params >= 0 and at least one expression")
    defined = _prelude_names(prelude)
    clash = defined & (_RESERVED_NAMES | {name})
    if clash:
        raise ValueError(f"prelude redefines names the kernel module needs: {sorted(clash)}")
    allowed = _ALLOWED_NAMES | defined
    z_used, p_used = set(), set()
    for expr in exprs:
        used = _expression_variables(expr, d, n_params, allowed)
        z_used |= used["z"]
        p_used |= used["p"]
    param_loads = "".join(f"    p{k} = params[g, {k}]\n" for k in sorted(p_used))
    z_loads = "".join(f"        z{k} = z[{k}, b]\n" for k in sorted(z_used))
    f_stores = "".join(f"        f[{e}, b] = {expr.strip()}\n" for e, expr in enumerate(exprs))
    return _KERNEL_TEMPLATE.format(fingerprint=_FINGERPRINT, d=d, rows=4 * ((d + 3) // 4),
                                   n_out=len(exprs), block=block_length(d), item=ITEM, name=name,
                                   param_loads=param_loads, z_loads=z_loads, f_stores=f_stores,
                                   prelude=f"\n\n{prelude.strip()}\n\n" if prelude.strip() else "")


def mc_expectation(exprs, L, mu=None, params=None, n_samples=1 << 20, seed=0, prelude=""):
    """Monte Carlo estimates (mean, se) of E f_e(z), z = mu_g + L_g xi, xi ~ N(0, I), for every
    grid entry g; see ``mc_kernel_source`` for ``exprs`` and ``prelude``. L has shape (G, d, d),
    or (d, d) for a single entry, in which case the results have shape (len(exprs),) instead of
    (G, len(exprs)); mu defaults to zeros, params to an empty (G, 0) array."""
    L = np.asarray(L, dtype=np.float64)
    single = L.ndim == 2
    if single:
        L = L[None]
    if L.ndim != 3 or L.shape[1] != L.shape[2]:
        raise ValueError(f"L must have shape (G, d, d) or (d, d), got {L.shape}")
    G, d = L.shape[0], L.shape[1]
    mu = np.zeros((G, d)) if mu is None else np.asarray(mu, dtype=np.float64).reshape(G, d)
    if params is None or np.size(params) == 0:
        params = np.zeros((G, 0))
    else:
        params = np.asarray(params, dtype=np.float64).reshape(G, -1)
    if n_samples < 2:
        raise ValueError("n_samples must be at least 2 for a standard error")
    exprs = [exprs] if isinstance(exprs, str) else list(exprs)
    source = mc_kernel_source("mc_kernel", d, exprs, params.shape[1], prelude=prelude)
    module = cache.load_generated(source, stem="mc")
    out_mean = np.empty((G, len(exprs)))
    out_se = np.empty((G, len(exprs)))
    module.mc_kernel(np.uint64(_check_seed(seed)), int(n_samples), np.ascontiguousarray(L),
                     np.ascontiguousarray(mu), np.ascontiguousarray(params), out_mean, out_se)
    if single:
        return out_mean[0], out_se[0]
    return out_mean, out_se
