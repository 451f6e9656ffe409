"""Checks an exported recall GGUF against the training side, through the engine (check_export.cpp):
  (a) the engine loads the GGUF and uses its own chat template, with <|end|> as the end-of-turn marker,
  (b) the engine's CPU logits match the torch model's (weights rounded to F16 as in the file), max abs diff < 1e-2,
  (c) the engine's token ids match data.Encoder (python SentencePiece), also on text needing byte fallback,
  (d) the template renders a conversation exactly as data.render (the training text).
Exits non-zero when a check fails.

Usage: /usr/bin/python3 check_export.py --gguf OUT/recall.gguf --checkpoint OUT/model.pt \
           --tokenizer OUT/recall_tok.model --heldout OUT/heldout_d10.jsonl --build-dir build-cpu
(--build-dir: a CPU build of the engine with target roundchat-cli built, so that libinference.a exists.)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402
import train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))


def build_tool(build_dir, out_path):
    cmd = ["g++", "-std=c++20", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Wshadow",
           f"-I{ROOT}/inference", f"-I{ROOT}/inference/include", f"-I{ROOT}/common/include",
           f"-I{ROOT}/kernels/include", os.path.join(HERE, "check_export.cpp"),
           os.path.join(build_dir, "inference/libinference.a"), os.path.join(build_dir, "kernels/libkernels_ref.a"),
           "-lsentencepiece", "-lsentencepiece_train", "-lpthread", "-o", out_path]
    subprocess.run(cmd, check=True)


def run_engine(tool, gguf, messages, work, tag):
    """(stdout, rendered text, ids, logits (n, vocab)) from the engine for `messages` + generation prompt."""
    msg_path = os.path.join(work, tag + ".messages.txt")
    with open(msg_path, "w") as f:
        for m in messages:
            f.write(f"{m['role']}\t{m['content']}\n")
        f.write("generation_prompt\n")
    prefix = os.path.join(work, tag)
    out = subprocess.run([tool, gguf, msg_path, prefix], check=True, capture_output=True, text=True).stdout
    with open(prefix + ".render.txt", encoding="utf-8") as f:
        text = f.read()
    with open(prefix + ".ids.txt") as f:
        ids = [int(x) for x in f.read().split()]
    logits = np.fromfile(prefix + ".logits.bin", dtype=np.float32)
    return out, text, ids, logits.reshape(len(ids), -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--tolerance", type=float, default=1e-2)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="recall_check_")
    tool = os.path.join(work, "check_export")
    build_tool(args.build_dir, tool)

    ckpt = torch.load(args.checkpoint, map_location="cpu")
    model = train.Llama(ckpt["config"])
    # The GGUF stores matrices as F16: compare against the same rounded weights.
    model.load_state_dict({k: (v.half().float() if v.dim() == 2 else v) for k, v in ckpt["state_dict"].items()})
    model.eval()
    encoder = data.Encoder(args.tokenizer)

    with open(args.heldout) as f:
        case = json.loads(f.readline())
    odd = "Zürich café ☕ 😀 12345  two  spaces, tabs\tand {braces} <|notspecial|> </s> end."
    conversations = {"heldout": train.case_messages(case),
                     "odd": [{"role": "system", "content": "Sys."}, {"role": "user", "content": odd},
                             {"role": "assistant", "content": odd}, {"role": "user", "content": "Again?"}]}
    ok = True
    for tag, messages in conversations.items():
        stdout, text, ids, logits = run_engine(tool, args.gguf, messages, work, tag)
        if tag == "heldout":
            print(stdout.strip())
            own = "template model" in stdout and "(FALLBACK)" not in stdout
            eot = f"end-of-turn: {data.END_TOKEN}" in stdout
            print(f"(a) engine loads the GGUF, own template: {own}, end-of-turn {data.END_TOKEN}: {eot}")
            ok &= own and eot
        render_ok = text == data.render(messages, add_generation_prompt=True)
        expected = encoder.conversation(messages, add_generation_prompt=True)
        ids_ok = ids == expected
        print(f"[{tag}] (d) render identical: {render_ok} ({len(text)} bytes); "
              f"(c) ids identical: {ids_ok} ({len(ids)} tokens)")
        if not ids_ok:
            first = next((i for i, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
            print(f"    first difference at {first}: engine {ids[first:first + 8]} python {expected[first:first + 8]}")
        with torch.no_grad():
            ref = model(torch.tensor([ids])).float()[0].numpy()
        diff = float(np.abs(ref - logits).max())
        argmax = float((ref.argmax(-1) == logits.argmax(-1)).mean())
        logits_ok = diff < args.tolerance
        print(f"[{tag}] (b) logits max abs diff {diff:.2e} (max |logit| {float(np.abs(ref).max()):.1f}), "
              f"argmax agreement {argmax:.4f}: {'ok' if logits_ok else 'FAIL'}")
        ok &= render_ok and ids_ok and logits_ok
    print("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
