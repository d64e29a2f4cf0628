"""The run report: report.json, report.md and plots/*.png, with counts that must add up.

Documents read = quarantined + entering the first step; every step's documents in
= out + dropped; each step's out = the next one's in; the last out = the clean
documents. `write_report` checks all of it and refuses to write a report that
does not add up. Files found but not read (`inputs.source_files`) are listed with
their reasons.
"""

from __future__ import annotations

from pathlib import Path

from lm.data.prepare.provenance import LENGTH_BINS_PER_DECADE, NUM_LENGTH_BINS, SCORE_BINS, Provenance, top_reasons
from lm.data.read import DataError
from lm.files import atomic_write, write_json_atomic

TOP_REASONS = 15
LISTED_SKIPPED = 50  # files not read, listed one by one in report.md (report.json has all)


def write_report(run_dir: Path, p: Provenance, *, step_order: list[str], num_tasks: int, clean_docs: int,
                 num_quarantined: int, token_manifests: dict[str, dict], files_read: int, skipped: list[dict]) -> dict:
    """Check the counts, write report.json, report.md and the plots; return the report dict.
    `skipped` lists the files found but not read: {"source", "path", "reason"}."""
    run_dir = Path(run_dir)
    steps = [_step_row(name, p.steps.get(name)) for name in step_order]
    quarantined = sum(p.read["quarantined"].values())
    documents = {"read": p.read["records"], "quarantined": quarantined,
                 "entered_steps": p.read["records"] - quarantined,
                 "dropped": sum(row["dropped_total"] for row in steps), "clean": clean_docs}
    _check_counts(documents, steps, num_quarantined, sum(p.length_out))
    by_reason: dict[str, int] = {}
    for entry in skipped:
        by_reason[entry["reason"]] = by_reason.get(entry["reason"], 0) + 1
    rep = {
        "tasks": num_tasks,
        "inputs": {"files_read": files_read, "files_skipped": len(skipped),
                   "skipped_by_reason": dict(sorted(by_reason.items())), "skipped": skipped},
        "documents": documents,
        "quarantine_reasons": p.read["quarantined"],
        "steps": steps,
        "top_removal_reasons": [{"step": s, "reason": r, "docs": n} for s, r, n in top_reasons(p, TOP_REASONS)],
        "examples": p.examples,
        "histograms": {"length_bin_edges_chars": [round(10 ** (b / LENGTH_BINS_PER_DECADE), 1)
                                                  for b in range(NUM_LENGTH_BINS + 1)],
                       "length_in": p.length_in, "length_out": p.length_out,
                       "lang_out": p.lang_out, "lang_removed": p.lang_removed,
                       "score_bin_edges": [b / SCORE_BINS for b in range(SCORE_BINS + 1)], "scores": p.scores},
        "tokens": token_manifests,
    }
    (run_dir / "plots").mkdir(exist_ok=True)
    _plot_lengths(p, run_dir / "plots" / "length.png")
    _plot_languages(p, run_dir / "plots" / "language.png")
    if p.scores:
        _plot_scores(p, run_dir / "plots" / "scores.png")
    write_json_atomic(rep, run_dir / "report.json")
    with atomic_write(run_dir / "report.md") as f:
        f.write(format_markdown(rep).encode("utf-8"))
    return rep


def _step_row(name: str, c: dict | None) -> dict:
    c = c or {"docs_in": 0, "docs_out": 0, "chars_in": 0, "chars_out": 0, "dropped": {}, "modified_docs": 0,
              "changes": {}}
    return {"step": name, "docs_in": c["docs_in"], "docs_out": c["docs_out"],
            "dropped_total": sum(c["dropped"].values()), "chars_in": c["chars_in"], "chars_out": c["chars_out"],
            "dropped": c["dropped"], "modified_docs": c["modified_docs"], "changes": c["changes"]}


def _check_counts(documents: dict, steps: list[dict], num_quarantined: int, histogram_out: int) -> None:
    problems = []
    if num_quarantined != documents["quarantined"]:
        problems.append(f"quarantine.jsonl holds {num_quarantined} entries but {documents['quarantined']} were counted")
    flowing = documents["entered_steps"]
    for row in steps:
        if row["docs_in"] != flowing:
            problems.append(f"step {row['step']!r} received {row['docs_in']} documents, expected {flowing}")
        if row["docs_in"] != row["docs_out"] + row["dropped_total"]:
            problems.append(f"step {row['step']!r}: in {row['docs_in']} != out {row['docs_out']} + "
                            f"dropped {row['dropped_total']}")
        flowing = row["docs_out"]
    if flowing != documents["clean"] or histogram_out != documents["clean"]:
        problems.append(f"{flowing} documents left the last step, {histogram_out} were counted as output, "
                        f"but clean/ holds {documents['clean']}")
    if problems:
        raise DataError("report counts do not add up: " + "; ".join(problems))


