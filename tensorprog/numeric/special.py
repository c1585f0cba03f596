"""Branch-free float64 elementary and special functions for numba kernels.

This llvmlite has no SVML, so ``math.exp/log/acos/erf/...`` inside a numba loop are scalar libm
calls that stop LLVM from vectorising the loop.  The functions here are plain ``@njit``
float64 -> float64 functions built from +, *, fma, sqrt, division, integer bit manipulation and
selects (``a if c else b`` on already computed values), so LLVM inlines them into the caller
and the caller's loop vectorises.  Every branch of a piecewise definition is computed and the
result is selected, so each call costs the sum of its pieces.

Accuracy: maximum relative error measured against mpmath (tests/test_special.py asserts
<= 4e-16 everywhere the result is a normal number): ~1.2e-16 for exp, expm1, log, log1p, sin,
cos, sincos2pi; ~1.7e-16 for erf; 2.2e-16 to 3.1e-16 for tanh, sigmoid, softplus, asin, acos,
atan, atan2, erfc and ndtr (erfc and ndtr keep it deep into the tail, down to the underflow
threshold).  Results are bit-identical between scalar and vectorised execution and independent
of the thread count (no reassociation).  Special values follow C99 unless stated:
``acos/asin`` of |x| > 1 and ``log`` of x < 0 are nan, ``log(0) = -inf``, ``exp`` underflows
gradually to 0 and overflows to inf, nan propagates.  ``sin/cos`` are accurate to a few ulp for
|x| <= 2**50 and return nan beyond (no Payne-Hanek reduction).

Coefficients: every polynomial / rational approximation below is a weighted minimax fit
computed once by the Remez exchange algorithm in mpmath at 50 significant digits, with the
weight chosen so that the equioscillating quantity is the relative error of the final function
value; the fitted interval and the fitted function are stated next to each table.  In the
constant splits ``*_HI + *_LO``, hi is the constant to 53 bits (42 for ln2, so that k ln2_hi is
exact) and lo the float64 rounding of the remainder.
"""
import math

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .cache import njit

_JIT = dict(cache=True, error_model='numpy', fastmath={'contract'})
# LLVM inlines a callee only below a size threshold; the erf family is above it, so it is
# inlined at the numba IR level instead (costs compile time, hence not used everywhere).
_JIT_FLAT = dict(_JIT, inline='always')


# ---------------------------------------------------------------------------------------------
# LLVM-level primitives (lowered inline, vectorisable)

@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with a single rounding (llvm.fma.f64)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d, d]),
                                            'llvm.fma.f64')
        return builder.call(fn, args)
    return sig, codegen


@intrinsic
def _f2i(typingctx, x):
    """Bit pattern of a float64 as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _i2f(typingctx, i):
    """float64 whose bit pattern is the int64 i."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


# ---------------------------------------------------------------------------------------------
# Constants

_SHIFT = 6755399441055744.0          # 1.5 * 2**52: x + _SHIFT rounds x to an integer
_SHIFT_BITS = 0x4338000000000000     # bit pattern of _SHIFT; its low bits hold that integer
_ABS_MASK = 0x7FFFFFFFFFFFFFFF
_SIGN_MASK = -0x8000000000000000
_INF = float('inf')
_NAN = float('nan')

_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471805598903         # 42 significant bits: k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 5.497923018708371e-14
_PIO2_HI = 1.5707963267948966
_PIO2_LO = 6.123233995736766e-17
_PIO4_HI = 0.7853981633974483
_PIO4_LO = 3.061616997868383e-17
_PI_HI = 3.141592653589793
_PI_LO = 1.2246467991473532e-16
_3PIO4_HI = 2.356194490192345
_3PIO4_LO = 9.184850993605148e-17
_PIO2_3 = -1.4973849048591698e-33    # pi/2 = _PIO2_HI + _PIO2_LO + _PIO2_3 (+ O(1e-50))
_TWO_OVER_PI = 0.6366197723675814
_TAN_PI8 = 0.41421356237309503
_TAN_3PI8 = 2.414213562373095
_INV_SQRT2_HI = 0.7071067811865475
_INV_SQRT2_LO = 6.268583589525109e-17
_INV_SQRTPI_HI = 0.5641895835477563
_INV_SQRTPI_LO = 7.66772980658294e-18
_TWO_OVER_SQRTPI = 1.1283791670955126

