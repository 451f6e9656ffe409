"""Writes a trained recall model (train.py's model.pt) and its SentencePiece tokenizer as a GGUF v3 file: F16
matrices, F32 norms, llama.* hyperparameters, the tokenizer as tokenizer.ggml.* and the chat template. Pure Python +
numpy, following the GGUF spec (little-endian, tensor data aligned to 32 bytes).

Usage: python3 export_gguf.py --checkpoint OUT/model.pt --tokenizer OUT/recall_tok.model --out OUT/recall.gguf
"""
import argparse
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402

ALIGNMENT = 32
# GGUF metadata value types.
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types.
GGML_F32, GGML_F16 = 0, 1
# llama.cpp token types, as inference/tokenizer.h's TokenType numbers them.
TOK_NORMAL, TOK_UNKNOWN, TOK_CONTROL, TOK_USER_DEFINED, TOK_UNUSED, TOK_BYTE = 1, 2, 3, 4, 5, 6


def _string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(kind, value):
    if kind == T_STRING:
        return _string(value)
    if kind == T_BOOL:
        return struct.pack("<?", value)
    return struct.pack({T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f"}[kind], value)


def _kv(key, kind, value):
    return _string(key) + struct.pack("<I", kind) + _value(kind, value)


def _kv_array(key, kind, values):
    out = _string(key) + struct.pack("<IIQ", T_ARRAY, kind, len(values))
    if kind == T_STRING:
        return out + b"".join(_string(v) for v in values)
    return out + np.asarray(values, dtype={T_INT32: "<i4", T_FLOAT32: "<f4"}[kind]).tobytes()


def tokenizer_vocab(model_path):
    """(pieces, scores, types, bos, eos, unk) of a SentencePiece model."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    # Older sentencepiece builds lack IsUserDefined; data.py trains no user-defined symbols anyway.
    is_user_defined = getattr(sp, "IsUserDefined", lambda i: False)
    pieces, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        pieces.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(TOK_CONTROL if sp.is_control(i) else TOK_UNKNOWN if sp.is_unknown(i) else
                     TOK_BYTE if sp.is_byte(i) else TOK_UNUSED if sp.is_unused(i) else
                     TOK_USER_DEFINED if is_user_defined(i) else TOK_NORMAL)
    return pieces, scores, types, sp.bos_id(), sp.eos_id(), sp.unk_id()


def gguf_tensors(state, cfg):
    """(name, float32 array in torch layout (rows, cols), ggml type) in file order. A torch (out, in) matrix is a
    ggml tensor of shape [in, out]: the same bytes."""
    def t(name):
        return state[name].float().cpu().numpy()

    out = [("token_embd.weight", t("tok_embeddings.weight"), GGML_F16),
           ("output_norm.weight", t("norm.weight"), GGML_F32),
           ("output.weight", t("output.weight"), GGML_F16)]
    names = [("attn_norm", "attn_norm.weight", GGML_F32), ("attn_q", "wq.weight", GGML_F16),
             ("attn_k", "wk.weight", GGML_F16), ("attn_v", "wv.weight", GGML_F16),
             ("attn_output", "wo.weight", GGML_F16), ("ffn_norm", "ffn_norm.weight", GGML_F32),
             ("ffn_gate", "w_gate.weight", GGML_F16), ("ffn_up", "w_up.weight", GGML_F16),
             ("ffn_down", "w_down.weight", GGML_F16)]
    for i in range(cfg["n_layers"]):
        for gguf_name, torch_name, kind in names:
            out.append((f"blk.{i}.{gguf_name}.weight", t(f"layers.{i}.{torch_name}"), kind))
    return out


def write_gguf(path, cfg, tensors, vocab, name):
    pieces, scores, types, bos, eos, unk = vocab
    kvs = [
        _kv("general.architecture", T_STRING, "llama"),
        _kv("general.name", T_STRING, name),
        _kv("general.alignment", T_UINT32, ALIGNMENT),
        _kv("llama.context_length", T_UINT32, cfg["context"]),
        _kv("llama.embedding_length", T_UINT32, cfg["dim"]),
        _kv("llama.block_count", T_UINT32, cfg["n_layers"]),
        _kv("llama.feed_forward_length", T_UINT32, cfg["ffn"]),
        _kv("llama.attention.head_count", T_UINT32, cfg["n_heads"]),
        _kv("llama.attention.head_count_kv", T_UINT32, cfg["n_kv_heads"]),
        _kv("llama.rope.dimension_count", T_UINT32, cfg["dim"] // cfg["n_heads"]),
        _kv("llama.rope.freq_base", T_FLOAT32, cfg["rope_base"]),
        _kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, cfg["rms_eps"]),
        _kv("llama.vocab_size", T_UINT32, len(pieces)),
        _kv("tokenizer.ggml.model", T_STRING, "llama"),
        _kv_array("tokenizer.ggml.tokens", T_STRING, pieces),
        _kv_array("tokenizer.ggml.scores", T_FLOAT32, scores),
        _kv_array("tokenizer.ggml.token_type", T_INT32, types),
        _kv("tokenizer.ggml.bos_token_id", T_UINT32, bos),
        _kv("tokenizer.ggml.eos_token_id", T_UINT32, eos),
        _kv("tokenizer.ggml.unknown_token_id", T_UINT32, unk),
        _kv("tokenizer.ggml.add_bos_token", T_BOOL, True),
        _kv("tokenizer.ggml.add_space_prefix", T_BOOL, False),  # contents are encoded without a dummy prefix
        _kv("tokenizer.chat_template", T_STRING, data.CHAT_TEMPLATE),
    ]
    blobs, infos, offset = [], [], 0
    for tname, array, kind in tensors:
        blob = array.astype("<f2" if kind == GGML_F16 else "<f4").tobytes()
        shape = array.shape[::-1]  # ggml: innermost dimension first
        infos.append(_string(tname) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape) +
                     struct.pack("<IQ", kind, offset))
        blobs.append(blob)
        offset += len(blob) + (-len(blob)) % ALIGNMENT
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(infos)
    with open(path, "wb") as f:
        f.write(header + b"\0" * ((-len(header)) % ALIGNMENT))
        for blob in blobs:
            f.write(blob + b"\0" * ((-len(blob)) % ALIGNMENT))


def main():
    import torch
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="RoundChat recall model")
    args = ap.parse_args()
    ckpt = torch.load(args.checkpoint, map_location="cpu")
    cfg = ckpt["config"]
    vocab = tokenizer_vocab(args.tokenizer)
    if len(vocab[0]) != cfg["vocab"]:
        sys.exit(f"tokenizer has {len(vocab[0])} pieces, model {cfg['vocab']}")
    write_gguf(args.out, cfg, gguf_tensors(ckpt["state_dict"], cfg), vocab, args.name)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
