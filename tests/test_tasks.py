"""Few-shot tasks: task files and their errors, generated tasks checked by Python itself,
seeded few-shot prompts, metrics, batched scoring and generation checked against
independent computations, and `lm eval --task` end to end."""

import ast
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import logsumexp

from lm.cli import main
from lm.config import default_config
from lm.convert.workdir import write_workdir
from lm.data.tokenizer import train_tokenizer
from lm.sample import greedy_until
from lm.tasks import metrics
from lm.tasks.generators import generate_examples
from lm.tasks.prompts import build_docs
from lm.tasks.run import load_scorer
from lm.tasks.schema import TASKS_DIR, TaskError, load_task
from lm.tasks.sources import load_examples
from lm.train.state import abstract_params, read_run_config
from tests.helpers import forward1, make_model, stdlib_texts, tiny_model_config
from tests.test_layering import imports, module_name, modules

VOCAB = 384
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHIPPED = sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def make_run(root: Path) -> Path:
    """A workdir holding a random model (init_std 0.1, so not uniform) and a tokenizer
    trained on a few standard-library modules."""
    train_tokenizer(stdlib_texts(), root / "run" / "tokenizer", vocab_size=VOCAB)
    cfg = default_config()
    cfg.model = tiny_model_config(vocab_size=VOCAB, max_seq_len=256, init_std=0.1)
    cfg.train.batch_size = 4
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda path, s: ((path[-1].key == "scale") + 0.1 * rng.standard_normal(s.shape)).astype(s.dtype),
        abstract_params(cfg.model)[1])
    write_workdir(cfg, params, root / "run", {"test": "random"})
    return root / "run"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module")
def scorer(run):
    return load_scorer(run, read_run_config(run), batch_size=3)[0]


# --- task files ----------------------------------------------------------------------------

def test_every_shipped_task_file_loads():
    assert {"kv_recall", "copying", "brackets", "indentation", "induction", "modular_arithmetic",
            "sentiment_waimai", "sentiment_hotel"} <= set(SHIPPED)
    for name in SHIPPED:
        task = load_task(name)
        assert task.name == name and task.num_fewshot <= task.fewshot_pool < task.source.size


GOOD = "kind: generate\nsource: {generator: copying, size: 20}\nprompt: '{prompt}'\nanswer: answer\n"


@pytest.mark.parametrize("text, message", [
    (GOOD + "colour: red\n", "unknown field colour"),
    (GOOD.replace("kind: generate", "kind: cloze"), "field kind must be one of"),
    (GOOD.replace("prompt: '{prompt}'\n", ""), "field prompt is missing"),
    (GOOD.replace("size: 20", "size: many"), "field source.size must be a int"),
    (GOOD.replace("copying", "spelling"), "field source.generator 'spelling' is not one of"),
    (GOOD.replace("size: 20}", "size: 20, params: {length: 'x'}}"), "field source.params: length must be a int"),
    (GOOD.replace("size: 20}", "size: 20, params: {width: 3}}"), "copying has no parameter 'width'"),
    (GOOD + "choices: [a, b]\n", "field choices is required by kind multiple_choice and only by it"),
    (GOOD + "fewshot: {num: 30, pool: 10}\n", "field fewshot.num (30) exceeds fewshot.pool (10)"),
    (GOOD + "generation: {extract: '(('}\n", "field generation.extract is not a regular expression"),
    (GOOD + "generation: {stop: ['']}\n", "field generation.stop must list non-empty strings"),
    ("kind: [unclosed\n", "not valid YAML/JSON"),
])
def test_a_bad_task_file_is_named_in_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TaskError) as err:
        load_task(str(path))
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_an_unknown_task_name_lists_the_shipped_ones():
    with pytest.raises(TaskError, match="known: .*kv_recall"):
        load_task("no_such_task")


