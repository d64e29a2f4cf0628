"""Few-shot evaluation: task files, seeded few-shot prompts, scoring, discrete and
continuous metrics, generated offline tasks, and the lm-eval (EleutherAI
lm-evaluation-harness) adapter.

    schema      a task file (YAML / JSON) and its validation
    generators  deterministic offline tasks for a model trained on Python source
    sources     a task's examples (generated, CSV, JSONL)
    prompts     few-shot contexts
    scoring     batched log-likelihoods and greedy generation (KV cache)
    metrics     acc, acc_norm, Brier score, log-probability, exact match, edit distance
    run         `lm eval --task`
    harness     the `lm` model of lm-eval (optional extra `[eval]`)

Only lm.cli, lm.evaluate_cli and lm.sweep import this package.
"""
