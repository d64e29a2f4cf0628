"""`lm data prepare`: raw documents -> steps chosen by a recipe -> clean shards, tokenizer,
token shards and a report of what was dropped and why.

A recipe (`recipe`) lists sources and ordered steps (`steps` registry: normalise,
language id, heuristic and classifier filters, PII redaction, exact / fuzzy / line
dedup). The input is split into tasks (`plan`); each pass of per-document steps runs
every task (`pipeline.run_task`) on a local process pool or on Ray (`executor`,
`ray_executor`); cross-shard dedup (`dedup_stage`) runs between passes. Bad input is
quarantined (`quarantine`), every drop and change is counted (`provenance`) and
reported (`report`). The clean text trains a tokenizer and becomes token shards
(`tokenize_stage`), which a mixture (`mixture`) feeds to training.

Which files a source reads, and which it does not and why, is `inputs`' job; the run
directory is checked, locked and cleaned by `rundir`; SIGTERM / SIGINT stop a run
between tasks (`lm.data.stop`, exit status 75 from the CLI) and the same command
resumes it. A rerun refuses inputs that changed since planning; ``--replan`` plans again.

Layout of an output directory:

    .lock                    held by the running `lm data prepare` (a second one is refused)
    recipe.json              the validated recipe (a rerun with another recipe is refused)
    clean/                   shard-NNNNN.jsonl.zst (id, source, lang, meta, text) + manifest.json
    removed/                 <task>.pK.jsonl.zst: dropped documents (id, source, lang, step, reason,
                             chars, text cut to output.removed_text_chars)
    quarantine.jsonl         bad input: source, file, line, reason, excerpt
    tokenizer/               tokenizer.model + tokenizer.json
    tokens/<group>/          token shards (lm.data.shards) per source or language: the training side
    heldout/<group>/         the held-out side (documents chosen by a hash of their text,
                             recipe field tokens.heldout_fraction); never in tokens/
    report.json, report.md   counts per step, top removal reasons, examples, histograms, files not read
    plots/                   length.png, language.png
    tasks/                   inputs.json (files read: size, mtime; files not read: why), plan.json and
                             pass-K/<task>.json done-markers (with counters)
    work/, quarantine/       per-task intermediate files, kept so that reruns skip finished work
"""