# e^r = 1 + r + r^2 Q(r), |r| <= ln2/2; weight: relative error of e^r - 1.  Error 2.6e-19.
_EXP_Q = (0.5, 0.16666666666666677, 0.041666666666666505, 0.008333333333321608,
          0.0013888888888962904, 0.0001984126988620792, 2.4801587171837843e-05,
          2.7557244104210024e-06, 2.755740294507623e-07, 2.51090813926449e-08,
          2.0875326999232324e-09)
# log(1+f) = 2 atanh(s) = 2s + s z T(z), s = f/(2+f), 0 <= z = s^2 <= (3 - 2 sqrt2)^2;
# weight: relative error of log(1+f).  Error 1.2e-18.
_LOG_T = (0.6666666666666735, 0.3999999999941109, 0.2857142874326281, 0.2222219847597695,
          0.18183569740149744, 0.15313903240366425, 0.14797507755000094)
# asin(s) = s + s z P(z), 0 <= z = s^2 <= 1/4; weight: relative error of asin(s).  Error 1.5e-17.
_ASIN_P = (0.1666666666666538, 0.075000000003435, 0.0446428568230944, 0.03038195934768367,
           0.022371753120178042, 0.01735977731500685, 0.013884535923561554,
           0.012173697862395758, 0.0065090098705417225, 0.019579039563760132,
           -0.016302263676602844, 0.03196466915842505)
# atan(t) = t + t z A(z), 0 <= z = t^2 <= tan(pi/8)^2; weight: relative error of atan(t).
# Error 1.2e-18.
_ATAN_A = (-0.333333333333332, 0.1999999999995404, -0.14285714280244108, 0.11111110785907305,
           -0.09090897829553457, 0.07692061510178497, -0.06663118896523962,
           0.05847997795374181, -0.05039794153198111, 0.03807698641593291,
           -0.017920787252261223)
# sin(r) = r + r z S(z), cos(r) = 1 - z/2 + z^2 C(z), 0 <= z = r^2 <= (pi/4)^2; weights:
# relative errors of sin(r) and cos(r).  Errors 3.4e-18 and 5.6e-20.
_SIN_S = (-0.16666666666666632, 0.008333333333322418, -0.00019841269829812378,
          2.755731369357156e-06, -2.5050758384146398e-08, 1.5896811783350334e-10)
_COS_C = (0.041666666666666595, -0.001388888888887305, 2.480158728884655e-05,
          -2.7557314177768137e-07, 2.0875700628955303e-09, -1.135852523040141e-11)
# sin(pi f/2) = f (pi/2 + z G(z)), cos(pi f/2) = 1 + z H(z), 0 <= z = f^2 <= 1/4; weights:
# relative errors of sin(pi f/2) and cos(pi f/2).  Errors 2.0e-21 and 3.9e-20.
_SINPI_G = (-0.6459640975062463, 0.07969262624616694, -0.004681754135315137,
            0.0001604411847295759, -3.5988427317577746e-06, 5.6919316084625715e-08,
            -6.628012718342034e-10)
_COSPI_H = (-1.2337005501361697, 0.2536695079010468, -0.02086348076331255,
            0.0009192602741908049, -2.5202036786598182e-05, 4.710609615928393e-07,
            -6.32119549502159e-09)
# erf(x) = x + x E(z), 0 <= z = x^2 <= 9/16; weight: relative error of erf(x).  Error 7.8e-19.
_ERF_E = (0.1283791670955126, -0.37612638903183715, 0.11283791670952478, -0.0268661706444019,
          0.0052239776151151605, -0.0008548326168588028, 0.0001205528875569601,
          -1.4924176069415002e-05, 1.6430379192956598e-06, -1.593752083276771e-07,
          1.1463463104175987e-08)
