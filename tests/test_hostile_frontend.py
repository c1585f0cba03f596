"""Hostile and huge input to the front end (issues 17/18): a clear TPError naming the problem, never exit 3 or a hang."""
import time

import pytest

import tensorprog
from tensorprog.errors import TPError
from tensorprog.frontend.scope import MAX_UNROLL

NESTED = """const L = {L}
vector x[0][0] ~ N(0, 1)
for i in 1..L:
  for j in 1..L:
    x[i][j] = tanh(x[0][0])
out s = mean(x[0][0]*x[0][0])
"""


def test_nested_loops_count_towards_one_total():
    # 400 x 400 = 160,000 > 100,000 although each loop alone is 400: refused at the inner loop (line 4).
    assert 400 * 400 > MAX_UNROLL
    t0 = time.perf_counter()
    with pytest.raises(TPError) as e:
        tensorprog.parse(NESTED.format(L=400))
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert ":4:" in msg and "in total" in msg and str(MAX_UNROLL) in msg


def test_nested_loops_within_the_total_still_work():
    prog = tensorprog.parse(NESTED.format(L=10))    # 10 + 10*10 iterations
    assert len(prog.outputs) == 1


def test_single_huge_loop_is_refused_with_the_count():
    src = "vector x ~ N(0, 1)\nfor l in 1..10000000:\n  x = tanh(x)\nout s = mean(x*x)\n"
    with pytest.raises(TPError) as e:
        tensorprog.parse(src)
    assert ":2:" in str(e.value) and "10000000 iterations" in str(e.value)


@pytest.mark.parametrize("value", ["1e100000000", "1e-100000000", "1" * 5000, "2E+1001"])
def test_define_out_of_range_is_refused_before_exact_arithmetic(value):
    t0 = time.perf_counter()
    with pytest.raises(TPError) as e:
        tensorprog.parse("examples/mlp_nngp.tp", defines={"L": value})
    assert time.perf_counter() - t0 < 10
    assert "-D L" in str(e.value) and "out of range" in str(e.value)


def test_define_in_range_still_accepted():
    # 1e3 = 1000 exactly: the exponent limit is not hit, and the value is exact.
    from tensorprog.frontend.load import define_value
    assert define_value("L", "1e3") == 1000 and define_value("s", "2.5e-3") * 400 == 1
