"""Demo and acceptance inputs: real text plus planted documents every step should catch.

`write_demo_inputs` builds the offline `tiny_demo` recipe's input from text on every
machine (module docstrings of the running Python's standard library) and a few
Chinese paragraphs written for this project; `write_shared_inputs` builds the
`en_zh_shared` recipe's planted file over the shared English and Chinese corpora.
Planted documents (`planted_documents`): low-quality (lorem ipsum, symbol spam,
bullet spam, too short), PII-bearing, exact and near duplicates of real documents,
toxic texts when given, and bad input lines (malformed JSON, invalid UTF-8, a
missing field, an empty and an enormous document). Each planted JSON record says
what it is in its "planted" field. Files are written atomically and only once.
"""

from __future__ import annotations

import ast
import json
import random
import re
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from lm.files import atomic_write

CHINESE_PARAGRAPHS = (
    "今天早上我们去了城东的菜市场。市场里人很多，卖菜的阿姨把新鲜的青菜和番茄摆得整整齐齐。"
    "我们买了两斤鸡蛋、一条鱼和一些水果，回家以后一起做了午饭。大家都说这顿饭比饭店里的还要好吃，"
    "下个周末还想再去一次。",
    "这家酒店的位置非常方便，离地铁站只有五分钟的路程。房间不算大，但是打扫得很干净，床也很舒服。"
    "前台的服务员态度热情，帮我们推荐了附近几家味道不错的小吃店。唯一的缺点是早餐的种类比较少，"
    "希望以后能够改进。",
    "学习一门新的语言需要耐心和坚持。每天花半个小时读书、听录音、练习说话，比周末一次学习三个小时效果更好。"
    "遇到不懂的词语时，可以先猜一猜意思，再查词典确认。时间长了，你会发现自己能听懂的内容越来越多。",
    "我家附近新开了一个小公园，里面有一条环形的跑道和几张长椅。每天傍晚都有很多老人在这里散步，"
    "孩子们在草地上放风筝。公园的管理员说，明年春天还会在湖边种上一排樱花树，到时候一定会更漂亮。",
    "这次网上买的电饭锅质量很好，外观简洁，操作也很简单。第一次用它煮饭，米饭软硬刚好，香味十足。"
    "快递也很快，下单第二天就送到了。包装很结实，没有任何损坏。总体来说，这是一次满意的购物体验。",
    "周末我们全家去郊外爬山。山路虽然有点陡，但是沿途的风景非常美丽，到处都是绿色的树木和盛开的野花。"
    "到了山顶以后，我们坐在石头上休息，一边吃带来的面包和水果，一边看远处的村庄和河流，心情特别愉快。",
    "图书馆是我最喜欢去的地方之一。那里安静明亮，书架上的书按照类别排列，很容易找到需要的资料。"
    "每个月图书馆还会举办读书分享会，大家轮流介绍自己最近读过的好书，交流阅读的感受和收获。",
    "这家外卖的饺子味道很地道，皮薄馅多，配的醋和辣椒油也很香。送餐的小哥非常准时，"
    "虽然外面下着大雨，饭菜送到的时候还是热的。价格也比较合理，以后会经常在这家店点餐。",
)
_LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
          "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.")
_PII = ("Thanks for joining the planning call about the spring workshop. The slides are on the shared drive, and "
        "the agenda has not changed since last week. If anything is unclear, write to maria.lopez@example.org or "
        "call me on +1 415 555 0132 before Friday. The staging server moved to 10.24.8.19, and the deploy key "
        "for the old bucket was AKIAIOSFODNN7EXAMPLE, so please rotate it when you have a moment. We will also "
        "review the budget for travel and the schedule for the poster session at the end of the meeting.")