def test_a_template_field_the_data_lacks_is_named(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(GOOD.replace("'{prompt}'", "'{question}'"))
    with pytest.raises(TaskError, match=r"t.yaml: field prompt uses \{question\}, which example 0 lacks"):
        build_docs(load_task(str(path)), load_examples(load_task(str(path))), 0)


# --- generated tasks: Python itself checks the answers ---------------------------------------

def test_generated_answers_are_right_by_python():
    for name in ("kv_recall", "copying", "modular_arithmetic"):
        for ex in generate_examples(name, {}, 100, 0):
            exec(ex["prompt"] + " " + ex["answer"], {})  # the assert holds
    for ex in generate_examples("brackets", {}, 100, 0):
        ast.parse(ex["prompt"] + ex["answer"])  # every bracket closed, in order
        with pytest.raises(SyntaxError):
            ast.parse(ex["prompt"] + ex["answer"][:-1])
    for ex in generate_examples("indentation", {}, 100, 0):
        valid = []
        for choice in ex["choices"]:
            try:
                valid.append(bool(compile(ex["prompt"] + choice + "\n", "x", "exec")))
            except SyntaxError:
                valid.append(False)
        assert valid.index(True) == ex["answer"]  # the shallower choices are syntax errors
    for ex in generate_examples("induction", {}, 100, 0):
        items = ast.literal_eval(ex["prompt"].split(" = ")[1] + "]")
        period = next(p for p in range(1, len(items)) if items[p:] == items[:-p])
        assert ast.literal_eval(ex["answer"]) == items[len(items) - period]


def test_generated_examples_depend_only_on_the_seed():
    assert generate_examples("induction", {}, 30, 7) == generate_examples("induction", {}, 30, 7)
    assert generate_examples("induction", {}, 30, 7) != generate_examples("induction", {}, 30, 8)


def test_fewshot_shots_come_from_the_pool_and_do_not_depend_on_the_limit():
    task = load_task("kv_recall")
    examples = load_examples(task)
    docs = build_docs(task, examples, 3)
    assert len(docs) == task.source.size - task.fewshot_pool
    assert [d.context for d in build_docs(task, examples, 3, limit=5)] == [d.context for d in docs[:5]]
    pool = {ex["prompt"] + " " + ex["answer"] for ex in examples[:task.fewshot_pool]}
    for doc, example in zip(docs, examples[task.fewshot_pool:]):
        lines = doc.context.split("\n")
        shots = ["\n".join(lines[i:i + 2]) for i in range(0, len(lines) - 2, 2)]
        assert len(shots) == 3 and set(shots) <= pool
        assert doc.context.endswith(example["prompt"]) and doc.answer == example["answer"]
    assert len({d.context.split("\n")[0] for d in docs}) > 5  # shots vary from one example to the next
    assert build_docs(task, examples, 0)[0].context == examples[task.fewshot_pool]["prompt"]


# --- metrics -------------------------------------------------------------------------------

def test_edit_distance():
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance([1, 2, 3], []) == 3
    assert metrics.edit_distance([], []) == 0


def test_multiple_choice_metrics_by_hand():
    lls = [-2.0, -3.0, -4.5]
    choices = ["a", "bbbbbb", "cccccccccc"]  # per character: -2, -0.5, -0.45
    m = metrics.multiple_choice(lls, choices, gold=2)
    p = np.exp(lls) / np.exp(lls).sum()
    assert (m["acc"], m["acc_norm"], m["logprob"]) == (0.0, 1.0, -4.5)
    assert m["brier"] == pytest.approx(p[0] ** 2 + p[1] ** 2 + (1 - p[2]) ** 2)
    # outside ASCII, characters and UTF-8 bytes differ ("好" is 3 bytes)
    zh = metrics.multiple_choice([-3.0, -5.0], ["好", "ab"], gold=1)
    assert (zh["acc"], zh["acc_norm"], zh["acc_bytes"]) == (0.0, 1.0, 0.0)  # -3/1 < -5/2 < -3/3


def test_aggregate_gives_means_and_standard_errors():
    out = metrics.aggregate([{"acc": 1.0}, {"acc": 0.0}, {"acc": 1.0}, {"acc": 1.0}])
    assert out["acc"] == 0.75 and out["acc_stderr"] == pytest.approx(0.5 / 2)


# --- scoring and generation against independent computations --------------------------------

def reference_loglikelihoods(model, pairs) -> list[tuple[float, bool]]:
    """One unbatched-by-design computation: every pair right-padded in one forward pass
    (causal attention: what follows a row's tokens cannot change their logits)."""
    rows = np.zeros((len(pairs), 48), np.int32)
    for r, (context, continuation) in enumerate(pairs):
        rows[r, :len(context) + len(continuation)] = context + continuation
    logits = np.asarray(forward1(model, jnp.asarray(rows)), np.float64)
    out = []
    for r, (context, continuation) in enumerate(pairs):
        at = np.arange(len(context) - 1, len(context) + len(continuation) - 1)
        log_probs = logits[r, at] - logsumexp(logits[r, at], axis=-1, keepdims=True)
        out.append((float(log_probs[np.arange(len(at)), continuation].sum()),
                    bool(np.all(logits[r, at].argmax(-1) == continuation))))
    return out


def test_loglikelihood_matches_a_full_forward_pass_and_ignores_batching(scorer):
    model = nnx.merge(scorer.graphdef, scorer.params)
    texts = [("def f(x):\n    return", " x + 1"), ("import os", "\nimport sys"), ("a = [1, 2", ", 3]"),
             ("class A:", "\n    pass"), ("x", " = 1")]
    pairs = [scorer.encode_pair(c, t) for c, t in texts]
    for (c, t), (ctx, cont) in zip(texts, pairs):
        assert ctx[0] == scorer.tokenizer.bos_id and scorer.tokenizer.decode(ctx[1:] + cont) == c + t
    best = int(np.argmax(np.asarray(forward1(model, jnp.asarray([pairs[0][0]])))[0, -1]))
    pairs.append((pairs[0][0], [best]))  # the argmax token: greedy
    got = scorer.loglikelihood(pairs)
    for (ll, greedy), (ref_ll, ref_greedy) in zip(got, reference_loglikelihoods(model, pairs)):
        assert ll == pytest.approx(ref_ll, abs=1e-4) and greedy == ref_greedy
    assert got[-1][1] is True
    scorer.batch_size, before = 2, scorer.batch_size
    try:
        assert np.allclose([ll for ll, _ in scorer.loglikelihood(pairs)], [ll for ll, _ in got], atol=1e-5)
    finally:
        scorer.batch_size = before


def test_long_sequences_lose_tokens_from_the_left(scorer):
    model = nnx.merge(scorer.graphdef, scorer.params)
    context, continuation = scorer.encode_pair(stdlib_texts()[0][:400], " = 1")
    scorer.max_len, before = 24, scorer.max_len
    try:
        (ll, _), = scorer.loglikelihood([(context, continuation)])
    finally:
        scorer.max_len = before
    kept = (context + continuation)[-25:]  # 24 inputs predict the last 24 tokens
    (ref, _), = reference_loglikelihoods(model, [(kept[:-len(continuation)], continuation)])
    assert ll == pytest.approx(ref, abs=1e-4)


def test_trailing_space_of_a_context_moves_to_the_continuation(scorer):
    assert scorer.encode_pair("x = ", "1") == scorer.encode_pair("x =", " 1")


def test_batched_greedy_generation_equals_argmax_of_full_forward_passes():
    model = make_model(tiny_model_config(init_std=0.3))
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 61, n).tolist() for n in (3, 11, 6, 1)]
    padded = np.zeros((4, 16), np.int32)
    for i, p in enumerate(prompts):
        padded[i, :len(p)] = p
    got = np.asarray(greedy_until(graphdef, params, jnp.asarray(padded), jnp.asarray([len(p) for p in prompts]),
                                  jnp.asarray([-1], jnp.int32), max_new_tokens=6))
    rows = np.zeros((4, 32), np.int32)  # no cache: whole right-padded rows, read at each row's end
    lengths = [len(p) for p in prompts]
    rows[:, :16] = padded
    for step in range(6):
        logits = np.asarray(forward1(model, jnp.asarray(rows)))
        for r, n in enumerate(lengths):
            rows[r, n + step] = logits[r, n + step - 1].argmax()
    np.testing.assert_array_equal(got, [rows[r, n:n + 6] for r, n in enumerate(lengths)])


