"""`lm data prepare` given bad input the way a new user gives it: each case ends in a
quarantine entry, a listed skipped file, or one line naming the file, field or flag."""

import fcntl
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from lm.cli import main
from lm.config import ConfigError
from lm.data.prepare.executor import prepare
from lm.data.prepare.output import iter_clean
from lm.data.prepare.quarantine import QuarantineEntry, read_quarantine
from lm.data.prepare.recipe import validate_recipe
from lm.data.read import DataError
from tests.test_prepare_pipeline import output_bytes, recipe_dict, write_corpus

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).parents[2] / "shared" / "data"


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(json.dumps({"text": f"document {i} about rivers and mills"}).encode() + b"\n"
                    for i in range(start, start + n))


def simple(path, **extra) -> dict:
    return {"sources": [{"name": "s", "path": str(path)}], "tokenizer": None, **extra}


def run(tmp_path: Path, raw: dict, out: str = "out", **kwargs) -> dict:
    return prepare(validate_recipe(raw, base_dir=tmp_path), tmp_path / out, progress=False, **kwargs)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`lm data ...` in this process: exit status, stdout, and stderr without progress bars."""
    rc = main(["data", *args])
    captured = capsys.readouterr()
    return rc, captured.out, "".join(line + "\n" for line in without_progress(captured.err))


def without_progress(err: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]+", err) if line and not re.match(r"pass \d+/\d+", line)]


def write_recipe(path: Path, raw: dict) -> Path:
    path.write_text(f"def get_recipe():\n    return {raw!r}\n")
    return path


# --- corrupt compressed input -------------------------------------------------------------------


def corrupt_gzip() -> bytes:
    """Three good lines, then a second gzip member whose deflate data is invalid."""
    return gzip.compress(lines(3), mtime=0) + gzip.compress(b"", mtime=0)[:10] + b"\x07" + bytes(30)


def corrupt_zstd() -> bytes:
    """Three good lines in one zstd frame, then a frame with a damaged header byte."""
    second = bytearray(zstandard.ZstdCompressor().compress(lines(50, start=3)))
    second[10] ^= 0xFF
    return zstandard.ZstdCompressor().compress(lines(3)) + bytes(second)


@pytest.mark.parametrize("name, data, detail", [
    ("a.jsonl.gz", corrupt_gzip(), "Error -3 while decompressing data: invalid block type"),
    ("a.jsonl.zst", corrupt_zstd(), "zstd decompressor error: Data corruption detected"),
])
def test_a_stream_corrupted_mid_file_is_quarantined_with_file_and_line(tmp_path, name, data, detail):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_bytes(data)
    rep = run(tmp_path, simple(tmp_path / "d", execution={"docs_per_task": 2}))
    assert rep["documents"] == {"read": 4, "quarantined": 1, "entered_steps": 3, "dropped": 0, "clean": 3}
    assert read_quarantine(tmp_path / "out" / "quarantine.jsonl") == [QuarantineEntry(
        "s", name, 4, f"corrupt or truncated file: cannot read line 4 or after ({detail})", "")]


# --- files that are not read ----------------------------------------------------------------


def skipped(out: Path) -> list[tuple[str, str]]:
    return [(f["path"], f["reason"]) for f in json.loads((out / "report.json").read_text())["inputs"]["skipped"]]


def test_symlink_loops_and_broken_links_are_skipped_and_listed(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("a real document")
    (d / "loop.txt").symlink_to("loop.txt")
    (d / "broken.md").symlink_to("missing.md")
    os.mkfifo(d / "pipe.txt")
    recipe = write_recipe(tmp_path / "r.py", simple(d))
    rc, out, err = cli(capsys, "prepare", "--config", str(recipe), "--output", str(tmp_path / "out"))
    assert (rc, err) == (0, "")
    assert out == (f"1 records read: 0 quarantined, 0 dropped, 1 clean; 3 files not read (listed in the report); "
                   f"report: {tmp_path / 'out' / 'report.md'}\n")
    assert skipped(tmp_path / "out") == [("broken.md", "broken symbolic link"), ("loop.txt", "symbolic link loop"),
                                         ("pipe.txt", "not a regular file")]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| symbolic link loop | 1 |" in report and "- `s/loop.txt`: symbolic link loop" in report


def test_a_glob_repeating_through_directory_symlinks_reads_each_file_once(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.jsonl").write_bytes(lines(2))
    (d / "sub" / "b.jsonl").write_bytes(lines(3, start=2))
    (d / "sub" / "again").symlink_to("..")  # a loop: d/sub/again/sub/again/...
    rep = run(tmp_path, simple(str(d / "**" / "*.jsonl")))
    assert rep["documents"]["read"] == 5 and rep["documents"]["clean"] == 5
    assert [r.id for r in iter_clean(tmp_path / "out" / "clean")] == [
        "s/a.jsonl:1", "s/a.jsonl:2", "s/sub/b.jsonl:1", "s/sub/b.jsonl:2", "s/sub/b.jsonl:3"]
    listed = skipped(tmp_path / "out")
    assert len(listed) > 10 and {reason for _, reason in listed} == {"another path to a file already read"}
    assert ("sub/again/a.jsonl", "another path to a file already read") in listed


def test_files_the_readers_do_not_read_are_listed_with_a_reason(tmp_path):
    d = tmp_path / "d"
    (d / ".git").mkdir(parents=True)
    (d / ".git" / "HEAD").write_text("ref")
    (d / "a.txt").write_text("plain text")
    (d / "b.JSONL").write_bytes(lines(1))
    (d / "c.txt.gz").write_bytes(gzip.compress(b"compressed text", mtime=0))
    for name in ("d.png", "e.html", "README", "f.json", ".hidden.txt", "g.csv.gz"):
        (d / name).write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (d / "linked").symlink_to(tmp_path / "elsewhere")
    rep = run(tmp_path, simple(d))
    assert sorted(r.text for r in iter_clean(tmp_path / "out" / "clean")) == [
        "compressed text", "document 0 about rivers and mills", "plain text"]
    assert rep["inputs"]["files_read"] == 3
    assert skipped(tmp_path / "out") == [
        (".git", "hidden directory"), (".hidden.txt", "hidden file"), ("README", "no suffix"),
        ("d.png", "unsupported suffix '.png'"), ("e.html", "unsupported suffix '.html'"),
        ("f.json", "unsupported suffix '.json'"), ("g.csv.gz", "unsupported suffix '.csv.gz'"),
        ("linked", "symbolic link to a directory (not followed)")]
    assert rep["inputs"]["skipped_by_reason"]["unsupported suffix '.png'"] == 1


def test_a_source_with_nothing_readable_names_what_it_skipped(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(b"x")
    with pytest.raises(DataError) as err:
        run(tmp_path, simple(tmp_path / "d"))
    assert str(err.value) == (f"source path {tmp_path / 'd'}: no readable files of format 'auto' "
                              "(not read: 1 unsupported suffix '.png')")


# --- step arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("step, message", [
    ({"step": "minhash_dedup", "threshold": "0.8"},
     "recipe field 'steps[0].threshold': '0.8' must be a number or None, not str (step 'minhash_dedup')"),
    ({"step": "minhash_dedup", "threshold": 80},
     "recipe field 'steps[0].threshold': 80 must be in (0, 1] (step 'minhash_dedup')"),
    ({"step": "gopher_quality", "min_words": "50"},
     "recipe field 'steps[0].min_words': '50' must be an integer, not str (step 'gopher_quality')"),
    ({"step": "gopher_quality", "max_bullet_lines": 90},
     "recipe field 'steps[0].max_bullet_lines': 90 must be in [0, 1] (step 'gopher_quality')"),
    ({"step": "language", "keep": {"en": "0.8"}},
     "recipe field 'steps[0].keep': {'en': '0.8'} must be a dict of str -> number, not dict (step 'language')"),
    ({"step": "fineweb", "max_short_lines": -1},
     "recipe field 'steps[0].max_short_lines': -1 must be in [0, 1] (step 'fineweb')"),
    ({"step": "c4_lines", "min_words_per_line": 2.5},
     "recipe field 'steps[0].min_words_per_line': 2.5 must be an integer, not float (step 'c4_lines')"),
    ({"step": 7}, "recipe field 'steps[0]' must be a dict with a 'step' key naming a step, got {'step': 7}"),
])
def test_step_arguments_of_the_wrong_type_or_range_fail_validation(step, message):
    with pytest.raises(ConfigError) as err:
        validate_recipe(simple("data", steps=[step]), base_dir=Path("/tmp"))
    assert str(err.value) == message


def test_a_corrected_recipe_runs_in_the_same_output(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_bytes(lines(3))
    out = str(tmp_path / "out")
    bad = write_recipe(tmp_path / "bad.py", simple(tmp_path / "d", steps=[{"step": "gopher_quality",
                                                                           "min_words": "50"}]))
    rc, _, err = cli(capsys, "prepare", "--config", str(bad), "--output", out)
    assert (rc, err) == (2, "lm data: error: recipe field 'steps[0].min_words': '50' must be an integer, not str "
                            "(step 'gopher_quality')\n")
    good = write_recipe(tmp_path / "good.py", simple(tmp_path / "d", steps=[{"step": "gopher_quality",
                                                                             "min_words": 5}]))
    rc, _, err = cli(capsys, "prepare", "--config", str(good), "--output", out)
    assert (rc, err) == (0, "")


def test_a_recipe_can_change_while_no_task_has_finished(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_bytes(lines(3))
    crash = {"step": "tests.test_prepare_pipeline:BadReturn"}
    with pytest.raises(DataError, match="returned int"):
        run(tmp_path, simple(tmp_path / "d", steps=[crash]))
    assert run(tmp_path, simple(tmp_path / "d"))["documents"]["clean"] == 3


# --- the output directory -------------------------------------------------------------------


def test_an_output_that_is_a_file_or_cannot_be_created_is_one_line(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_bytes(lines(1))
    recipe = str(write_recipe(tmp_path / "r.py", simple(tmp_path / "d")))
    (tmp_path / "file").write_text("x")
    rc, _, err = cli(capsys, "prepare", "--config", recipe, "--output", str(tmp_path / "file"))
    assert (rc, err) == (1, f"lm data: error: --output {tmp_path / 'file'} is a file; give a directory "
                            "(a new one, or an earlier run's to resume it)\n")
    rc, _, err = cli(capsys, "prepare", "--config", recipe, "--output", str(tmp_path / "file" / "sub"))
    assert (rc, err) == (1, f"lm data: error: --output {tmp_path / 'file' / 'sub'}: cannot create the directory "
                            "(Not a directory)\n")


def test_an_output_that_is_not_writable_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere: use a directory the kernel refuses to write
        locked = Path("/sys/kernel")
        if not locked.is_dir() or os.access(locked, os.W_OK) and _can_create(locked):
            pytest.skip("running as root and /sys/kernel is writable: no unwritable directory to test with")
    (tmp_path / "a.jsonl").write_bytes(lines(1))
    with pytest.raises(DataError) as err:
        run(tmp_path, simple(tmp_path / "a.jsonl"), out=str(locked))
    assert str(err.value).startswith(f"--output {locked} is not writable (")
    assert str(err.value).endswith("); give a directory you can write to")


def _can_create(directory: Path) -> bool:
    try:
        (directory / ".lm-probe").touch()
    except OSError:
        return False
    (directory / ".lm-probe").unlink()
    return True


def test_an_output_holding_another_corpus_is_refused(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(lines(2))
    other = tmp_path / "other"
    (other / "clean").mkdir(parents=True)
    (other / "clean" / "shard-00000.jsonl.zst").write_bytes(b"")
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError) as err:
        run(tmp_path, simple(tmp_path / "a.jsonl"), out="other")
    assert str(err.value) == (f"--output {other} holds files (clean, notes.txt) but no recipe.json, so it is not "
                              "an `lm data prepare` run directory; give a new or empty directory")


def test_an_output_in_use_by_another_prepare_is_refused(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(lines(2))
    run(tmp_path, simple(tmp_path / "a.jsonl"))
    with open(tmp_path / "out" / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError, match=r"is in use by another `lm data prepare`; wait for it to finish"):
            run(tmp_path, simple(tmp_path / "a.jsonl"))


def test_temporary_files_of_a_killed_run_are_removed_on_the_rerun(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(lines(4))
    run(tmp_path, simple(tmp_path / "a.jsonl"))
    clean = tmp_path / "out" / "clean"
    # A writer killed inside lm.files.atomic_write leaves its temporary file behind.
    code = ("import os, signal, sys\nfrom pathlib import Path\nfrom lm.files import atomic_write\n"
            "with atomic_write(Path(sys.argv[1])) as f:\n    f.write(b'half')\n    f.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code, str(clean / "shard-00000.jsonl.zst")], cwd=ROOT, check=False)
    left = [p.name for p in clean.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".shard-00000.jsonl.zst.")
    run(tmp_path, simple(tmp_path / "a.jsonl"))
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]
    assert len(list(iter_clean(clean))) == 4


# --- inputs that changed after planning -------------------------------------------------------


def test_grown_or_new_inputs_are_detected_and_replan_reads_them(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.jsonl").write_bytes(lines(3))
    recipe = str(write_recipe(tmp_path / "r.py", simple(str(d / "*.jsonl"))))
    out = tmp_path / "out"
    assert cli(capsys, "prepare", "--config", recipe, "--output", str(out))[0] == 0
    with open(d / "a.jsonl", "ab") as f:
        f.write(lines(2, start=3))
    (d / "b.jsonl").write_bytes(lines(1, start=5))
    rc, _, err = cli(capsys, "prepare", "--config", recipe, "--output", str(out))
    assert (rc, err) == (1, f"lm data: error: the inputs changed since {out} was planned (source 's': a.jsonl "
                            f"changed size {len(lines(3))} -> {len(lines(5))} bytes; new: b.jsonl); its work would "
                            "leave the change out. Rerun with --replan to prepare it again from the current inputs "
                            "(its finished work is discarded), or restore the inputs\n")
    rc, stdout, err = cli(capsys, "prepare", "--config", recipe, "--output", str(out), "--replan")
    assert (rc, err) == (0, "") and stdout.startswith("6 records read: 0 quarantined, 0 dropped, 6 clean;")
    assert cli(capsys, "prepare", "--config", recipe, "--output", str(out))[0] == 0


def test_a_different_recipe_points_at_replan(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(lines(3))
    run(tmp_path, simple(tmp_path / "a.jsonl"))
    with pytest.raises(DataError) as err:
        run(tmp_path, simple(tmp_path / "a.jsonl", execution={"docs_per_task": 1}))
    assert str(err.value) == (f"{tmp_path / 'out'} was prepared with a different recipe (see "
                              f"{tmp_path / 'out' / 'recipe.json'}); rerun with --replan to discard its work and "
                              "prepare it again with this recipe, or use another --output directory")
    assert run(tmp_path, simple(tmp_path / "a.jsonl", execution={"docs_per_task": 1}), replan=True)["tasks"] == 3


# --- the tokenizer's vocabulary -------------------------------------------------------------


@pytest.mark.skipif(not (SHARED / "zh" / "waimai_10k.csv").is_file(),
                    reason="needs ../shared/data/zh/waimai_10k.csv (real Chinese text)")
def test_a_vocabulary_too_small_for_the_characters_fails_before_the_passes(tmp_path):
    raw = {"sources": [{"name": "waimai", "path": str(SHARED / "zh" / "waimai_10k.csv"), "csv_column": "review"}],
           "tokenizer": {"vocab_size": 1000}}
    with pytest.raises(ConfigError) as err:
        run(tmp_path, raw)
    assert re.fullmatch(r"recipe field 'tokenizer.vocab_size': 1000 is too small for this corpus's characters: "
                        r"a sample of 2000 documents \(after the steps\) needs (\d+) pieces \((\d+) characters "
                        r"cover 99.95% of its text, plus 259 for bytes and special pieces\); raise vocab_size to "
                        r"at least \1 \(the whole corpus may need more\)", str(err.value)), str(err.value)
    assert not (tmp_path / "out" / "tasks" / "pass-0").exists() and not (tmp_path / "out" / "recipe.json").exists()


# --- training on an unfinished run ------------------------------------------------------------


def test_training_on_a_run_that_did_not_finish_says_so(tmp_path, capsys):
    data = write_corpus(tmp_path / "data", num_files=2)
    raw = {**recipe_dict(data, docs_per_task=4, steps=[{"step": "tests.test_prepare_bad_input:CrashOn",
                                                         "word": "number 9."}]),
           "mixture": {"temperature": 1.0}}  # the third of six tasks holds "number 9."
    with pytest.raises(RuntimeError, match="planted crash"):
        run(tmp_path, raw)
    rc = main(["train", "--config", str(ROOT / "experiments" / "configs" / "tiny.py"), "--workdir",
               str(tmp_path / "run"), f"--config.data.prepared_corpus={tmp_path / 'out'}"])
    assert (rc, capsys.readouterr().err) == (1, (
        f"lm train: error: data.prepared_corpus={tmp_path / 'out'}: `lm data prepare` did not finish there "
        "(no report.json; 2 of 6 tasks of pass 1 done); rerun the same `lm data prepare` command to finish it\n"))


class CrashOn:
    """Test filter: crashes on a document containing `word` (a bug in a step, mid-run)."""

    name = "crash_on"

    def __init__(self, word: str):
        self.word = word

    def __call__(self, text, lang):
        if self.word in text:
            raise RuntimeError("planted crash")
        return None


# --- SIGTERM and SIGINT ------------------------------------------------------------------------


@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 2), (signal.SIGINT, 1)], ids=["SIGTERM-pool", "SIGINT"])
def test_a_stop_signal_exits_75_and_the_rerun_equals_an_uninterrupted_run(tmp_path, sig, workers):
    data = write_corpus(tmp_path / "data", num_files=3, docs_per_file=10)
    tokenizer = None  # the SIGKILL test of test_prepare_pipeline resumes the tokenizer stages too
    reference = tmp_path / "reference"
    prepare(validate_recipe(recipe_dict(data, tokenizer=tokenizer), base_dir=tmp_path), reference, progress=False)
    recipe = write_recipe(tmp_path / "recipe.py", recipe_dict(data, slow=0.05, tokenizer=tokenizer))
    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "lm.cli", "data", "prepare", "--config", str(recipe), "--output", str(out),
           "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    markers = out / "tasks" / "pass-0"
    deadline = time.monotonic() + 60
    while len(list(markers.glob("*.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    num_tasks = len(json.loads((out / "tasks" / "plan.json").read_text()))
    done = len(list(markers.glob("*.json")))
    assert proc.returncode == 75, stderr.decode()
    assert 2 <= done < num_tasks, "the run was not stopped part way"
    assert without_progress(stderr.decode()) == [
        f"lm data: {sig.name} received; stopping after the work in flight (send it again to stop at once)",
        f"lm data: stopped by {sig.name} during pass 1/2 ({done} of {num_tasks} tasks done); finished work is kept; "
        "rerun the same command to resume"]
    assert not (out / "report.json").exists() and not list(out.rglob("*.tmp"))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    assert output_bytes(out) == output_bytes(reference)


def test_an_output_inside_the_source_directory_is_never_read_as_input(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.jsonl").write_bytes(lines(3))
    raw = simple(d, steps=[{"step": "exact_dedup"}])
    assert run(tmp_path, raw, out="d/prepared")["documents"]["read"] == 3
    rep = run(tmp_path, raw, out="d/prepared")  # a rerun sees its own outputs in d/, and leaves them
    assert rep["documents"]["read"] == 3
    assert rep["inputs"]["skipped"] == [{"source": "s", "path": "prepared",
                                         "reason": "the output directory of this run"}]
