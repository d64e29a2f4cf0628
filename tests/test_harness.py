"""The lm-eval adapter: lm checkpoints as lm-eval's model ``lm``, checked offline on local
task definitions over local JSON files against lm's own evaluator (to 1e-4), and its
rolling log-likelihood against `lm eval`'s held-out loss."""

import json
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'lm[eval]'; CI installs only .[test])")

import numpy as np  # noqa: E402

from lm.cli import main  # noqa: E402
from lm.evaluate import score_documents  # noqa: E402
from lm.tasks.harness import LMHarnessModel, run_harness  # noqa: E402
from lm.tasks.run import evaluate_task, load_scorer  # noqa: E402
from lm.tasks.schema import load_task  # noqa: E402
from lm.train.state import read_run_config  # noqa: E402
from tests.helpers import stdlib_texts  # noqa: E402
from tests.test_tasks import make_run  # noqa: E402

LIMIT = 12


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A random-model run, lm's own results on two tasks, and the same prompts as lm-eval
    tasks (YAML over JSON files) in an include path."""
    root = tmp_path_factory.mktemp("harness")
    run = make_run(root)
    scorer = load_scorer(run, read_run_config(run), batch_size=4)[0]
    ours = {name: evaluate_task(scorer, load_task(name), num_fewshot=1, limit=LIMIT)
            for name in ("indentation", "kv_recall")}
    tasks = root / "lm_eval_tasks"
    tasks.mkdir()
    mc = [{"context": s["context"], "choices": s["choices"], "gold": s["gold"]}
          for s in ours["indentation"]["samples"]]
    gen = [{"context": s["context"], "answer": s["answer"]} for s in ours["kv_recall"]["samples"]]
    (tasks / "mc.json").write_text(json.dumps(mc))
    (tasks / "gen.json").write_text(json.dumps(gen))
    common = "doc_to_text: '{{context}}'\ntest_split: test\ndataset_path: json\n"
    (tasks / "local_mc.yaml").write_text(common + textwrap.dedent(f"""\
        task: local_mc
        dataset_kwargs: {{data_files: {{test: {tasks / 'mc.json'}}}}}
        output_type: multiple_choice
        doc_to_choice: '{{{{choices}}}}'
        doc_to_target: gold
        target_delimiter: ''
        metric_list: [{{metric: acc}}, {{metric: acc_norm}}, {{metric: acc_bytes}}, {{metric: brier_score}}]
        """))
    (tasks / "local_gen.yaml").write_text(common + textwrap.dedent(f"""\
        task: local_gen
        dataset_kwargs: {{data_files: {{test: {tasks / 'gen.json'}}}}}
        output_type: generate_until
        doc_to_target: '{{{{answer}}}}'
        generation_kwargs: {{until: ["\\n"], max_gen_toks: 8, do_sample: false}}
        metric_list: [{{metric: exact_match, regexes_to_ignore: ['^\\s+|\\s+$']}}]
        """))
    return run, scorer, ours, tasks


def test_lm_eval_numbers_equal_lm_evals_on_the_same_prompts(prepared, monkeypatch):
    run, scorer, ours, tasks = prepared
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = run_harness(run, ["local_mc", "local_gen"], num_fewshot=0, limit=None, batch_size=4, max_len=None,
                      include_path=str(tasks), log_samples=True)
    mc, gen = out["results"]["local_mc"], out["results"]["local_gen"]
    mine = ours["indentation"]
    for ours_name, theirs_name in (("acc", "acc"), ("acc_norm", "acc_norm"), ("acc_bytes", "acc_bytes"),
                                   ("brier", "brier_score")):
        assert mc[f"{theirs_name},none"] == pytest.approx(mine[ours_name], abs=1e-4)
    samples = sorted(out["samples"]["local_mc"], key=lambda s: s["doc_id"])
    for theirs, s in zip(samples, mine["samples"]):
        lls = [float(r[0]) for r in theirs["filtered_resps"]]
        np.testing.assert_allclose(lls, s["loglikelihoods"], atol=1e-4)
    assert gen["exact_match,none"] == pytest.approx(ours["kv_recall"]["exact_match"], abs=1e-4)
    samples = sorted(out["samples"]["local_gen"], key=lambda s: s["doc_id"])
    assert [t["resps"][0][0] for t in samples] == [s["generation"] for s in ours["kv_recall"]["samples"]]
    assert out["step"] == 0 and len(samples) == LIMIT


def test_rolling_loglikelihood_equals_lm_evals_heldout_loss(prepared):
    """lm eval scores [BOS] text -> text [EOS]; lm-eval's rolling log-likelihood is the same
    without the EOS prediction, which the test adds back from `loglikelihood`."""
    _, scorer, _, _ = prepared
    texts = [stdlib_texts()[0][:300], "x = 1\n", stdlib_texts()[1][:120]]
    model = LMHarnessModel(scorer=scorer)
    requests = [type("Request", (), {"args": (t,)})() for t in texts]
    rolling = model.loglikelihood_rolling(requests)
    eos = scorer.loglikelihood([([scorer.tokenizer.bos_id] + scorer.tokenizer.encode(t), [scorer.tokenizer.eos_id])
                                for t in texts])
    for text, roll, (eos_ll, _) in zip(texts, rolling, eos):
        totals = score_documents(scorer.graphdef, scorer.params, scorer.tokenizer, [text], seq_len=256, batch_size=2)
        # lm eval's number is the loss in nats per token (its float32 sums of ~1,500 nats
        # differ from float64 ones by ~1e-4 nats; per token, by far less)
        assert -(roll + eos_ll) / totals.tokens == pytest.approx(totals.metrics()["loss"], abs=1e-6)
        assert -(roll + eos_ll) == pytest.approx(totals.nats, rel=1e-6)
    # windows longer than max_len: each token is still scored once
    scorer.max_len, before = 32, scorer.max_len
    try:
        windowed = model.loglikelihood_rolling(requests[:1])[0]
    finally:
        scorer.max_len = before
    assert len(scorer.tokenizer.encode(texts[0])) > 2 * 32 and windowed < 0 and windowed != rolling[0]


def test_lm_eval_harness_command(prepared, tmp_path, capsys, monkeypatch):
    run, _, _, tasks = prepared
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "harness.json"
    assert main(["eval", "--workdir", str(run), "--harness", "local_mc", "--include-path", str(tasks),
                 "--limit", "4", "--batch-size", "4", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(out.read_text())
    assert saved["results"]["local_mc"]["acc,none"] == printed["local_mc"]["acc,none"]
    assert saved["n-samples"]["local_mc"]["effective"] == 4


def test_importing_the_adapter_registers_the_model_name_lm(prepared, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    run, _, ours, tasks = prepared
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = lm_eval.simple_evaluate(model="lm", model_args=f"workdir={run},batch_size=4", tasks=["local_mc"],
                                  task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
                                  bootstrap_iters=0)
    assert out["results"]["local_mc"]["acc,none"] == pytest.approx(ours["indentation"]["acc"], abs=1e-4)
