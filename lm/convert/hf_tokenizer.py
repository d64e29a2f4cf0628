"""Hugging Face tokenizer files that encode exactly as lm's sentencepiece model does.

`hf_tokenizer_files` turns a sentencepiece model into the files `lm convert to-hf`
writes: tokenizer.json (a `tokenizers` fast tokenizer), tokenizer_config.json
(`PreTrainedTokenizerFast`, BOS added as lm adds it), special_tokens_map.json and the
model itself as tokenizer.model. The fast tokenizer mirrors sentencepiece step by step:

- normalizer: the dummy prefix '▁' when the model has one, then ' ' -> '▁';
  no pre-tokenizer, since sentencepiece encodes the whole text at once (digit and
  whitespace splits are training-time rules its pieces already obey);
- BPE: every split of a piece into two pieces is a merge, ranked by the piece's score,
  so the same pairs merge as in sentencepiece; unknown characters become one fused
  `<unk>`, or their UTF-8 bytes with byte fallback;
- decoder: '▁' -> ' ', bytes, `<unk>` as sentencepiece's ' ⁇ ', the dummy prefix dropped.

Text that contains '<s>' stays text, as in lm: tokenizer_config.json sets
`split_special_tokens`; with `tokenizers` alone set `encode_special_tokens = True`.
Models with options this cannot reproduce are refused with a ConfigError naming them:
unigram models among them, because HF's Unigram sums scores in float64 and sentencepiece
in float32, so near-ties on long texts go different ways (a 384-piece unigram model
exported this way split 10 of 3.2M tokens of the standard library's modules
differently, 106 of 2.4M without byte fallback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentencepiece import sentencepiece_model_pb2
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors

from lm.config import ConfigError
from lm.files import atomic_write

SPACE = "\u2581"  # '▁', sentencepiece's escaped space
Piece = sentencepiece_model_pb2.ModelProto.SentencePiece
TrainerSpec = sentencepiece_model_pb2.TrainerSpec


def check_exportable(proto: sentencepiece_model_pb2.ModelProto, path: Path) -> None:
    """ConfigError naming the first option of the model that the export cannot reproduce."""
    trainer, norm = proto.trainer_spec, proto.normalizer_spec

    def refuse(option: str) -> None:
        raise ConfigError(
            f"{path}: sentencepiece option {option} cannot be exported so that Hugging Face encodes "
            "like lm; lm exports the BPE tokenizers it trains (data.tokenizer_type='bpe', with any "
            "data.tokenizer_byte_fallback and data.tokenizer_split_digits)")

    if trainer.model_type == TrainerSpec.UNIGRAM:
        raise ConfigError(
            f"{path}: data.tokenizer_type='unigram' cannot be exported so that Hugging Face encodes like lm "
            "(HF's Unigram sums piece scores in float64, sentencepiece in float32, so long texts can split "
            "differently); train the tokenizer with data.tokenizer_type='bpe' to export to HF")
    if trainer.model_type != TrainerSpec.BPE:
        refuse(f"model_type={TrainerSpec.ModelType.Name(trainer.model_type).lower()}")
    if norm.precompiled_charsmap or norm.name not in ("identity", ""):
        refuse(f"normalization_rule_name={norm.name!r}")
    if proto.denormalizer_spec.precompiled_charsmap:
        refuse(f"denormalization_rule_tsv (rule {proto.denormalizer_spec.name!r})")
    if norm.remove_extra_whitespaces:
        refuse("remove_extra_whitespaces=true")
    if trainer.treat_whitespace_as_suffix:
        refuse("treat_whitespace_as_suffix=true")
    if not norm.escape_whitespaces:
        refuse("escape_whitespaces=false")
    for kind in (Piece.USER_DEFINED, Piece.UNUSED):
        found = [p.piece for p in proto.pieces if p.type == kind]
        if found:
            refuse(f"{Piece.Type.Name(kind).lower()} pieces ({found[0]!r}, ...)")
    for name in ("unk", "bos", "eos"):
        piece_id = getattr(trainer, f"{name}_id")
        if not 0 <= piece_id < len(proto.pieces):
            refuse(f"{name}_id={piece_id}")


def bpe_model(proto: sentencepiece_model_pb2.ModelProto) -> models.BPE:
    """sentencepiece BPE merges the adjacent pair whose concatenation is the best-scoring
    piece; as HF merges, that is every (left, right) split of every piece, by piece score."""
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    normal = {p.piece: p.score for p in proto.pieces if p.type == Piece.NORMAL}
    ranked = []
    for piece, score in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-score, vocab[piece], cut, (left, right)))
    merges = [pair for *_, pair in sorted(ranked)]
    return models.BPE(vocab=vocab, merges=merges, unk_token=proto.pieces[proto.trainer_spec.unk_id].piece,
                      fuse_unk=True, byte_fallback=proto.trainer_spec.byte_fallback, ignore_merges=False)


def hf_tokenizer(proto: sentencepiece_model_pb2.ModelProto) -> Tokenizer:
    """A `tokenizers` Tokenizer that encodes and decodes as `proto` (BOS added)."""
    trainer, dummy_prefix = proto.trainer_spec, proto.normalizer_spec.add_dummy_prefix
    tokenizer = Tokenizer(bpe_model(proto))
    steps = [normalizers.Prepend(SPACE)] if dummy_prefix else []
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", SPACE)])
    tokenizer.pre_tokenizer = None
    unk = proto.pieces[trainer.unk_id].piece
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(),
             decoders.Replace(Regex(f"^{_literal(unk)}$"), trainer.unk_surface), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence([*steps, *([decoders.Strip(" ", 1, 0)] if dummy_prefix else [])])
    tokenizer.add_special_tokens([AddedToken(p.piece, special=True, normalized=False)
                                  for p in proto.pieces if p.type in (Piece.UNKNOWN, Piece.CONTROL)])
    bos = proto.pieces[trainer.bos_id].piece
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, trainer.bos_id)])
    return tokenizer


def hf_tokenizer_files(model_path: Path, max_len: int) -> dict[str, bytes]:
    """File name -> contents of the tokenizer files for an HF directory (see the module
    docstring); ConfigError when the model has an option the export cannot reproduce."""
    model_path = Path(model_path)
    model_bytes = model_path.read_bytes()
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    check_exportable(proto, model_path)
    trainer = proto.trainer_spec
    special = {f"{name}_token": proto.pieces[getattr(trainer, f"{name}_id")].piece for name in ("bos", "eos", "unk")}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "split_special_tokens": True,  # '<s>' in text is text, as in sentencepiece
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
    }
    return {
        "tokenizer.json": hf_tokenizer(proto).to_str(pretty=True).encode("utf-8"),
        "tokenizer_config.json": _json(config),
        "special_tokens_map.json": _json(special),
        "tokenizer.model": model_bytes,
    }


def write_tokenizer_files(files: dict[str, bytes], dst: Path) -> None:
    """Write `hf_tokenizer_files`' result into the directory `dst`, each file atomically."""
    for name, data in files.items():
        with atomic_write(Path(dst) / name) as f:
            f.write(data)


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _literal(text: str) -> str:
    """`text` as an (Oniguruma) regular expression that matches it literally."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}" for c in text)
