"""Property tests of the data readers and recipe validation: random bytes, random JSON lines,
random compressed garbage and random recipe dicts never give a traceback (only DataError /
ConfigError with a message), and the counts always add up.

The default run keeps a few examples of each; `-m slow` runs many more."""

import contextlib
import gzip
import inspect
import json
import string
import tempfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm.config import ConfigError
from lm.data.prepare.executor import prepare
from lm.data.prepare.quarantine import QuarantineEntry
from lm.data.prepare.recipe import DEFAULTS, SOURCE_DEFAULTS, validate_recipe
from lm.data.prepare.record import Record
from lm.data.prepare.sources import count_records, read_records
from lm.data.prepare.steps import StepError, known_steps, step_class
from lm.data.read import DataError, iter_documents



def examples(n: int) -> settings:
    """`n` examples, no deadline, no example database left in the working tree."""
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


FAST, MANY = examples(25), examples(400)  # per reader or recipe test: the default run, and -m slow
FEW, SOME = examples(4), examples(40)  # per whole `prepare` run: the default run, and -m slow

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# A JSON line as a user's file may hold it: a good record, another JSON value, broken JSON, junk bytes.
jsonl_lines = st.one_of(
    st.builds(lambda t, extra: json.dumps({"text": t, **extra}).encode(), st.text(max_size=40),
              st.dictionaries(st.sampled_from(["id", "url", "n"]), json_values, max_size=2)),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=30).map(lambda t: ('{"text": ' + t).encode().replace(b"\n", b"")),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.just(b""),
)
COMPRESSIONS = {"": lambda b: b, ".gz": lambda b: gzip.compress(b, mtime=0),
                ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}


def damaged(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    """`data` cut short (cut > 0) or with some bytes overwritten."""
    data = bytearray(data[: len(data) - cut] if cut else data)
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    return bytes(data)


damage = st.tuples(st.integers(0, 40), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3))


def read_all(path: Path, fmt: str, **kw) -> list:
    return list(read_records("s", path.parent, path, fmt, text_field="text", csv_column="text", **kw))


def check_jsonl_accounting(path: Path) -> None:
    """One item per line read, in order, plus at most one for where reading stopped; planning
    counts the same number of records, and any split into ranges reads the same items."""
    items = read_all(path, "jsonl")
    assert all(isinstance(i, (Record, QuarantineEntry)) for i in items)
    assert count_records(path, "jsonl") == len(items)
    numbers = [int(i.id.rpartition(":")[2]) if isinstance(i, Record) else i.line for i in items]
    assert numbers == list(range(1, len(items) + 1))
    for step in (1, 3):
        parts = [read_all(path, "jsonl", start=s, stop=s + step) for s in range(0, len(items), step)]
        assert sum(parts, []) == items