# erfcx(a) = exp(a^2) erfc(a) = N(a) / D(a), 1/2 <= a <= 5/2 (degrees 6 / 7); weight: relative
# error.  Error 3.6e-18 (2.2e-17 after rounding the coefficients to float64).
_ERFCX_AN = (1.0000000000833387, 1.4988829661447078, 1.1209087196169352, 0.5028983090601369,
             0.14096340415835656, 0.023346225343569366, 0.0018026542461906801)
_ERFCX_AD = (1.0, 2.6272621346093206, 3.0854565682630057, 2.1094539159448966,
             0.9121357554077828, 0.25144105426368624, 0.041380569267333384,
             0.0031951078332507405)
# a erfcx(a) = 1/sqrt(pi) + u N(u) / D(u), u = 1/a^2, 5/2 <= a <= 27.5 (degrees 6 / 7); weight:
# relative error of a erfcx(a).  Error 6.1e-19.
_ERFCX_BN = (-0.28209479177387686, -9.083686470655278, -104.00410394921171, -524.554890335156,
             -1168.3839636305997, -998.9526236595559, -214.25022082499092)
_ERFCX_BD = (1.0, 33.700830130658474, 415.4861943068333, 2369.474849019685, 6521.2132743915445,
             8225.127276833038, 4038.4414571867874, 499.59662668100725)


# ---------------------------------------------------------------------------------------------
# Internal helpers

@njit(**_JIT)
def _horner(c, x):
    """c[0] + c[1] x + ... + c[n] x^n by Horner's rule with fused multiply-adds."""
    s = c[len(c) - 1]
    for i in range(len(c) - 2, -1, -1):
        s = _fma(s, x, c[i])
    return s


@njit(**_JIT)
def _horner2(sel, c1, c2, x):
    """Horner's rule on the coefficients c1 where sel holds and c2 elsewhere (len(c1) = len(c2)).

    Selecting coefficients instead of results evaluates a two-piece approximation at the cost
    of one polynomial plus one blend per coefficient.
    """
    s = c1[len(c1) - 1] if sel else c2[len(c2) - 1]
    for i in range(len(c1) - 2, -1, -1):
        s = _fma(s, x, c1[i] if sel else c2[i])
    return s


@njit(**_JIT)
def _horner2_dd(sel, c1, c2, x):
    """_horner2 with its last three steps compensated (two-product, two-sum); returns (s, e)
    with the value s + e.  Those steps carry most of the rounding error of a sum of positive
    terms dominated by its middle terms.
    """
    n = len(c1)
    s = c1[n - 1] if sel else c2[n - 1]
    for i in range(n - 2, 2, -1):
        s = _fma(s, x, c1[i] if sel else c2[i])
    e = 0.0
    for i in range(2, -1, -1):
        p = s * x
        p_err = _fma(s, x, -p)
        s, s_err = _two_sum(p, c1[i] if sel else c2[i])
        e = _fma(e, x, p_err + s_err)
    return s, e


@njit(**_JIT)
def _copysign(a, b):
    """|a| with the sign bit of b."""
    return _i2f((_f2i(a) & _ABS_MASK) | (_f2i(b) & _SIGN_MASK))


@njit(**_JIT)
def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(**_JIT)
def _pow2(k):
    """2^k for integer -1022 <= k <= 1023."""
    return _i2f((k + 1023) << 52)


@njit(**_JIT)
def _scale(v, k):
    """v 2^k for |k| <= 1100, rounded once: 2^k is split into two normal factors."""
    k1 = k >> 1
    return v * _pow2(k1) * _pow2(k - k1)


