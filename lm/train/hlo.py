"""What a compiled step does, read from its HLO text: its collectives and its matmul FLOPs.

Collectives (`count_collectives`, on `compiled.as_text()`, one device's program):

    all-gather          FSDP's parameter gathers (forward, and again in the backward pass)
    reduce-scatter      FSDP's gradient reduction
    all-reduce          data-parallel gradients, tensor-parallel activations, the loss
    collective-permute  pipeline stages handing activations on
    all-to-all          re-layouts between shardings

Each is counted once per execution: one inside a while loop (the scanned layer stack,
gradient accumulation, the pipeline's iterations) counts its trip count times -- from the
loop's `known_trip_count`, else from its condition (`i < N`, the counter's start read from
the loop's initial tuple). Its bytes are the per-device size of the larger of its input and
output: the gathered array of an all-gather, the unreduced one of a reduce-scatter -- about
what crosses the device's links in a ring algorithm, whose exact traffic is (n - 1) / n of
that (twice that for an all-reduce).

What the TPU compiler prints differs from the CPU's; both are handled:
- an async collective (`*-start` / `*-done`, or TPU's `async_collective_fusion`s) shows
  the same collective several times under one `channel_id`: it is counted once;
- a reduce-scatter may be a fusion of an all-reduce (named `all-reduce-scatter...`), or
  an all-reduce whose result is only sliced (`dynamic-slice`); an all-gather may be an
  all-reduce of a zero buffer with the local shard written in (`dynamic-update-slice`).
  Each is counted as the collective it implements.

FLOPs (`matmul_flops`): 2 x output elements x contracted size of every `dot`, times its
loop trips. XLA's own `cost_analysis()` counts a loop body once, whatever its trip count,
so for a scanned layer stack it reports about one layer's worth of FLOPs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Mapping

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "collective-permute", "all-to-all")
_OPCODES = {"all-gather": "all-gather", "all-reduce": "all-reduce",
            "reduce-scatter": "reduce-scatter", "collective-permute": "collective-permute",
            "all-to-all": "all-to-all", "ragged-all-to-all": "all-to-all"}
_THROUGH = ("bitcast", "copy", "copy-start", "copy-done", "convert", "reshape")

_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*(\(.*->.*)?\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([<=\d,]*)\]")
_CALLS = re.compile(r"\b(calls|to_apply|body|condition|branch_computations|true_computation|"
                    r"false_computation|called_computations)=(\{[^}]*\}|%?[\w.\-]+)")
_TRIP = re.compile(r'"known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"?(\d+)')


@dataclass(frozen=True)
class CollectiveStats:
    count: int  # executions per step
    bytes: int  # per device per step, summed over executions

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}


@dataclass(frozen=True)
class Instruction:
    name: str
    type: str  # the result type: an array, or a tuple of them
    opcode: str
    operands: tuple[str, ...]
    args: str  # the text between the opcode's parentheses
    rest: str  # the attributes after them
    root: bool

    def attribute(self, key: str) -> str | None:
        found = re.search(rf"\b{key}=(\{{[^}}]*\}}|[\w.\-%]+)", self.rest)
        return found.group(1) if found else None

    def callees(self) -> list[str]:
        return [callee for _, targets in _CALLS.findall(self.rest)
                for callee in re.findall(r"[\w.\-]+", targets.replace("%", " "))]


def _split_type(text: str) -> tuple[str, str]:
    """(the result type, the rest) of an instruction's right-hand side."""
    if not text.startswith("("):
        head, _, rest = text.partition(" ")
        return head, rest
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return text[:i + 1], text[i + 1:].lstrip()
    return text, ""


def parse_instruction(line: str) -> Instruction | None:
    match = _INSTRUCTION.match(line)
    if not match:
        return None
    root, name, rhs = match.groups()
    type_, rest = _split_type(rhs)
    opcode = re.match(r"([\w\-]+)\(", rest)
    if not opcode:
        return None
    start, end, depth = opcode.end() - 1, len(rest), 0
    for i in range(start, len(rest)):
        depth += rest[i] == "("
        depth -= rest[i] == ")"
        if depth == 0:
            end = i
            break
    args = rest[start + 1:end]
    return Instruction(name, type_, opcode.group(1), _operand_names(args), args, rest[end + 1:],
                       bool(root))


def _operand_names(args: str) -> tuple[str, ...]:
    """Operand names from `%a, %b` or, as jax's lowered text prints them, `f32[2,3]{1,0} a`."""
    if "%" in args:
        return tuple(re.findall(r"%([\w.\-]+)", args))
    names, depth, piece = [], 0, ""
    for ch in args + ",":
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            token = piece.split()[-1] if piece.split() else ""
            if re.fullmatch(r"[A-Za-z_][\w.\-]*", token) and token not in ("true", "false"):
                names.append(token)
            piece = ""
        else:
            piece += ch
    return tuple(names)