def builtin_english_documents(count: int, min_words: int = 60) -> list[str]:
    """The first `count` module docstrings of at least `min_words` words among the standard
    library's top-level modules, in file-name order (real English prose on every machine)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text("utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if doc and len(doc.split()) >= min_words:
            docs.append(doc)
            if len(docs) == count:
                break
    return docs


def near_duplicate(text: str, seed: int, fraction: float = 0.02) -> str:
    """`text` with about `fraction` of its words replaced (of its characters, for text written
    without spaces, such as Chinese): a near duplicate."""
    rng = random.Random(seed)
    spaced = text.count(" ") > len(text) // 20
    units = text.split(" ") if spaced else list(text)
    for i in rng.sample(range(len(units)), max(1, int(len(units) * fraction))):
        units[i] = "changed" if spaced else "改"
    return (" " if spaced else "").join(units)


def planted_documents(base: Sequence[str], toxic: Sequence[str] = ()) -> list[dict]:
    """Planted records ({"text", "planted"}): low quality, PII, duplicates of `base[0]` and
    `base[1]`, and the `toxic` texts."""
    docs = [
        {"planted": "lorem_ipsum", "text": "\n".join([_LOREM] * 8)},
        {"planted": "symbol_spam", "text": " ".join(["#deal #sale #win $$$ ### !!! ..."] * 20)},
        {"planted": "bullet_spam", "text": "\n".join(f"• buy item {i} now" for i in range(60))},
        {"planted": "too_short", "text": "Click here."},
        {"planted": "pii", "text": _PII},
        {"planted": "exact_duplicate", "text": base[0]},
        {"planted": "exact_duplicate_case_and_spacing", "text": "  " + base[0].upper().replace(" ", "  ") + "\n"},
        {"planted": "near_duplicate", "text": near_duplicate(base[1], seed=1)},
    ]
    docs += [{"planted": "toxic", "text": t} for t in toxic]
    return docs


def bad_lines(max_doc_chars: int) -> list[bytes]:
    """JSON lines the reader must quarantine: malformed JSON, invalid UTF-8, a missing field,
    a non-string text, an empty document and one over `max_doc_chars` characters."""
    return [
        b'{"text": "an unterminated string}\n',
        b'{"text": "caf\xe9 in Latin-1, not UTF-8"}\n',
        b'{"body": "the text is under another field"}\n',
        b'{"text": 42}\n',
        b'{"text": "   "}\n',
        json.dumps({"text": "enormous " * (max_doc_chars // 9 + 1)}).encode() + b"\n",
    ]


def _write_once(path: Path, data: bytes) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            f.write(data)


def _jsonl(records: Sequence[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_demo_inputs(out_dir: Path, *, max_doc_chars: int) -> Path:
    """The tiny_demo input under `out_dir`: english.jsonl (docstrings + planted + bad lines),
    chinese.csv (column "review") and notes/ (a text tree, one file not UTF-8)."""
    out_dir = Path(out_dir)
    english = builtin_english_documents(48)
    records = [{"text": t} for t in english] + planted_documents([english[0], english[4]])
    _write_once(out_dir / "english.jsonl", _jsonl(records) + b"".join(bad_lines(max_doc_chars)))
    rows = ["label,review"] + [f'1,"{p}"' for p in CHINESE_PARAGRAPHS] + [f'1,"{CHINESE_PARAGRAPHS[0]}"', "0"]
    _write_once(out_dir / "chinese.csv", ("\n".join(rows) + "\n").encode("utf-8"))
    _write_once(out_dir / "notes" / "a.txt", (english[-1] + "\n").encode("utf-8"))
    _write_once(out_dir / "notes" / "b.txt", b"Notes from the meeting: caf\xe9 au lait for everyone.\n")
    return out_dir


def planted_toxic_tweets(shared: Path, count: int) -> list[str]:
    """The first `count` tweets of Davidson et al.'s data labelled hate speech (class 0)."""
    import csv

    with open(Path(shared) / "toxicity" / "davidson_labeled_data.csv", encoding="utf-8", newline="") as f:
        return [row["tweet"] for row in csv.DictReader(f) if row["class"] == "0"][:count]


def write_shared_inputs(out_dir: Path, shared: Path, *, max_doc_chars: int, num_toxic: int = 20,
                        wiki_article: int = 2) -> Path:
    """planted.jsonl for en_zh_shared: planted documents built on the shared corpora (an exact
    and a near duplicate of wikitext validation article `wiki_article` and of the longest hotel
    review not ending in an ellipsis; as toxic text, `planted_toxic_tweets`, 5 to a document) plus bad lines."""
    import csv

    out_dir, shared = Path(out_dir), Path(shared)
    text = (shared / "en" / "wikitext2_valid.tokens.txt").read_text("utf-8")
    article = re.split(r"\n(?= = [^=])", text)[wiki_article]
    with open(shared / "zh" / "chnsenticorp_htl_all.csv", encoding="utf-8", newline="") as f:
        review = max((row["review"] for row in csv.DictReader(f) if not row["review"].rstrip().endswith(("...", "…"))), key=len)
    tweets = planted_toxic_tweets(shared, 5 * num_toxic)
    toxic = [" ".join(tweets[i:i + 5]) for i in range(0, len(tweets), 5)]
    records = planted_documents([article, article], toxic) + planted_documents([review, review])[5:]
    _write_once(out_dir / "planted.jsonl", _jsonl(records) + b"".join(bad_lines(max_doc_chars)))
    return out_dir