@njit(**_JIT)
def _exp_reduce(xh, xl):
    """exp(xh + xl) = 2^k (1 + r + c) for |xh| <= 800, |xl| << ulp(xh).

    k = rint(xh / ln2), r = fl(xh - k ln2) with |r| <= ln2/2, d = xh + xl - k ln2 - r and
    c = p + d (1 + r + p), p = r^2 Q(r), so that r + c = e^(r + d) - 1 up to O(d^2).
    """
    t = _fma(xh, _INV_LN2, _SHIFT)
    kf = t - _SHIFT
    r1 = _fma(-kf, _LN2_HI, xh)          # exact: |r1| < 1 and k * _LN2_HI has 53 bits
    r = _fma(-kf, _LN2_LO, r1)
    d = _fma(-kf, _LN2_LO, r1 - r) + xl
    p = r * r * _horner(_EXP_Q, r)
    c = _fma(d, 1.0 + (r + p), p)
    return r, c, _f2i(t) - _SHIFT_BITS


@njit(**_JIT)
def _log_reduce(u):
    """u = 2^k (1 + f) with sqrt(1/2) <= 1 + f < sqrt(2), for normal positive u.

    Returns (k as float, f); f is exact.
    """
    b = _f2i(u) + 0x00095F6200000000     # moves the mantissa window to [sqrt(1/2), sqrt(2))
    m = _i2f((b & 0x000FFFFFFFFFFFFF) + 0x3FE6A09E00000000)
    kf = _i2f((b >> 52) - 1023 + _SHIFT_BITS) - _SHIFT
    return kf, m - 1.0


@njit(**_JIT)
def _log1p_small(kf, f, tail):
    """k ln2 + log(1 + f) + tail for |f| <= sqrt(2) - 1 and |tail| << |f|.

    log(1+f) = f - f^2/2 + s (f^2/2 + z T(z)), s = f / (2 + f), z = s^2.
    """
    s = f / (2.0 + f)
    z = s * s
    hfsq = 0.5 * f * f
    w = _fma(s, _fma(z, _horner(_LOG_T, z), hfsq), _fma(kf, _LN2_LO, tail))
    return _fma(kf, _LN2_HI, f - (hfsq - w))


@njit(**_JIT)
def _atan_pos(y, x, flip):
    """atan2(y, x) in [0, pi/2] for y, x >= 0 (either may be 0 or inf), or pi - atan2(y, x)
    if flip.

    The ratio y/x is reduced to |t| <= tan(pi/8) about the angles b = 0, pi/4 and pi/2:
    t = y/x, (y - x)/(y + x) or -x/y, and atan2 = b + t + t z A(z), z = t^2.  The base angle
    (b or pi - b) is a hi + lo pair so that the result rounds once.
    """
    big = (x > 1e300) | (y > 1e300)
    sc = 5.960464477539063e-08 if big else 1.0      # 2**-24 keeps y + x finite
    x = x * sc
    y = y * sc
    steep = y > x * _TAN_3PI8
    mid = y > x * _TAN_PI8
    num = -x if steep else (y - x if mid else y)
    den = y if steep else (y + x if mid else x)
    t = num / den
    z = t * t
    p = _fma(t * z, _horner(_ATAN_A, z), t)
    edge_hi = _PI_HI if flip else 0.0           # angle 0, or pi when flipped
    edge_lo = _PI_LO if flip else 0.0
    diag_hi = _3PIO4_HI if flip else _PIO4_HI
    diag_lo = _3PIO4_LO if flip else _PIO4_LO
    b_hi = _PIO2_HI if steep else (diag_hi if mid else edge_hi)
    b_lo = _PIO2_LO if steep else (diag_lo if mid else edge_lo)
    ang = b_hi + (b_lo + (-p if flip else p))
    ang = diag_hi if (x == _INF) & (y == _INF) else ang
    return edge_hi if (y == 0.0) & (x == x) else ang


