"""Scaling-law sweeps: plan model sizes and token counts, run them, collect the results.

    plan.py     shapes for a target N, steps for D, D for a FLOP budget, RunSpec, the table
    grid.py     sweep files (experiments/sweeps/*.py): validation and expansion into runs
    tune.py     rules and tune grids: hyperparameters per point, members and their names
    runner.py   local runs as subprocesses, resumable; run status
    results.py  results.csv and curves.csv, and `read_results`
    status.py   `lm sweep status`'s report (a tuned sweep's best member per point)
    slurm.py    a Slurm job array, one task per run
    study.py    `lm sweep study`: several sweeps, a fit per step, a backtest run (study files
                in study_file.py; fits in study_fit.py; the backtest sweep in
                study_backtest.py; study.md in study_report.py)
    task_eval.py  `lm sweep eval`: task metrics of every run and kept checkpoint (the table:
                task_table.py)
    task_plots.py their plots against compute and held-out loss, and where they jump
    cli.py      `lm sweep plan | run | status | eval | slurm | study`
"""
