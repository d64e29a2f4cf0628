"""porian_cpu: Porian et al.'s (2024, "Resolving discrepancies in compute-optimal scaling")
Figure 1 ablation, repeated on 2 CPU cores with the built-in stdlib corpus:

    (i)   one learning rate (3e-3) and a fixed 100-step warmup, C = 6 N D with the
          non-embedding N (Kaplan-like)                          sweeps/porian_cpu_i.py
    (ii)  the head's FLOPs counted in C: the exact count, budgets 5e11-2e12
                                                                 sweeps/porian_cpu_ii.py
    (iii) the warmup scaled to model size (N tokens)             sweeps/porian_cpu_iv.py at 3e-3
    (iv)  the learning rate tuned per size (1e-3 to 3e-2)     sweeps/porian_cpu_iv.py, best

Each step is fitted with approach 2 (bootstrap over budgets and the points within them).
Then the backtest: step (iv)'s law, fitted on its three budgets (up to 2e12 exact FLOPs),
names the compute-optimal size at 4x the largest budget (8e12); that model is trained with
the same warmup rule and LR grid, and approaches 2 and 3 predict its held-out loss.

    lm sweep study --config experiments/studies/porian_cpu.py --workdir runs/porian --parallel 2

13 + 12 + 48 sweep runs and 4 backtest runs.
"""


def get_study():
    return {
        "steps": [
            {"name": "i", "title": "one LR, fixed 100-step warmup, C = 6ND with non-embedding N "
                                   "(KM-like)", "sweep": "../sweeps/porian_cpu_i.py"},
            {"name": "ii", "title": "head FLOPs counted in C (exact count)",
             "sweep": "../sweeps/porian_cpu_ii.py"},
            {"name": "iii", "title": "warmup scaled to N (N tokens)",
             "sweep": "../sweeps/porian_cpu_iv.py", "fit": {"members": "train.lr=0.003"}},
            {"name": "iv", "title": "LR tuned per size (1e-3, 3e-3, 1e-2, 3e-2)",
             "sweep": "../sweeps/porian_cpu_iv.py"},
        ],
        "method": "approach2",
        "bootstrap": 200,
        "seed": 0,
        "backtest": {"step": "iv", "factor": 4, "methods": ["approach2", "approach3"],
                     "size_from": "approach2"},
    }