@njit(**_JIT)
def _asin_parts(x):
    """Shared reduction of asin/acos for a = |x|.

    a <= 1/2: z = a^2, s = a;  a > 1/2: z = (1 - a)/2, s = sqrt(z) (so asin(a) = pi/2 - 2 asin(s)).
    Returns (big, s, s_lo, tail) with s + s_lo = sqrt(z) to ~2x double precision and
    tail = s z P(z), i.e. asin(s) = s + s_lo + tail.
    """
    a = abs(x)
    big = a > 0.5
    zb = 0.5 * (1.0 - a)                  # exact for 1/2 <= a <= 1
    z = zb if big else a * a
    r = math.sqrt(zb)                     # llvm.sqrt: vectorises, nan for zb < 0
    # the tiny addend makes s_lo = 0 / tiny = 0 at a = 1 instead of 0 / 0
    r_lo = _fma(-r, r, zb) / (r + r + 1e-300)
    s = r if big else a
    s_lo = r_lo if big else 0.0
    return big, s, s_lo, s * z * _horner(_ASIN_P, z)


@njit(**_JIT)
def _sincos_reduce(x):
    """x = q pi/2 + rh + rl with |rh + rl| <= ~pi/4; returns (rh, rl, q mod 4).

    Cody-Waite with the three-part pi/2 = _PIO2_HI + _PIO2_LO + _PIO2_3 and fused
    multiply-adds; rh + rl carries ~2x double precision for |x| <= 2**50.
    """
    t = _fma(x, _TWO_OVER_PI, _SHIFT)
    kf = t - _SHIFT
    r1 = _fma(-kf, _PIO2_HI, x)          # exact while |r1| < 2
    w = kf * _PIO2_LO
    w_err = _fma(kf, _PIO2_LO, -w)
    rh, e = _two_sum(r1, -w)
    rl = (e - w_err) - kf * _PIO2_3
    return rh, rl, (_f2i(t) - _SHIFT_BITS) & 3


@njit(**_JIT)
def _sincos_kernel(rh, rl):
    """(sin(rh + rl), cos(rh + rl)) for |rh| <= ~pi/4, |rl| <= ulp(rh)."""
    z = rh * rh
    s = rh + _fma(rh * z, _horner(_SIN_S, z), rl * (1.0 - 0.5 * z))
    hz = 0.5 * z
    w = 1.0 - hz
    c = w + (((1.0 - w) - hz) + _fma(z * z, _horner(_COS_C, z), -rh * rl))
    return s, c


@njit(**_JIT)
def _quadrant(s, c, q):
    """sin(q pi/2 + r) from s = sin(r), c = cos(r) and q in {0, 1, 2, 3}."""
    v = c if q & 1 else s
    return _i2f(_f2i(v) ^ ((q & 2) << 62))


@njit(**_JIT_FLAT)
def _erfcx(a, dd):
    """erfcx(a) = exp(a^2) erfc(a) = (num + num_lo) / (den + den_lo) for 1/2 <= a <= 27.5.

    a <= 5/2: N(a) / D(a);  a > 5/2: w (D(u)/sqrt(pi) + u N(u)) / D(u), w = 1/a, u = w^2, with
    w carried as w + w_lo.  With dd (a compile-time constant after inlining) N and D carry
    their compensated low parts, else num_lo = den_lo = 0.  Finite, less accurate, below 1/2.
    """
    near = a <= 2.5
    w = 1.0 / a
    w_lo = _fma(-w, a, 1.0) * w
    v = a if near else w * w
    if dd:
        num, num_lo = _horner2_dd(near, _ERFCX_AN, _ERFCX_BN, v)
        den, den_lo = _horner2_dd(near, _ERFCX_AD, _ERFCX_BD, v)
    else:
        num, num_lo = _horner2(near, _ERFCX_AN, _ERFCX_BN, v), 0.0
        den, den_lo = _horner2(near, _ERFCX_AD, _ERFCX_BD, v), 0.0
    t = _fma(_INV_SQRTPI_HI, den, _fma(v, num, _INV_SQRTPI_LO * den))
    far = _fma(w, t, w_lo * t)
    return (num if near else far), (num_lo if near else 0.0), den, (den_lo if near else 0.0)


