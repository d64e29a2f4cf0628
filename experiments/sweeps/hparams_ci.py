"""hparams_ci: hparams_cpu's shape at test size, for tests and smoke runs of the learning-rate
and batch-size laws, not for fitting: two IsoFLOP budgets (6e8 and 2.4e9 FLOPs by 6 N D), one
12k-parameter model each, trained at learning rates 3e-3 and 1e-2 and batches of 8 and 16
sequences of 64 tokens: 8 runs of 9 to 66 steps."""

from pathlib import Path

from lm.config import call_python_file


def get_sweep():
    sweep = call_python_file(Path(__file__).with_name("tiny_ci.py"), "get_sweep", kind="sweep")
    sweep["base"]["train"].update(eval_batches=2)
    sweep.update(budgets=[6e8, 2.4e9], model_sizes=[[12e3], [12e3]],
                 tune={"train.lr": [3e-3, 1e-2], "train.batch_size": [8, 16]})
    return sweep
