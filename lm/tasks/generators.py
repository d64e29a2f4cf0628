"""Offline tasks generated deterministically, on which a model trained on Python source
(the built-in standard-library corpus) can show progress: in-context recall, copying,
closing brackets, indentation, pattern induction and small modular arithmetic.

Each generator takes a `random.Random` and keyword parameters and returns one example
(a dict of string fields; `answer` is the target, or the correct choice's index).
"""

from __future__ import annotations

import inspect
import random
import string
from typing import Any, Callable

WORDS = ("alpha", "beta", "gamma", "delta", "name", "value", "count", "size", "path", "key",
         "item", "data", "index", "total", "result", "width", "height", "color", "mode", "level",
         "offset", "limit", "start", "stop", "step", "left", "right", "first", "last", "prefix",
         "suffix", "token", "line", "word", "text", "flag", "state", "depth", "node", "parent")


def _letters(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(length))


def kv_recall(rng: random.Random, pairs: int = 4, max_value: int = 99) -> dict[str, Any]:
    """Recall a value from a dict literal in the prompt:
    ``d = {'size': 3, 'mode': 41}`` / ``assert d['mode'] ==`` -> ``41``."""
    keys = rng.sample(WORDS, pairs)
    values = [rng.randint(0, max_value) for _ in keys]
    query = rng.randrange(pairs)
    body = ", ".join(f"'{k}': {v}" for k, v in zip(keys, values))
    return {"prompt": f"d = {{{body}}}\nassert d['{keys[query]}'] ==", "answer": str(values[query])}


def copying(rng: random.Random, length: int = 6) -> dict[str, Any]:
    """Copy a random string literal: ``s = 'qkzvhe'`` / ``assert s ==`` -> ``'qkzvhe'``."""
    text = _letters(rng, length)
    return {"prompt": f"s = '{text}'\nassert s ==", "answer": f"'{text}'"}


OPENERS = (("f(", ")"), ("[", "]"), ("(", ")"), ("{'k': ", "}"), ("len(", ")"), ("max(", ")"))


def brackets(rng: random.Random, min_depth: int = 2, max_depth: int = 4) -> dict[str, Any]:
    """Close every open bracket of a nested Python expression:
    ``x = f([1, (2, len('ab'`` -> ``))])``."""
    depth = rng.randint(min_depth, max_depth)
    opened, closers = "", []
    for _ in range(depth):
        if closers and closers[-1] != "}" and rng.random() < 0.6:  # a dict value takes no "N, "
            opened += f"{rng.randint(0, 9)}, "
        opener, closer = rng.choice(OPENERS)
        opened += opener
        closers.append(closer)
    atom = rng.choice([str(rng.randint(0, 99)), f"'{_letters(rng, 2)}'", rng.choice(WORDS)])
    return {"prompt": f"x = {opened}{atom}", "answer": "".join(reversed(closers))}


HEADERS = ("if a > b:", "for {w} in a:", "while b:", "with open(a) as {w}:", "if not b:")
STATEMENTS = ("return a", "b += 1", "{w} = a + b", "print({w})", "pass", "a = {w}")


def indentation(rng: random.Random, max_depth: int = 3) -> dict[str, Any]:
    """Multiple choice: the indentation (0, 4, 8 or 12 spaces) of the line after a block
    header (``...:``): Python rejects the shallower choices, and the standard library's
    style (PEP 8) puts the block exactly 4 spaces deeper than its header."""
    depth = rng.randint(1, min(max_depth, 3))
    lines = [f"def {rng.choice(WORDS)}(a, b):"]
    lines += ["    " * level + rng.choice(HEADERS).format(w=rng.choice(WORDS)) for level in range(1, depth)]
    statement = rng.choice(STATEMENTS).format(w=rng.choice(WORDS))
    return {"prompt": "\n".join(lines) + "\n", "choices": ["    " * i + statement for i in range(4)],
            "answer": depth}


def induction(rng: random.Random, min_period: int = 2, max_period: int = 4, repeats: int = 3,
              length: int = 3) -> dict[str, Any]:
    """Continue a repeating list of random strings (induction heads):
    ``xs = ['qa', 'vum', 'qa', 'vum', 'qa',`` -> ``'vum'``."""
    period = rng.randint(min_period, max_period)
    pattern = []
    while len(pattern) < period:
        item = _letters(rng, length)
        if item not in pattern:
            pattern.append(item)
    items = pattern * repeats
    cut = rng.randint(period + 1, len(items) - 1)
    shown = ", ".join(f"'{x}'" for x in items[:cut])
    return {"prompt": f"xs = [{shown},", "answer": f"'{items[cut]}'"}


def modular_arithmetic(rng: random.Random, modulus: int = 10, ops: str = "+-*") -> dict[str, Any]:
    """Small modular arithmetic: ``assert (7 * 5) % 10 ==`` -> ``5``."""
    a, b, op = rng.randrange(modulus), rng.randrange(modulus), rng.choice(ops)
    value = {"+": a + b, "-": a - b, "*": a * b}[op] % modulus
    return {"prompt": f"assert ({a} {op} {b}) % {modulus} ==", "answer": str(value)}


GENERATORS: dict[str, Callable[..., dict[str, Any]]] = {
    f.__name__: f for f in (kv_recall, copying, brackets, indentation, induction, modular_arithmetic)}


def check_params(name: str, params: dict[str, Any]) -> str:
    """'' when `params` suit generator `name`, else what is wrong (names the parameter)."""
    signature = inspect.signature(GENERATORS[name])
    allowed = {k: p.default for k, p in signature.parameters.items() if k != "rng"}
    for key, value in params.items():
        if key not in allowed:
            return f"{name} has no parameter {key!r} (it takes {', '.join(allowed)})"
        if type(value) is not type(allowed[key]):
            return f"{key} must be a {type(allowed[key]).__name__}, not {value!r}"
    try:
        GENERATORS[name](random.Random(0), **params)
    except (ValueError, IndexError, KeyError) as err:
        return f"{name}({params}) fails: {err}"
    return ""


def generate_examples(name: str, params: dict[str, Any], size: int, seed: int) -> list[dict[str, Any]]:
    """`size` examples of generator `name`, the same for the same seed (on any machine)."""
    rng = random.Random(seed)
    return [GENERATORS[name](rng, **params) for _ in range(size)]