@njit(**_JIT_FLAT)
def _mul_exp_neg(num, num_lo, den, den_lo, h, l, dd):
    """(num + num_lo) / (den + den_lo) exp(-(h + l)) for 0 <= h <= 800, |l| <= ulp(h).

    The numerator (num + num_lo)(1 + r + c) is kept as s + tail (num r by two-product and
    fast two-sum, |r| < 1); with dd the quotient gets one Newton correction
    q + (s + tail - q (den + den_lo)) / den, else it is fl((s + tail) / den).
    """
    r, c, k = _exp_reduce(-h, -l)
    p = num * r
    s = num + p
    tail = (p - (s - num)) + _fma(num, r, -p) + _fma(num, c, num_lo)
    if dd:
        q = s / den
        q = q + (_fma(-q, den, s) + (tail - q * den_lo)) / den
    else:
        q = (s + tail) / den
    return _scale(q, k)


@njit(**_JIT_FLAT)
def _erf_pieces(x, dd):
    """For a = min(|x|, 28): (erf(a) = a + a E(a^2), erfc(a) = erfcx(a) e^(-a^2)).

    The first is accurate for a < 3/4, the second for a >= 1/2 (to ~2.7 ulp, or ~1.3 ulp with
    the compensated evaluation dd).  a^2 is split exactly into h + l by an fma so that
    e^(-a^2) keeps full relative accuracy.
    """
    a = abs(x)
    a = 28.0 if a > 28.0 else a
    h = a * a
    l = _fma(a, a, -h)
    e_small = _fma(a, _horner(_ERF_E, h), a)
    num, num_lo, den, den_lo = _erfcx(a, dd)
    return e_small, _mul_exp_neg(num, num_lo, den, den_lo, h, l, dd)


# ---------------------------------------------------------------------------------------------
# Public functions

@njit(**_JIT)
def clamp(x, lo, hi):
    """min(max(x, lo), hi); nan stays nan."""
    y = lo if x < lo else x
    return hi if y > hi else y


@njit(**_JIT)
def exp(x):
    """e^x = 2^k (1 + r + r^2 Q(r)), k = rint(x/ln2), |r| <= ln2/2 (minimax Q of degree 10).

    exp(x) = inf for x > 709.78, gradual underflow to 0 below -708.4 (0 for x < -745.14).
    """
    x = 710.0 if x > 710.0 else x
    x = -746.0 if x < -746.0 else x
    r, c, k = _exp_reduce(x, 0.0)
    return _scale(1.0 + (r + c), k)


@njit(**_JIT)
def expm1(x):
    """e^x - 1 = (2^k - 1) + 2^k (r + c), same reduction as exp; relative accuracy near 0.

    The sum is formed with an error-free two-sum so that only the last addition rounds.
    """
    x = 710.0 if x > 710.0 else x
    x = -40.0 if x < -40.0 else x
    r, c, k = _exp_reduce(x, 0.0)
    kc = 1000 if k > 1000 else k                # 2^k itself may overflow at k = 1024
    s = _pow2(kc)
    h, l = _two_sum(s - 1.0, s * r)
    res = (h + _fma(s, c, l)) * _pow2(k - kc)
    return x if x == 0.0 else res


@njit(**_JIT)
def log(x):
    """log(x) = k ln2 + log(1 + f), x = 2^k (1 + f), sqrt(1/2) <= 1 + f < sqrt(2).

    log(1+f) from the atanh series form f - f^2/2 + s (f^2/2 + z T(z)) (minimax T, degree 6).
    log(0) = -inf, log(x < 0) = nan, log(inf) = inf; subnormal x are handled exactly.
    """
    tiny = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if tiny else x       # 2**54 makes subnormals normal
    kf, f = _log_reduce(xs)
    kf = kf - 54.0 if tiny else kf
    res = _log1p_small(kf, f, 0.0)
    res = _INF if x == _INF else res
    res = -_INF if x == 0.0 else res
    return _NAN if (x < 0.0) | (x != x) else res


