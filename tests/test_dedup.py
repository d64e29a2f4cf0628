"""Tests of lm.data.dedup: exact, MinHash LSH and line dedup across shard files."""

from __future__ import annotations

import csv
import pickle
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from lm.data.dedup import (
    LineCounter, MinHasher, RepeatedLineRemover, candidate_probability, cluster_near_duplicates,
    estimated_jaccard, exact_key, find_exact_duplicates, load_drops, merge_line_counts, normalize,
    threshold_for, write_exact_keys, write_signatures)
from lm.data.dedup.exact import normalize_lines
from lm.data.dedup.unionfind import UnionFind

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WIKITEXT = DATA / "en" / "wikitext2_valid.tokens.txt"
HOTEL_REVIEWS = DATA / "zh" / "chnsenticorp_htl_all.csv"
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers

def shingles(text: str, n: int = 5, char: bool = False) -> set:
    """Ground-truth shingle set, built independently of the hashing code."""
    norm = normalize(text)
    units = list(norm) if char else norm.split(" ")
    if not norm:
        return set()
    return {tuple(units[i:i + n]) for i in range(max(len(units) - n + 1, 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def edit_to_jaccard(words: list[str], target: float, vocab: list[str], rng: np.random.Generator,
                    char: bool = False) -> tuple[str, float]:
    """Random substitutions, insertions and deletions of words (characters) until the
    shingle Jaccard with the original drops to ``target`` or below; returns (text, Jaccard)."""
    sep = "" if char else " "
    original = shingles(sep.join(words), char=char)
    edited, j = list(words), 1.0
    # An edit changes about 5 shingles of len(words): J ~ (S - 5k) / (S + 5k). Make 80%
    # of the k this predicts before measuring, then one edit at a time.
    batch = max(int(0.8 * len(words) * (1 - target) / (5 * (1 + target))), 1)
    while j > target:
        for _ in range(batch):
            op, pos = rng.random(), int(rng.integers(len(edited)))
            if op < 0.6:
                edited[pos] = vocab[rng.integers(len(vocab))]
            elif op < 0.8 and len(edited) > 10:
                del edited[pos]
            else:
                edited.insert(pos, vocab[rng.integers(len(vocab))])
        batch = 1
        j = jaccard(original, shingles(sep.join(edited), char=char))
    return sep.join(edited), j


def sign_shards(tmp_path: Path, shards: dict[str, list[tuple[str, str]]], hasher: MinHasher,
                lang: str | None = None) -> list[Path]:
    """Write one signature file per shard {name: [(id, text), ...]}; return the paths."""
    paths = []
    for name, docs in shards.items():
        path = tmp_path / f"{name}.sig.npz"
        sigs = np.stack([hasher.signature(text, lang) for _, text in docs])
        write_signatures(path, name, [i for i, _ in docs], sigs, hasher)
        paths.append(path)
    return paths


def kept_of(drop_path: Path, shards: list[str]) -> dict[str, str]:
    """doc id -> id of the doc kept in its place, for every dropped doc of ``shards``."""
    return {i: d.kept_id for s in shards for i, d in load_drops(drop_path, s).items()}


def wikitext_paragraphs(min_words: int) -> list[list[str]]:
    if not WIKITEXT.exists():
        pytest.skip(f"{WIKITEXT} is absent (shared test data, not part of the repository)")
    lines = WIKITEXT.read_text(encoding="utf-8").splitlines()
    paragraphs = [l.split() for l in lines if l.strip() and not l.strip().startswith("=")]
    return [p for p in paragraphs if len(p) >= min_words]


def synthetic_paragraphs(count: int, words: int, rng: np.random.Generator) -> list[list[str]]:
    vocab = [f"w{i}" for i in range(5000)]
    return [[vocab[k] for k in rng.integers(len(vocab), size=words)] for _ in range(count)]


# ---------------------------------------------------------------- normalisation and exact dedup

def test_normalize_case_punctuation_whitespace():
    assert normalize("  Hello,  World!\n\tIt's\u3000fine\u2014 ok. ") == "hello world it s fine ok"
    assert normalize("...!?") == "" and normalize("") == ""
    assert normalize("中文，标点。") == "中文 标点"
    assert normalize("हिन्दी") == "हिन्दी"  # combining marks are not punctuation
    assert normalize("$5 + 3%") == "$5 + 3"  # symbols stay, % is punctuation


def test_normalize_lines_matches_normalizing_each_line():
    texts = ["Title:\n  Body text, here.\r\n\n - * -\n", "\nA\n", "\u0130stanbul\nB. ,\n", "one line", "",
             "lone \ud800 surrogate\ttab"]
    for text in texts:
        assert normalize_lines(text) == [normalize(line) for line in text.split("\n")]
    assert normalize("lone \ud800 surrogate") == "lone \ud800 surrogate"


def test_separator_table_covers_every_code_point():
    """The table stops at U+20000 because no punctuation or whitespace lies above it."""
    above = [c for c in range(0x20000, sys.maxunicode + 1)
             if chr(c).isspace() or unicodedata.category(chr(c))[0] == "P"]
    assert above == []


def test_exact_dedup_across_two_shard_files(tmp_path):
    a = [("a:0", "The cat sat."), ("a:1", "Dogs bark!"), ("a:2", "the CAT   sat")]
    b = [("b:0", "dogs, bark"), ("b:1", "A new text"), ("b:2", "The cat sat on a mat.")]
    for name, docs in (("shard-a", a), ("shard-b", b)):
        write_exact_keys(tmp_path / f"{name}.npz", name, [i for i, _ in docs], [exact_key(t) for _, t in docs])
    out = tmp_path / "exact_drops.npz"
    stats = find_exact_duplicates([tmp_path / "shard-b.npz", tmp_path / "shard-a.npz"], out)

    assert (stats.docs, stats.shards, stats.clusters, stats.dropped) == (6, 2, 2, 2)
    assert load_drops(out, "shard-a") == {"a:2": (0, "shard-a", "a:0")}
    assert load_drops(out, "shard-b") == {"b:0": (1, "shard-a", "a:1")}
    with pytest.raises(ValueError, match="shard 'shard-c' was not part"):
        load_drops(out, "shard-c")


def test_shard_file_errors(tmp_path):
    key = exact_key("x")
    with pytest.raises(ValueError, match="'d1' appears twice"):
        write_exact_keys(tmp_path / "a.npz", "a", ["d1", "d1"], [key, key])
    with pytest.raises(ValueError, match="2 ids but 1 keys"):
        write_exact_keys(tmp_path / "a.npz", "a", ["d1", "d2"], [key])
    write_exact_keys(tmp_path / "a.npz", "a", ["d1"], [key])
    write_exact_keys(tmp_path / "b.npz", "a", ["d2"], [key])
    with pytest.raises(ValueError, match="both hold shard 'a'"):
        find_exact_duplicates([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "out.npz")
    with pytest.raises(ValueError, match="expected 'minhash_signatures'"):
        cluster_near_duplicates([tmp_path / "a.npz"], tmp_path / "out.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        find_exact_duplicates([tmp_path / "missing.npz"], tmp_path / "out.npz")
    with pytest.raises(ValueError, match="no exact_keys files given"):
        find_exact_duplicates([], tmp_path / "out.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="broken.npz: not a readable .npz file"):
        find_exact_duplicates([tmp_path / "broken.npz"], tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


# ---------------------------------------------------------------- MinHash and LSH

def test_threshold_and_candidate_probability():
    assert threshold_for(14, 8) == pytest.approx((1 / 14) ** (1 / 8)) == pytest.approx(0.7190, abs=1e-4)
    assert candidate_probability(0.8, 20, 5) == pytest.approx(1 - (1 - 0.8 ** 5) ** 20)
    s = np.linspace(0, 1, 11)
    p = candidate_probability(s, 32, 8)
    assert p[0] == 0 and p[-1] == 1 and np.all(np.diff(p) > 0)
    # At the threshold the probability is 1 - (1 - 1/b)^b, near 1 - 1/e for many bands.
    assert candidate_probability(threshold_for(32, 8), 32, 8) == pytest.approx(1 - (1 - 1 / 32) ** 32)


def test_bad_banding_is_a_clear_error(tmp_path):
    hasher = MinHasher(num_perm=128)
    paths = sign_shards(tmp_path, {"s": [("d", "some text here")]}, hasher)
    with pytest.raises(ValueError, match=r"16 x 9 = 144, but the signatures have num_perm=128"):
        cluster_near_duplicates(paths, tmp_path / "out.npz", bands=16, rows=9)
    with pytest.raises(ValueError, match="threshold=1.5"):
        cluster_near_duplicates(paths, tmp_path / "out.npz", bands=16, rows=8, threshold=1.5)
    with pytest.raises(ValueError, match="shingle='token'"):
        MinHasher(shingle="token")
    with pytest.raises(ValueError, match=r"uint32 \(docs, 64\)"):
        write_signatures(tmp_path / "x.npz", "s", ["d"], np.zeros((1, 128), np.uint32), MinHasher(num_perm=64))
    other = sign_shards(tmp_path / "o", {"t": [("e", "some text here")]}, MinHasher(num_perm=128, seed=2))
    with pytest.raises(ValueError, match="compute every shard with one config"):
        cluster_near_duplicates(paths + other, tmp_path / "out.npz", bands=16, rows=8)


def test_signatures_identical_in_another_process():
    texts = ["The quick brown fox jumps over the lazy dog.", "酒店位置很好，房间干净，服务也不错。", "", "short"]
    hasher = MinHasher(num_perm=64, seed=7)
    here = np.stack([hasher.signature(t, "zh" if i == 1 else None) for i, t in enumerate(texts)])
    code = ("import sys, numpy as np; from lm.data.dedup import MinHasher; texts = " + repr(texts) +
            "; h = MinHasher(num_perm=64, seed=7); sys.stdout.write(np.stack([h.signature(t, 'zh' if i == 1"
            " else None) for i, t in enumerate(texts)]).tobytes().hex())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}).stdout
    assert bytes.fromhex(out) == here.tobytes()
    assert np.array_equal(pickle.loads(pickle.dumps(hasher)).signature(texts[0]), here[0])
    assert np.all(here[2] == np.iinfo(np.uint32).max)  # empty text: no shingles
    assert not np.array_equal(MinHasher(num_perm=64, seed=8).signature(texts[0]), here[0])


def test_signatures_and_keys_are_stable_across_versions():
    """Known answers: signatures written by one release must match those of the next, or
    shards signed at different times would never be found to be duplicates."""
    hasher = MinHasher(num_perm=8, seed=1)
    assert hasher.signature("The quick brown fox jumps over the lazy dog.").tolist() == [
        971372176, 581481504, 504144807, 445948017, 1712837384, 2304628993, 135349764, 54474841]
    assert hasher.signature("酒店位置很好，房间干净", "zh").tolist() == [
        1287367601, 1997092064, 1499898550, 336422398, 20471501, 638707350, 865828690, 499531409]
    assert exact_key("Hello, World!").hex() == "d8fb721de80273379517f447e1f41574"


def test_short_and_repeated_documents():
    hasher = MinHasher(num_perm=64)
    # Fewer words than the n-gram: one shingle of all the words.
    assert len(hasher.shingle_hashes("just three words")) == 1
    assert estimated_jaccard(hasher.signature("just three words"), hasher.signature("Just, three words!")) == 1
    assert estimated_jaccard(hasher.signature("just three words"), hasher.signature("just two words")) < 0.2
    # A signature depends on the shingle set only: repeating the text changes nothing new.
    text = "a b c d e f g h"
    assert estimated_jaccard(hasher.signature(text), hasher.signature(text + " " + text)) > 0.5


@pytest.fixture(scope="module", params=["wikitext", "synthetic"])
def planted(request, tmp_path_factory):
    """Base paragraphs, each paired with a copy edited down to a target Jaccard, in 3
    shards; signatures with 256 permutations. Returns (pairs, signature paths, tmp dir)."""
    rng = np.random.default_rng(0)
    if request.param == "wikitext":
        bases = wikitext_paragraphs(min_words=150)
    else:
        bases = synthetic_paragraphs(540, 180, rng)
    vocab = sorted({w for p in bases for w in p})
    # Each copy is edited until its Jaccard first falls to the target or below.
    targets = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.88, 0.92, 0.96, 0.99]
    shards: dict[str, list[tuple[str, str]]] = {f"shard-{k}": [] for k in range(3)}
    pairs = []  # (id of base, id of edited copy, true Jaccard)
    for i, words in enumerate(bases[:540]):
        edited, j = edit_to_jaccard(words, targets[i % len(targets)], vocab, rng)
        a, b = f"base:{i}", f"edit:{i}"
        shards[f"shard-{i % 3}"].append((a, " ".join(words)))
        shards[f"shard-{(i + 1) % 3}"].append((b, edited))
        pairs.append((a, b, j))
    tmp = tmp_path_factory.mktemp(request.param)
    paths = sign_shards(tmp, shards, MinHasher(num_perm=256))
    return pairs, paths, tmp, request.param


def same_cluster(drop_path: Path, pairs, shard_names) -> np.ndarray:
    kept = kept_of(drop_path, shard_names)
    return np.array([kept.get(a, a) == kept.get(b, b) for a, b, _ in pairs])


def test_planted_near_duplicates_recall_and_false_positives(planted):
    pairs, paths, tmp, source = planted
    out = tmp / "drops_verified.npz"
    threshold = 0.8
    stats = cluster_near_duplicates(paths, out, bands=32, rows=8, threshold=threshold)
    found = same_cluster(out, pairs, ["shard-0", "shard-1", "shard-2"])
    true_j = np.array([j for _, _, j in pairs])
    high, low = true_j >= threshold + 0.05, true_j <= threshold - 0.2
    recall, false_positive = found[high].mean(), found[low].mean()
    print(f"\n{source}: recall {recall:.3f} over {high.sum()} pairs with J >= 0.85, "
          f"false positives {false_positive:.3f} over {low.sum()} pairs with J <= 0.6; {stats}")
    assert high.sum() >= 150 and low.sum() >= 150
    assert recall >= 0.95
    assert false_positive <= 0.05
    # A document is only ever dropped for its own partner (base or copy, whichever is first).
    kept = kept_of(out, ["shard-0", "shard-1", "shard-2"])
    assert all(d.split(":")[1] == k.split(":")[1] and d != k for d, k in kept.items())
    assert stats.dropped == found.sum()


def test_lsh_detection_follows_the_s_curve(planted):
    """Without verification, the share of pairs in one cluster per Jaccard bin matches
    1 - (1 - s^r)^b averaged over the bin's pairs (3 binomial standard errors + 0.05)."""
    pairs, paths, tmp, source = planted
    out = tmp / "drops_lsh.npz"
    cluster_near_duplicates(paths, out, bands=32, rows=8)
    found = same_cluster(out, pairs, ["shard-0", "shard-1", "shard-2"])
    true_j = np.array([j for _, _, j in pairs])
    for lo in np.arange(0.2, 1.0, 0.1):
        in_bin = (true_j > lo) & (true_j <= lo + 0.1)
        if in_bin.sum() < 20:
            continue
        predicted = candidate_probability(true_j[in_bin], 32, 8).mean()
        measured = found[in_bin].mean()
        tolerance = 3 * np.sqrt(max(predicted * (1 - predicted), 0.01) / in_bin.sum()) + 0.05
        assert abs(measured - predicted) <= tolerance, (source, lo, measured, predicted)


def test_cluster_spans_three_shards(tmp_path):
    rng = np.random.default_rng(3)
    words = synthetic_paragraphs(1, 400, rng)[0]
    vocab = [f"x{i}" for i in range(1000)]
    middle = list(words)
    for pos in rng.choice(np.arange(0, 200, 5), size=6, replace=False):
        middle[pos] = vocab[rng.integers(1000)]  # 6 edits in the first half
    last = list(middle)
    for pos in rng.choice(np.arange(200, 400, 5), size=6, replace=False):
        last[pos] = vocab[rng.integers(1000)]  # 6 more in the second half
    a, b, c = (" ".join(w) for w in (words, middle, last))
    unrelated = [" ".join(w) for w in synthetic_paragraphs(3, 400, rng)]
    hasher = MinHasher(num_perm=256)
    sig = {name: hasher.signature(t) for name, t in (("a", a), ("b", b), ("c", c))}
    threshold = 0.8
    assert estimated_jaccard(sig["a"], sig["b"]) >= threshold
    assert estimated_jaccard(sig["b"], sig["c"]) >= threshold
    assert estimated_jaccard(sig["a"], sig["c"]) < threshold  # A and C meet only through B

    shards = {"s1": [("x0", unrelated[0]), ("A", a)], "s2": [("B", b), ("x1", unrelated[1])],
              "s3": [("x2", unrelated[2]), ("C", c)]}
    paths = sign_shards(tmp_path, shards, hasher)
    out = tmp_path / "drops.npz"
    stats = cluster_near_duplicates(paths[::-1], out, bands=32, rows=8, threshold=threshold)
    assert (stats.docs, stats.shards, stats.clusters, stats.dropped) == (6, 3, 1, 2)
    assert load_drops(out, "s1") == {}
    assert load_drops(out, "s2") == {"B": (1, "s1", "A")}  # cluster id: A's global index
    assert load_drops(out, "s3") == {"C": (1, "s1", "A")}
    # Without B, A and C stay apart.
    alone = cluster_near_duplicates([paths[0], paths[2]], tmp_path / "ac.npz", bands=32, rows=8,
                                    threshold=threshold)
    assert alone.dropped == 0


def chinese_documents(rng: np.random.Generator) -> list[str]:
    if not HOTEL_REVIEWS.exists():
        pytest.skip(f"{HOTEL_REVIEWS} is absent (shared test data, not part of the repository)")
    with HOTEL_REVIEWS.open(encoding="utf-8") as f:
        reviews = [row["review"] for row in csv.DictReader(f) if 150 <= len(row["review"] or "") <= 400]
    picked = []
    for k in rng.permutation(len(reviews)):
        grams = shingles(reviews[k], char=True)
        if all(jaccard(grams, shingles(p, char=True)) < 0.3 for p in picked):
            picked.append(reviews[k])
        if len(picked) == 40:
            return picked
    raise AssertionError("fewer than 40 distinct long reviews")


@pytest.mark.parametrize("source", ["hotel_reviews", "synthetic"])
def test_chinese_near_duplicates_need_character_shingles(tmp_path, source):
    rng = np.random.default_rng(5)
    if source == "hotel_reviews":
        docs = chinese_documents(rng)
    else:
        docs = ["".join(chr(c) for c in rng.integers(0x4E00, 0x9FA6, size=200)) for _ in range(40)]
    chars = sorted({c for d in docs for c in d})
    copies = [edit_to_jaccard(list(d), 0.9, chars, rng, char=True) for d in docs[:20]]
    assert all(j >= 0.8 for _, j in copies)
    shards = {"zh-0": [(f"doc:{i}", d) for i, d in enumerate(docs)],
              "zh-1": [(f"copy:{i}", t) for i, (t, _) in enumerate(copies)]}
    hasher = MinHasher(num_perm=128)  # shingle="word", but "zh" gets character 5-grams
    out = tmp_path / "drops.npz"
    stats = cluster_near_duplicates(sign_shards(tmp_path, shards, hasher, lang="zh"), out,
                                    bands=16, rows=8, threshold=0.7)
    assert load_drops(out, "zh-0") == {}
    kept = {i: d.kept_id for i, d in load_drops(out, "zh-1").items()}
    assert kept == {f"copy:{i}": f"doc:{i}" for i in range(20)}
    assert stats.dropped == 20
    # Word shingles see a review without spaces as a few long "words": the copies are missed.
    word_sims = [estimated_jaccard(hasher.signature(d), hasher.signature(t)) for d, (t, _) in zip(docs, copies)]
    assert np.mean(word_sims) < 0.5
    char_hasher = MinHasher(num_perm=128, shingle="char")
    assert np.array_equal(char_hasher.signature(docs[0]), hasher.signature(docs[0], "zh"))


def test_verification_searches_past_an_unrelated_bucket_head(tmp_path):
    """Three documents share band 0; the first is unrelated to the other two, which are
    near-duplicates (15 of 16 values equal) but share no other band."""
    hasher = MinHasher(num_perm=16)
    band = list(range(1, 9))
    sigs = np.array([band + list(range(100, 108)), band + list(range(200, 208)),
                     band + list(range(200, 207)) + [999]], dtype=np.uint32)
    path = tmp_path / "s.npz"
    write_signatures(path, "s", ["head", "b", "c"], sigs, hasher)
    stats = cluster_near_duplicates([path], tmp_path / "v.npz", bands=2, rows=8, threshold=0.9)
    assert load_drops(tmp_path / "v.npz", "s") == {"c": (1, "s", "b")}
    assert stats.candidate_pairs == 3  # (head, b), (head, c), then (b, c)
    cluster_near_duplicates([path], tmp_path / "lsh.npz", bands=2, rows=8)
    assert set(load_drops(tmp_path / "lsh.npz", "s")) == {"b", "c"}  # LSH alone takes the bucket


def test_empty_documents_cluster_together(tmp_path):
    hasher = MinHasher(num_perm=32)
    paths = sign_shards(tmp_path, {"s": [("e1", ""), ("t", "real words in a sentence"), ("e2", " ... ")]}, hasher)
    cluster_near_duplicates(paths, tmp_path / "d.npz", bands=4, rows=8, threshold=0.9)
    assert load_drops(tmp_path / "d.npz", "s") == {"e2": (0, "s", "e1")}


def test_union_find_matches_graph_components():
    rng = np.random.default_rng(0)
    n = 300
    a, b = rng.integers(n, size=200), rng.integers(n, size=200)
    uf = UnionFind(n)
    uf.union(a[:100], b[:100])
    uf.union(a[100:], b[100:])
    # Reference: label propagation to the minimum over the edge list.
    label = np.arange(n)
    while True:
        new = label.copy()
        np.minimum.at(new, a, label[b])
        np.minimum.at(new, b, label[a])
        if np.array_equal(new, label):
            break
        label = new
    assert np.array_equal(uf.roots(np.arange(n)), label)


# ---------------------------------------------------------------- line dedup

def test_line_dedup_counts_across_shards(tmp_path):
    shards = [
        ["Home - About\nFirst story text.\nCopyright 2024 Example", "Home - about\nSecond story.\n\n"],
        ["HOME  about!\nThird story.\nThird story.", "* * *\nFourth story.\nCopyright 2024 Example."],
        ["Fifth story.\n* * *\nCopyright 2024 example\nHome - About"],
    ]
    paths = []
    for k, docs in enumerate(shards):
        counter = LineCounter("line")
        for d in docs:
            counter.add(d)
        counter.write(tmp_path / f"counts-{k}.npz")
        paths.append(tmp_path / f"counts-{k}.npz")
    frequent = tmp_path / "frequent.npz"
    # "home about" is in 4 documents, "copyright 2024 example" in 3, "third story" in 1
    # document (twice), "* * *" normalises to nothing and is never counted.
    assert merge_line_counts(paths, frequent, max_occurrences=3) == 1
    assert merge_line_counts(paths, frequent, max_occurrences=2) == 2
    remover = pickle.loads(pickle.dumps(RepeatedLineRemover(str(frequent))))
    assert remover.name == "line_dedup"
    assert remover(shards[0][0], "en") == ("First story text.", {"line": 2})
    assert remover(shards[0][1], "en") == ("Second story.\n\n", {"line": 1})
    assert remover(shards[1][0], "en") == ("Third story.\nThird story.", {"line": 1})
    assert remover(shards[2][0], "en") == ("Fifth story.\n* * *", {"line": 2})
    assert remover("Nothing repeated here.", None) == ("Nothing repeated here.", {})

    with pytest.raises(ValueError, match="max_occurrences=0"):
        merge_line_counts(paths, frequent, max_occurrences=0)
    with pytest.raises(ValueError, match="no count files"):
        merge_line_counts([], frequent, max_occurrences=1)
    counter = LineCounter("paragraph")
    counter.add("x")
    counter.write(tmp_path / "para.npz")
    with pytest.raises(ValueError, match="mix units"):
        merge_line_counts(paths + [tmp_path / "para.npz"], frequent, max_occurrences=1)


def test_paragraph_dedup(tmp_path):
    boiler = "Subscribe to our newsletter\nfor weekly news."
    docs = [f"Story {i} begins.\nIt goes on.\n\n{boiler}\n \n Story {i} ends." for i in range(3)]
    counter = LineCounter("paragraph")
    for d in docs:
        counter.add(d)
    counter.write(tmp_path / "counts.npz")
    assert merge_line_counts([tmp_path / "counts.npz"], tmp_path / "frequent.npz", max_occurrences=2) == 1
    remover = RepeatedLineRemover(str(tmp_path / "frequent.npz"))
    assert remover(docs[0], "en") == ("Story 0 begins.\nIt goes on.\n\nStory 0 ends.", {"paragraph": 1})
    assert remover(f"Intro.\n\n{boiler}", "en") == ("Intro.", {"paragraph": 1})