@pytest.mark.parametrize("suffix", COMPRESSIONS)
@FAST
@given(lines=st.lists(jsonl_lines, max_size=12))
def test_random_jsonl_lines_are_each_a_record_or_a_quarantine_entry(suffix, lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f.jsonl{suffix}"
        path.write_bytes(COMPRESSIONS[suffix](b"".join(line + b"\n" for line in lines)))
        items = read_all(path, "jsonl")
        assert len(items) == len(lines)
        for line, item in zip(lines, items):
            try:
                obj = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                obj = None
            good = isinstance(obj, dict) and isinstance(obj.get("text"), str)
            assert isinstance(item, Record) == good and (not good or item.text == obj["text"])
        check_jsonl_accounting(path)


@pytest.mark.parametrize("suffix", COMPRESSIONS)
@FAST
@given(lines=st.lists(jsonl_lines, min_size=1, max_size=30), damage=damage)
def test_damaged_compressed_jsonl_never_raises_and_counts_add_up(suffix, lines, damage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f.jsonl{suffix}"
        path.write_bytes(damaged(COMPRESSIONS[suffix](b"".join(line + b"\n" for line in lines)), *damage))
        check_jsonl_accounting(path)
        with only_data_errors():
            list(iter_documents(str(path)))


@contextlib.contextmanager
def only_data_errors():
    """Any exception but a DataError with a one-line message fails the test."""
    try:
        yield
    except DataError as e:
        assert str(e) and "\n" not in str(e)


FORMATS = {".txt": "text", ".md.gz": "text", ".txt.zst": "text", ".jsonl": "jsonl", ".jsonl.gz": "jsonl",
           ".jsonl.zst": "jsonl", ".parquet": "parquet", ".csv": "csv"}
SUFFIXES = list(FORMATS)


@FAST
@given(data=st.binary(max_size=300), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_never_raise_from_either_reader(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(data)
        items = read_all(path, FORMATS[suffix], max_bytes=200)
        assert all(isinstance(i, (Record, QuarantineEntry)) for i in items)
        with only_data_errors():
            list(iter_documents(str(path)))


def tree(files: list[tuple[str, bytes]], root: Path) -> None:
    root.mkdir()
    for i, (suffix, data) in enumerate(files):
        (root / f"f{i}{suffix}").write_bytes(data)


file_contents = st.one_of(
    st.binary(max_size=80),
    st.lists(jsonl_lines, max_size=5).map(lambda ls: b"".join(line + b"\n" for line in ls)),
    st.text(string.ascii_letters + " .\n", max_size=80).map(str.encode),
)
random_files = st.lists(st.tuples(st.sampled_from(SUFFIXES + [".png", ".JSONL", ""]), file_contents),
                        min_size=1, max_size=6)


def prepare_tree(files: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tree(files, Path(tmp) / "d")
        with only_data_errors():  # the strict reader of `lm train`'s data.sources
            list(iter_documents(str(Path(tmp) / "d")))
        raw = {"sources": [{"name": "s", "path": "d"}], "tokenizer": None, "input": {"max_doc_chars": 60},
               "steps": [{"step": "normalize"}, {"step": "c4", "min_sentences": 1}, {"step": "exact_dedup"}],
               "execution": {"docs_per_task": 2}}
        recipe = validate_recipe(raw, base_dir=Path(tmp))
        try:
            rep = prepare(recipe, Path(tmp) / "out", progress=False)
        except DataError as e:
            assert "no readable files" in str(e)  # every file had an unsupported suffix
            return
        d = rep["documents"]
        assert d["read"] == d["quarantined"] + d["entered_steps"] == d["quarantined"] + d["dropped"] + d["clean"]
        inputs = rep["inputs"]
        assert inputs["files_read"] + inputs["files_skipped"] == len(files)


@FEW
@given(files=random_files)
def test_prepare_on_random_files_finishes_and_its_counts_add_up(files):
    prepare_tree(files)


def like(default):
    """Values of the type of `default`, in and around its range: mostly plausible, sometimes not."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-1, 5000)
    if isinstance(default, float):
        return st.floats(-0.5, 100, allow_nan=False)
    if isinstance(default, str):
        return st.sampled_from(["bpe", "unigram", "source", "lang", "none", "text", "jsonl", "auto", "", "x"])
    if isinstance(default, (list, tuple)):
        return st.lists(st.sampled_from(["en", "zh", "email", "xx"]) | st.lists(st.integers(0, 10), max_size=3),
                        max_size=3)
    return st.none() | st.floats(0, 1) | st.dictionaries(st.sampled_from(["en", "zh", "a"]), st.floats(-1, 2),
                                                          max_size=2)


def recipes():
    """Recipe dicts as a user might write them: mostly well-formed with a value of the wrong type
    or range here and there, sometimes an unknown name or garbage throughout."""
    def fields(defaults: dict, garbage):
        return {k: st.one_of(like(v), like(v), like(v), garbage) for k, v in defaults.items()}

    def section(name):
        return st.fixed_dictionaries({}, optional=fields(DEFAULTS[name], json_values))

    def step(name):
        params = _parameters(name)
        return st.fixed_dictionaries({"step": st.just(name)}, optional={
            p.name: st.one_of(like(p.default), like(p.default), json_values) for p in params})

    source = st.fixed_dictionaries(
        {"name": st.sampled_from(["a", "b", "a b"]), "path": st.sampled_from(["x.jsonl", "*.txt", "hf:x:y"])},
        optional={k: v for k, v in fields(SOURCE_DEFAULTS, json_values).items() if k not in ("name", "path")})
    steps = st.lists(st.sampled_from(known_steps() + ["nope", "os:path"]).flatmap(step), max_size=3)
    mixture = st.dictionaries(st.sampled_from(["weights", "temperature", "stages", "max_epochs"]),
                              st.floats(-1, 3) | st.dictionaries(st.sampled_from(["a", "b"]), st.floats(-1, 3))
                              | json_values, max_size=2)
    optional = {"steps": steps, "tokenizer": section("tokenizer") | st.none(), "mixture": st.none() | mixture,
                **{name: section(name) for name in ("input", "execution", "output", "tokens")}}
    good = st.fixed_dictionaries({"sources": st.lists(source, min_size=1, max_size=2)}, optional=optional)
    noisy = st.fixed_dictionaries({}, optional={"sources": json_values, "bogus": json_values,
                                                **{k: v | json_values for k, v in optional.items()}})
    return st.one_of(good, good, good, good, noisy, json_values)


def _parameters(step: str) -> list[inspect.Parameter]:
    """The keyword parameters of step `step` (none for a name that is not a step)."""
    try:
        return list(inspect.signature(step_class(step)).parameters.values())
    except StepError:
        return []


def validate_random(raw) -> None:
    try:
        validate_recipe(raw, base_dir=Path("/nonexistent"))
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


@FAST
@given(raw=recipes())
def test_random_recipes_give_a_recipe_or_a_config_error(raw):
    validate_random(raw)


@pytest.mark.slow
@MANY
@given(raw=recipes())
def test_many_random_recipes_give_a_recipe_or_a_config_error(raw):
    validate_random(raw)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", COMPRESSIONS)
@MANY
@given(lines=st.lists(jsonl_lines, min_size=1, max_size=60), damage=damage)
def test_many_damaged_jsonl_files_never_raise_and_count_right(suffix, lines, damage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f.jsonl{suffix}"
        path.write_bytes(damaged(COMPRESSIONS[suffix](b"".join(line + b"\n" for line in lines)), *damage))
        check_jsonl_accounting(path)


@pytest.mark.slow
@SOME
@given(files=random_files)
def test_prepare_on_many_random_trees_finishes_and_its_counts_add_up(files):
    prepare_tree(files)