@njit(**_JIT)
def log1p(x):
    """log(1 + x) = log(u) + e/u with u = fl(1 + x) and e = 1 + x - u exact (two-sum).

    log1p(-1) = -inf, log1p(x < -1) = nan, relative accuracy for tiny |x|.
    """
    u, e = _two_sum(1.0, x)
    kf, f = _log_reduce(u)
    res = _log1p_small(kf, f, e / u)
    res = _INF if x == _INF else res
    res = -_INF if x == -1.0 else res
    res = _NAN if (x < -1.0) | (x != x) else res
    return x if x == 0.0 else res


@njit(**_JIT)
def tanh(x):
    """tanh|x| = -t/(t + 2), t = expm1(-2|x|), for |x| <= ln(3)/2, else 1 - 2/(expm1(2|x|) + 2).

    Saturates to exactly +-1 for |x| > 19.1; odd in x (sign of zero kept).
    """
    a = abs(x)
    big = a > 0.5493061443340549
    t = expm1(2.0 * a if big else -2.0 * a)
    q = (2.0 if big else -t) / (t + 2.0)
    return _copysign(1.0 - q if big else q, x)


@njit(**_JIT)
def sigmoid(x):
    """1 / (1 + e^-x), evaluated as 1/(1 + e) for x >= 0 and e/(1 + e) for x < 0, e = e^-|x|."""
    e = exp(-abs(x))
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