def format_markdown(rep: dict) -> str:
    """report.md: totals, the per-step table, top reasons, quarantine reasons and examples."""
    d = rep["documents"]
    lines = ["# Data preparation report", "",
             f"{d['read']} records read in {rep['tasks']} tasks: {d['quarantined']} quarantined, "
             f"{d['entered_steps']} entered the steps, {d['dropped']} dropped, {d['clean']} clean.", "",
             "| step | docs in | docs out | dropped | modified | chars in | chars out |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['docs_in']} | {r['docs_out']} | {r['dropped_total']} | {r['modified_docs']} | "
              f"{r['chars_in']} | {r['chars_out']} |" for r in rep["steps"]]
    if rep["tokens"]:
        lines += ["", "## Tokens", "", "| group | documents | tokens | held-out documents | held-out tokens |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {g} | {t['num_docs']} | {t['num_tokens']} | {t.get('heldout_docs', 0)} | "
                  f"{t.get('heldout_tokens', 0)} |" for g, t in rep["tokens"].items()]
    lines += ["", "## Top removal reasons", "", "| step | reason | documents |", "|---|---|---:|"]
    lines += [f"| {r['step']} | {r['reason']} | {r['docs']} |" for r in rep["top_removal_reasons"]]
    lines += ["", "## Quarantine", "", "| reason | records |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in rep["quarantine_reasons"].items()]
    lines += _skipped_markdown(rep["inputs"])
    changes = [(r["step"], kind, n) for r in rep["steps"] for kind, n in r["changes"].items()]
    if changes:
        lines += ["", "## Changes", "", "| step | kind | count |", "|---|---|---:|"]
        lines += [f"| {s} | {kind} | {n} |" for s, kind, n in changes]
    scores, edges = rep["histograms"].get("scores", {}), rep["histograms"].get("score_bin_edges", [])
    lines += ["", "## Languages (clean)", "", ", ".join(f"{k}: {n}" for k, n in rep["histograms"]["lang_out"].items()),
              "", "Plots: plots/length.png, plots/language.png" + (", plots/scores.png" if scores else "")]
    if scores:
        lines += ["", "## Classifier scores", "", "| step | scored | kept | dropped | mean score (bin centres) |",
                  "|---|---:|---:|---:|---:|"]
        lines += [_score_row(step, bins, edges) for step, bins in scores.items()]
    lines += ["", "## Examples of removed text", ""]
    for reason, examples in rep["examples"].items():
        lines.append(f"### {reason}")
        for ex in examples:
            text = ex["text"].replace("\n", " ").replace("|", "\\|")
            lines.append(f"- `{ex['id']}`: {text[:200]}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _score_row(step: str, bins: dict, edges: list[float]) -> str:
    """One row of the classifier-score table; the mean takes each score at its bin's centre."""
    counts = [k + d for k, d in zip(bins["kept"], bins["dropped"])]
    total = sum(counts)
    mean = sum(n * (lo + hi) / 2 for n, lo, hi in zip(counts, edges, edges[1:])) / total if total else 0.0
    return f"| {step} | {total} | {sum(bins['kept'])} | {sum(bins['dropped'])} | {mean:.3f} |"


def _skipped_markdown(inputs: dict) -> list[str]:
    if not inputs["files_skipped"]:
        return []
    lines = ["", "## Files not read", "",
             f"{inputs['files_read']} files read; {inputs['files_skipped']} found but not read (a file named as a "
             "source's path is read whatever its suffix; a source's `format` reads other suffixes of a glob):", "",
             "| reason | files |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in inputs["skipped_by_reason"].items()]
    lines.append("")
    lines += [f"- `{e['source']}/{e['path']}`: {e['reason']}" for e in inputs["skipped"][:LISTED_SKIPPED]]
    if inputs["files_skipped"] > LISTED_SKIPPED:
        lines.append(f"- ... and {inputs['files_skipped'] - LISTED_SKIPPED} more (report.json lists them all)")
    return lines


def _figure():
    """A 7x4 inch Agg figure (matplotlib is imported here: pipeline workers never need it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", metadata={"Software": None})


def _plot_lengths(p: Provenance, path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    edges = [10 ** (b / LENGTH_BINS_PER_DECADE) for b in range(NUM_LENGTH_BINS + 1)]
    ax.stairs(p.length_in, edges, label="entered the steps")
    ax.stairs(p.length_out, edges, label="clean", fill=True, alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("document length (characters)")
    ax.set_title("document lengths")
    ax.set_ylabel("documents")
    ax.legend()
    _save(fig, path)


def _plot_languages(p: Provenance, path: Path) -> None:
    total = {k: p.lang_out.get(k, 0) + p.lang_removed.get(k, 0) for k in set(p.lang_out) | set(p.lang_removed)}
    langs = sorted(total, key=lambda k: (-total[k], k))[:20]
    fig = _figure()
    ax = fig.add_subplot()
    x = range(len(langs))
    ax.bar([i - 0.2 for i in x], [p.lang_out.get(k, 0) for k in langs], width=0.4, label="clean")
    ax.bar([i + 0.2 for i in x], [p.lang_removed.get(k, 0) for k in langs], width=0.4, label="removed")
    ax.set_xticks(list(x), langs)
    ax.set_yscale("log")
    ax.set_ylabel("documents (log scale)")
    ax.set_title("languages of clean and removed documents")
    ax.legend()
    _save(fig, path)


def _plot_scores(p: Provenance, path: Path) -> None:
    """One panel per classifier step: the histogram of its scores, kept and dropped stacked."""
    fig = _figure()
    edges = [b / SCORE_BINS for b in range(SCORE_BINS + 1)]
    for i, (step, bins) in enumerate(p.scores.items()):
        ax = fig.add_subplot(1, len(p.scores), i + 1)
        ax.stairs(bins["kept"], edges, label="kept", fill=True, alpha=0.6)
        ax.stairs([k + d for k, d in zip(bins["kept"], bins["dropped"])], edges, label="kept + dropped")
        ax.set_xlabel("score")
        ax.set_title(step)
        if i == 0:
            ax.set_ylabel("documents")
            ax.legend()
    _save(fig, path)
