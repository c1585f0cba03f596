"""Walks of sympy expressions that visit each distinct subexpression once.

The limit of an unrolled program (training steps, deep networks) is a DAG with heavy sharing: after
two training steps a typical integrand has ~700 distinct nodes but ~40,000 as a tree, and every
further step multiplies the tree.  sympy's own ``xreplace``, ``replace``, ``has``, ``diff`` and
``expand`` walk the tree (a shared node once per path to it), so their cost grows exponentially with
the number of steps.  The functions here compute the same results with one visit per distinct node
(a memo keyed by the node; sympy caches node hashes), iteratively, so that depth is not limited by
Python's recursion limit.
"""
from __future__ import annotations

import sympy
from sympy import Add, Mul, Pow
from sympy.core.function import AppliedUndef, ArgumentIndexError



def postorder(expr, visit, memo=None):
    """``visit(node, new_args)`` for every distinct node, children first; returns visit's value at ``expr``.

    ``new_args`` are the children's values.  Leaves get ``new_args = ()``.
    """
    memo = {} if memo is None else memo
    if expr in memo:
        return memo[expr]
    stack = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in memo:
            continue
        if ready or not node.args:
            memo[node] = visit(node, tuple(memo[a] for a in node.args))
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in node.args if a not in memo)
    return memo[expr]


def _same_or_new(node, args):
    if all(a is b for a, b in zip(args, node.args)):
        return node
    return node.func(*args)


def xreplace(expr, mapping):
    """``expr.xreplace(mapping)``: simultaneous structural substitution of whole subexpressions."""
    if not mapping:
        return expr
    memo = dict(mapping)
    return postorder(sympy.sympify(expr), lambda node, args: _same_or_new(node, args), memo)


def rebuild(expr, fix):
    """Bottom-up rewrite: every node rebuilt from its rewritten children, then passed through ``fix``
    (``expr.replace(lambda e: True, fix)`` with one call per distinct node)."""
    return postorder(sympy.sympify(expr), lambda node, args: fix(_same_or_new(node, args)))


def has(expr, *patterns):
    """Whether a subexpression equals one of ``patterns`` or is an instance of one of the classes among them."""
    classes = tuple(p for p in patterns if isinstance(p, type))
    exact = {p for p in patterns if not isinstance(p, type)}
    seen, stack = {expr}, [expr]
    while stack:
        node = stack.pop()
        if node in exact or (classes and isinstance(node, classes)):
            return True
        for arg in node.args:
            if arg not in seen:
                seen.add(arg)
                stack.append(arg)
    return False


_MUL_HINTS = dict(power_base=False, power_exp=False, mul=True, log=False, multinomial=False, basic=False)


def expand_mul(expr, memo=None):
    """``sympy.expand_mul(expr)`` (products distributed over sums at every depth), each distinct node once.

    ``memo`` may be shared between calls on expressions with common parts.
    """
    memo = {} if memo is None else memo

    def visit(node, args):
        node = _same_or_new(node, args)
        hint = getattr(node, "_eval_expand_mul", None)
        return node if hint is None else hint(**_MUL_HINTS)

    expr = sympy.sympify(expr)
    while True:
        out = postorder(expr, visit, memo)
        if out == expr:
            return out
        expr = out


def diff(expr, x):
    """d expr / d x (x a symbol or an applied function), by the chain rule over distinct nodes.

    The rules are sympy's own (sum, product, power, f'(a) a' from each function's ``fdiff``), so the
    result is the expression ``sympy.diff`` returns; nodes of any other kind are handed to sympy.
    """
    expr = sympy.sympify(expr)
    contains = {}
    postorder(expr, lambda node, args: node == x or any(args), contains)
    zero, one = sympy.S.Zero, sympy.S.One

    def visit(node, dargs):
        if node == x:
            return one
        if not contains[node]:
            return zero
        return _derivative(node, dargs, x)

    # Children of a node free of x are not visited: their derivative is 0.
    memo = {node: zero for node, hit in contains.items() if not hit}
    memo[x] = one
    return postorder(expr, visit, memo)


def _derivative(node, dargs, x):
    """One chain-rule step at ``node`` given its children's derivatives ``dargs``."""
    if isinstance(node, Add):
        return Add(*dargs)
    if isinstance(node, Mul):
        args = list(node.args)
        terms = [Mul(*(args[:k] + [d] + args[k + 1:])) for k, d in enumerate(dargs) if d != 0]
        return Add(*terms)
    if isinstance(node, Pow):
        base, exp = node.args
        dbase, dexp = dargs
        return node * (dexp * sympy.log(base) + dbase * exp / base)
    if isinstance(node, sympy.Function) and not isinstance(node, AppliedUndef):
        terms = []
        for k, d in enumerate(dargs):
            if d == 0:
                continue
            try:
                df = node.fdiff(k + 1)
            except ArgumentIndexError:
                return sympy.diff(node, x)
            terms.append(df * d)
        return Add(*terms)
    return sympy.diff(node, x)


EVEN, ODD, NEITHER = 1, -1, 0


def parity(expr, variables):
    """EVEN or ODD when expr(-u) = expr(u) or -expr(u) under u -> -u for all ``variables`` at once
    (shown structurally: sums of one parity, products, integer powers, and functions whose sympy
    evaluation at a negated argument gives +-f); NEITHER otherwise (including "not shown")."""
    variables = set(variables)

    def visit(node, args):
        if node in variables:
            return ODD
        if not args or all(a == EVEN for a in args):
            return EVEN
        if NEITHER in args:
            return NEITHER
        if isinstance(node, Add):
            return args[0] if all(a == args[0] for a in args) else NEITHER
        if isinstance(node, Mul):
            return ODD if args.count(ODD) % 2 else EVEN
        if isinstance(node, Pow):
            base, exp = node.args
            return ODD if args == (ODD, EVEN) and exp.is_integer and exp.is_odd else (
                EVEN if args == (ODD, EVEN) and exp.is_integer and exp.is_even else NEITHER)
        if isinstance(node, sympy.Function) and len(node.args) == 1:
            flipped = node.func(-node.args[0])
            return ODD if flipped == -node else (EVEN if flipped == node else NEITHER)
        return NEITHER

    return postorder(sympy.sympify(expr), visit)