@njit(**_JIT)
def softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|) (no overflow for any x)."""
    return (x if x > 0.0 else 0.0) + log1p(exp(-abs(x)))


@njit(**_JIT)
def asin(x):
    """asin(x) = s + s z P(z) for |x| <= 1/2 (s = |x|, z = x^2), and
    pi/2 - 2 asin(s) with s = sqrt((1 - |x|)/2) otherwise; minimax P of degree 11.

    nan for |x| > 1.
    """
    big, s, s_lo, tail = _asin_parts(x)
    res = (_PIO2_HI - 2.0 * s) + (_PIO2_LO - 2.0 * (s_lo + tail)) if big else s + tail
    return _copysign(res, x)


@njit(**_JIT)
def acos(x):
    """acos(x) = pi/2 - asin(x) for |x| <= 1/2, 2 asin(s) for x > 1/2 and pi - 2 asin(s) for
    x < -1/2, s = sqrt((1 - |x|)/2) (exact near +-1).  nan for |x| > 1.
    """
    big, s, s_lo, tail = _asin_parts(x)
    small = _PIO2_HI - (x - (_PIO2_LO - _copysign(tail, x)))
    pos = 2.0 * (s + (s_lo + tail))
    neg = (_PI_HI - 2.0 * s) + (_PI_LO - 2.0 * (s_lo + tail))
    return (neg if x < 0.0 else pos) if big else small


@njit(**_JIT)
def atan(x):
    """atan(x) = sign(x) atan2(|x|, 1) with the three-angle reduction of _atan_pos."""
    return _copysign(_atan_pos(abs(x), 1.0, False), x)


@njit(**_JIT)
def atan2(y, x):
    """Angle of the point (x, y) in [-pi, pi] (C99 conventions for zeros and infinities)."""
    return _copysign(_atan_pos(abs(y), abs(x), _f2i(x) < 0), y)   # sign bit: x < 0 or x = -0


@njit(**_JIT)
def sin(x):
    """sin(x) via x = q pi/2 + r, |r| <= pi/4, and minimax sin/cos kernels on r.

    Accurate for |x| <= 2**50; nan for larger |x| and for infinities.
    """
    rh, rl, q = _sincos_reduce(x)
    s, c = _sincos_kernel(rh, rl)
    res = x if x == 0.0 else _quadrant(s, c, q)      # keeps the sign of zero
    return _NAN if abs(x) > 1125899906842624.0 else res


@njit(**_JIT)
def cos(x):
    """cos(x) = sin(x + pi/2): same reduction as sin with the quadrant advanced by one."""
    rh, rl, q = _sincos_reduce(x)
    s, c = _sincos_kernel(rh, rl)
    res = _quadrant(s, c, (q + 1) & 3)
    return _NAN if abs(x) > 1125899906842624.0 else res


@njit(**_JIT)
def sincos2pi(u):
    """(sin(2 pi u), cos(2 pi u)), exact reduction 4u = q + f, |f| <= 1/2, then
    sin(pi f/2) = f (pi/2 + z G(z)), cos(pi f/2) = 1 + z H(z), z = f^2.  For |u| < 2**49.
    """
    v = 4.0 * u
    t = v + _SHIFT
    f = v - (t - _SHIFT)
    q = (_f2i(t) - _SHIFT_BITS) & 3
    z = f * f
    s = _fma(f, _PIO2_HI, f * _fma(z, _horner(_SINPI_G, z), _PIO2_LO))
    c = _fma(z, _horner(_COSPI_H, z), 1.0)
    return _quadrant(s, c, q), _quadrant(s, c, (q + 1) & 3)


@njit(**_JIT_FLAT)
def erf(x):
    """erf(x) = x + x E(x^2) for |x| < 3/4 (minimax E, degree 10), else
    sign(x) (1 - erfcx(|x|) e^(-x^2)).  Exactly +-1 for |x| >= 6.
    """
    e_small, c_large = _erf_pieces(x, False)     # 1 - erfc damps the error of erfc
    return _copysign(e_small if abs(x) < 0.75 else 1.0 - c_large, x)


@njit(**_JIT_FLAT)
def erfc(x):
    """erfc(x) = 1 - erf(x) for |x| < 1/2, erfcx(|x|) e^(-x^2) for x >= 1/2 (relative
    accuracy down to the underflow threshold x ~ 26.5), 2 - erfcx(|x|) e^(-x^2) for x <= -1/2.
    erfcx is rational minimax: N(a)/D(a) for a <= 5/2 and (1/sqrt(pi) + u N(u)/D(u))/a,
    u = 1/a^2, above.
    """
    e_small, c_large = _erf_pieces(x, True)
    small = abs(x) < 0.5
    pos = 1.0 - e_small if small else c_large
    neg = 1.0 + e_small if small else 2.0 - c_large
    return neg if x < 0.0 else pos


@njit(**_JIT_FLAT)
def ndtr(x):
    """Standard normal CDF Phi(x) = erfc(-x/sqrt2)/2, relatively accurate in the lower tail.

    a = |x|/sqrt2 is carried as a + a_lo; the exponent x^2/2 is split exactly, and the
    rounding of a is corrected to first order with erfcx'(a) = 2a erfcx(a) - 2/sqrt(pi).
    """
    ax = abs(x)
    ax = 40.0 if ax > 40.0 else ax
    a = ax * _INV_SQRT2_HI
    a_lo = _fma(ax, _INV_SQRT2_HI, -a) + ax * _INV_SQRT2_LO
    h = ax * ax
    l = _fma(ax, ax, -h)
    z = a * a
    e_small = _fma(a, _horner(_ERF_E, z), a) + a_lo * _TWO_OVER_SQRTPI * (1.0 - z)
    num, num_lo, den, den_lo = _erfcx(a, True)
    num_lo = num_lo + a_lo * _fma(2.0 * a, num, -_TWO_OVER_SQRTPI * den)
    c_large = _mul_exp_neg(num, num_lo, den, den_lo, 0.5 * h, 0.5 * l, True)
    small = a < 0.5
    half_e = 0.5 * e_small
    pos = 0.5 + half_e if small else 1.0 - 0.5 * c_large
    neg = 0.5 - half_e if small else 0.5 * c_large
    return neg if x < 0.0 else pos