def test_generation_stops_at_stop_strings_and_eos(scorer):
    contexts = ["def f(x):\n    return x", "import os\n", "a = 1"]
    free = scorer.generate(contexts, stop=["\x00never"], max_new_tokens=12)
    cut = scorer.generate(contexts, stop=["\n", " "], max_new_tokens=12)
    for text, short in zip(free, cut):
        ends = [text.find(s) for s in ("\n", " ") if s in text]
        assert short == (text[:min(ends)] if ends else text)
    tok = scorer.tokenizer
    assert scorer.cut([tok.encode("ab")[0], tok.eos_id] + tok.encode("cd"), ["z"]) == tok.decode(tok.encode("ab")[:1])


# --- lm eval --task ------------------------------------------------------------------------

def test_lm_eval_task_writes_discrete_and_continuous_metrics(run, tmp_path, capsys):
    out = tmp_path / "tasks.json"
    assert main(["eval", "--workdir", str(run), "--task", "brackets", "indentation", "--limit", "6",
                 "--num-fewshot", "1", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(out.read_text())
    gen, mc = saved["tasks"]["brackets"], saved["tasks"]["indentation"]
    assert printed["brackets"]["exact_match"] == gen["exact_match"] and "samples" not in printed["brackets"]
    assert gen["examples"] == mc["examples"] == 6 and gen["num_fewshot"] == mc["num_fewshot"] == 1
    for s in gen["samples"]:
        assert s["exact_match"] == float(s["extracted"] == s["answer"]) and "\n" not in s["generation"]
        assert s["logprob"] < 0 and s["edit_distance"] >= 0
    for s in mc["samples"]:
        assert len(s["loglikelihoods"]) == 4 and s["logprob"] == s["loglikelihoods"][s["gold"]]
        assert 0 <= s["brier"] <= 2
    assert mc["acc"] == np.mean([s["acc"] for s in mc["samples"]])
    assert math.isfinite(mc["brier"]) and math.isfinite(gen["edit_distance"])


def test_lm_eval_task_bad_input_exits_with_one_line(run, tmp_path, capsys):
    assert main(["eval", "--workdir", str(run), "--task", "no_such_task"]) == 2
    assert "known:" in capsys.readouterr().err
    missing = tmp_path / "missing.yaml"
    missing.write_text("kind: multiple_choice\nsource: {csv: nowhere.csv, size: 40}\nprompt: '{review}'\n"
                       "answer: label\nchoices: [a, b]\n")
    assert main(["eval", "--workdir", str(run), "--task", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml: source.csv" in err and "nowhere.csv does not exist" in err


def test_harness_without_lm_eval_says_how_to_install_it(run, capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "lm.tasks.harness", raising=False)
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` raises ImportError
    assert main(["eval", "--workdir", str(run), "--harness", "hellaswag"]) == 2
    assert "pip install 'lm[eval]'" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "zh" / "waimai_10k.csv").exists(),
                    reason="needs ../shared/data/zh (the shared review data beside the project)")
def test_sentiment_on_the_shared_reviews(scorer):
    from lm.tasks.run import evaluate_task
    for name in ("sentiment_waimai", "sentiment_hotel"):
        task = load_task(name)
        result = evaluate_task(scorer, task, num_fewshot=2, limit=4)
        assert result["examples"] == 4 and 0 <= result["acc"] <= 1
        for s in result["samples"]:
            assert s["choices"] == task.choices and s["gold"] in (0, 1) and s["context"].count("\n\n") == 2


def test_only_the_cli_evaluate_cli_and_sweep_import_tasks():
    importers = {module_name(p) for p in modules() for _, target in imports(p)
                 if target.startswith("lm.tasks") and not module_name(p).startswith("lm.tasks")}
    assert importers <= {"lm.cli", "lm.evaluate_cli"} | {m for m in importers if m.startswith("lm.sweep")}
    assert "lm.evaluate_cli" in importers