def _computations(hlo: str) -> Iterator[tuple[str, bool, list[Instruction]]]:
    name, entry, body = None, False, []
    for line in hlo.splitlines():
        if name is None:
            header = _HEADER.match(line)
            if header:
                name, entry, body = header.group(2), bool(header.group(1)), []
        elif line.startswith("}"):
            yield name, entry, body
            name = None
        elif (instruction := parse_instruction(line)) is not None:
            body.append(instruction)


def array_bytes(type_: str) -> int:
    """Bytes of every array in an HLO type (a tuple's elements summed; layouts ignored)."""
    total = 0
    for dtype, dims in _ARRAY.findall(type_):
        if dtype == "token":
            continue
        bits = 8 if dtype == "pred" else int((re.search(r"\d+", dtype) or ["8"])[0])
        total += math.prod(int(d) for d in dims.replace("<=", "").split(",") if d) * bits // 8
    return total


def _dims(type_: str) -> list[int]:
    found = _ARRAY.search(type_)
    return [int(d) for d in found.group(2).replace("<=", "").split(",") if d] if found else []


class Module:
    """An HLO module's computations, their instructions, and how often each runs per call."""

    def __init__(self, hlo: str):
        computations = list(_computations(hlo))
        self.tables = {name: {i.name: i for i in body} for name, _, body in computations}
        self.entry = next((name for name, is_entry, _ in computations if is_entry), None)
        self.unread_loops = 0
        self.callers: dict[str, list[tuple[str, Instruction, int]]] = {}
        self.users: dict[str, dict[str, list[Instruction]]] = {}
        for name, table in self.tables.items():
            users = self.users.setdefault(name, {})
            for instruction in table.values():
                for operand in instruction.operands:
                    users.setdefault(operand, []).append(instruction)
                times = 1
                if instruction.opcode == "while":
                    trips = self.trip_count(instruction, name)
                    self.unread_loops += trips is None
                    times = 1 if trips is None else trips
                for callee in instruction.callees():
                    self.callers.setdefault(callee, []).append((name, instruction, times))

    def root(self, computation: str) -> Instruction | None:
        return next((i for i in self.tables.get(computation, {}).values() if i.root), None)

    def _constant(self, computation: str, name: str | None) -> int | None:
        instruction = self.tables[computation].get(name or "")
        if instruction is None or instruction.opcode != "constant":
            return None
        value = re.fullmatch(r"\s*(-?\d+)\s*", instruction.args)
        return int(value.group(1)) if value else None

    def trip_count(self, loop: Instruction, computation: str) -> int | None:
        """known_trip_count, else the `i < N` / `i <= N` its condition tests."""
        known = _TRIP.search(loop.rest)
        if known:
            return int(known.group(1))
        condition = (loop.attribute("condition") or "").lstrip("%")
        root = self.root(condition)
        if root is None or root.opcode != "compare" or len(root.operands) != 2:
            return None
        counter, limit = root.operands
        direction = loop_direction = (root.attribute("direction") or "")
        if self._constant(condition, counter) is not None:  # N > i
            counter, limit = limit, counter
            loop_direction = {"GT": "LT", "GE": "LE"}.get(direction, "")
        bound = self._constant(condition, limit)
        read = self.tables[condition].get(counter)
        if bound is None or read is None or loop_direction not in ("LT", "LE"):
            return None
        start = 0
        init = self.tables[computation].get(loop.operands[0]) if loop.operands else None
        index = read.attribute("index") if read.opcode == "get-tuple-element" else None
        if index is not None and init is not None and init.opcode == "tuple":
            if int(index) < len(init.operands):
                start = self._constant(computation, init.operands[int(index)]) or 0
        return max(bound - start + (loop_direction == "LE"), 0)

    @cached_property
    def executions(self) -> dict[str, int]:
        """How many times each computation runs per call of the entry computation."""
        runs: dict[str, int] = {}

        def count(name: str, seen: frozenset) -> int:
            if name == self.entry:
                return 1
            if name not in runs:
                runs[name] = sum(count(caller, seen | {name}) * times
                                 for caller, _, times in self.callers.get(name, [])
                                 if caller not in seen)
            return runs[name]

        return {name: count(name, frozenset()) for name in self.tables}

    def _source(self, computation: str, name: str) -> tuple[str, Instruction | None]:
        instruction = self.tables[computation].get(name)
        while instruction is not None and instruction.opcode in _THROUGH and instruction.operands:
            instruction = self.tables[computation].get(instruction.operands[0])
        if instruction is not None and instruction.opcode == "fusion" and instruction.callees():
            inner = instruction.callees()[0]
            root = self.root(inner)
            if root is not None:
                return self._source(inner, root.name)
        return computation, instruction

    def _is_zeros(self, computation: str, name: str) -> bool:
        computation, instruction = self._source(computation, name)
        if instruction is None:
            return False
        if instruction.opcode in ("broadcast", "constant"):
            return True
        if instruction.opcode == "parameter":  # a fusion's parameter: look at the fusion's operand
            index = int(instruction.args.strip() or -1)
            for caller, call, _ in self.callers.get(computation, []):
                if call.opcode == "fusion" and 0 <= index < len(call.operands):
                    return self._is_zeros(caller, call.operands[index])
        return False

    def _gathers(self, computation: str, instruction: Instruction) -> bool:
        """An all-reduce of zero buffers with each device's shard written in: an all-gather."""
        def padded(name: str) -> bool:
            inner, source = self._source(computation, name)
            return (source is not None and source.opcode == "dynamic-update-slice"
                    and self._is_zeros(inner, source.operands[0]))
        return bool(instruction.operands) and all(padded(o) for o in instruction.operands)

    def _only_sliced(self, computation: str, name: str, depth: int = 0) -> bool:
        users = self.users[computation].get(name, [])
        if not users or depth > 8:
            return False
        for user in users:
            if user.opcode == "dynamic-slice" and user.operands[0] == name:
                continue
            if user.opcode in _THROUGH + ("get-tuple-element",):
                if self._only_sliced(computation, user.name, depth + 1):
                    continue
            elif user.opcode == "fusion" and user.callees():
                inner = user.callees()[0]
                params = [i for i in self.tables.get(inner, {}).values() if i.opcode == "parameter"
                          and int(i.args.strip() or -1) in
                          [k for k, o in enumerate(user.operands) if o == name]]
                if params and all(self._only_sliced(inner, p.name, depth + 1) for p in params):
                    continue
            return False
        return True

    def kind(self, computation: str, instruction: Instruction) -> str | None:
        base = instruction.opcode.removesuffix("-start")
        if base not in _OPCODES or instruction.opcode.endswith("-done"):
            return None
        kind = _OPCODES[base]
        if kind == "all-reduce":
            if computation.startswith("all-reduce-scatter"):
                return "reduce-scatter"
            if self._gathers(computation, instruction):
                return "all-gather"
            if self._only_sliced(computation, instruction.name):
                return "reduce-scatter"
        return kind

    def collectives(self) -> dict[str, CollectiveStats]:
        found: dict[tuple, tuple[str, int, int]] = {}  # key -> (kind, executions, bytes)
        for computation, table in self.tables.items():
            for instruction in table.values():
                kind = self.kind(computation, instruction)
                if kind is None:
                    continue
                inputs = sum(array_bytes(table[o].type) for o in instruction.operands if o in table)
                outputs = array_bytes(instruction.type)
                if instruction.opcode in ("all-gather-start", "collective-permute-start"):
                    # a tuple of the inputs, the outputs and scalar contexts
                    arrays = [f"{t}[{d}]" for t, d in _ARRAY.findall(instruction.type)]
                    outputs = sum(array_bytes(a) for a in arrays[len(instruction.operands):]
                                  if not a.endswith("[]"))
                size, times = max(inputs, outputs), self.executions[computation]
                channel = instruction.attribute("channel_id")
                key = (channel,) if channel else (computation, instruction.name)
                if key in found:
                    seen_kind, seen_times, seen_size = found[key]
                    kind, times, size = seen_kind, max(times, seen_times), max(size, seen_size)
                found[key] = (kind, times, size)
        stats = {kind: CollectiveStats(0, 0) for kind in KINDS}
        for kind, times, size in found.values():
            stats[kind] = CollectiveStats(stats[kind].count + times,
                                          stats[kind].bytes + times * size)
        return stats

    def matmul_flops(self) -> float:
        total = 0.0
        for computation, table in self.tables.items():
            for instruction in table.values():
                if instruction.opcode != "dot" or not instruction.operands:
                    continue
                lhs = table.get(instruction.operands[0])
                contracting = instruction.attribute("lhs_contracting_dims") or "{}"
                if lhs is None:
                    continue
                dims = _dims(lhs.type)
                size = math.prod(dims[int(d)] for d in re.findall(r"\d+", contracting))
                total += (2.0 * math.prod(_dims(instruction.type)) * size
                          * self.executions[computation])
        return total


def count_collectives(hlo: str) -> tuple[dict[str, CollectiveStats], int]:
    """Per-step counts and per-device bytes of each collective kind in `hlo` (see the module
    docstring), and the number of while loops whose trip count could not be read (their
    collectives are counted as running once)."""
    module = Module(hlo)
    return module.collectives(), module.unread_loops


def matmul_flops(hlo: str) -> float:
    """FLOPs of the `dot`s in `hlo`, loop trips included (module docstring)."""
    return Module(hlo).matmul_flops()


def collectives_table(stats: Mapping[str, CollectiveStats | Mapping[str, int]],
                      per: str = "device") -> str:
    """Counts and MiB per step of each kind; `stats` as count_collectives or its as_dict()s."""
    lines = [f"{f'collectives per step (per {per})':<42}{'count':>12}{'MiB':>12}"]
    for kind, s in stats.items():
        s = s.as_dict() if isinstance(s, CollectiveStats) else s
        lines.append(f"{kind:<42}{s['count']:>12,}{s['bytes'] / 2 ** 20:>12,.1f}")
    return "\n".join(lines)
