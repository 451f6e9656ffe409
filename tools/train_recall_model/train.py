"""Trains a small llama-architecture model on synthetic multi-round recall conversations (data.py) for a fixed
wall-clock budget, then evaluates greedy exact-match on the held-out sets.

The model is exactly what the engine's CPU backend computes: RMSNorm (x * rsqrt(mean(x^2) + eps) * w), RoPE over
ADJACENT pairs (x[2i], x[2i+1]) with angle pos * base^(-2i / head_dim) (kernels/reference/rope_ref.cpp, so no Q/K
permutation at export), GQA with query head h reading kv head h / (n_heads / n_kv_heads), SwiGLU FFN
(down(silu(gate x) * up x)), untied output projection.

Usage: python3 train.py --tokenizer OUT/recall_tok.model --out OUT --minutes 7
"""
import argparse
import inspect
import json
import math
import multiprocessing as mp
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


# ---- model ----------------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).type_as(x)


def rope_tables(n_pos, head_dim, base, device):
    """cos/sin of shape (n_pos, head_dim / 2): pair i of position p turns by p * base^(-2i / head_dim)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    angles = torch.arange(n_pos, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x, cos, sin):
    """x: (B, H, T, head_dim); rotates adjacent pairs (x[2i], x[2i+1])."""
    a, b = x.float()[..., 0::2], x.float()[..., 1::2]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    return out.type_as(x)


def attention(q, k, v):
    """Causal attention; q (B, H, T, D), k/v already expanded to H heads."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(scores.masked_fill(mask, float("-inf")).float(), dim=-1).type_as(q) @ v


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, hd = cfg["dim"], cfg["dim"] // cfg["n_heads"]
        self.n_heads, self.n_kv, self.hd = cfg["n_heads"], cfg["n_kv_heads"], hd
        self.attn_norm = RMSNorm(d, cfg["rms_eps"])
        self.wq = nn.Linear(d, cfg["n_heads"] * hd, bias=False)
        self.wk = nn.Linear(d, cfg["n_kv_heads"] * hd, bias=False)
        self.wv = nn.Linear(d, cfg["n_kv_heads"] * hd, bias=False)
        self.wo = nn.Linear(cfg["n_heads"] * hd, d, bias=False)
        self.ffn_norm = RMSNorm(d, cfg["rms_eps"])
        self.w_gate = nn.Linear(d, cfg["ffn"], bias=False)
        self.w_up = nn.Linear(d, cfg["ffn"], bias=False)
        self.w_down = nn.Linear(cfg["ffn"], d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(b, t, self.n_heads, self.hd).transpose(1, 2)
        k = self.wk(h).view(b, t, self.n_kv, self.hd).transpose(1, 2)
        v = self.wv(h).view(b, t, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = self.n_heads // self.n_kv
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = attention(q, k, v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.wo(y)
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg["vocab"], cfg["dim"])
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg["n_layers"]))
        self.norm = RMSNorm(cfg["dim"], cfg["rms_eps"])
        self.output = nn.Linear(cfg["dim"], cfg["vocab"], bias=False)
        hd = cfg["dim"] // cfg["n_heads"]
        cos, sin = rope_tables(cfg["context"], hd, cfg["rope_base"], "cpu")
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg["n_layers"]) if name.endswith(("wo.weight", "w_down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, ids):
        t = ids.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        if t > self.cos.shape[0]:  # longer than trained (evaluation only)
            cos, sin = rope_tables(t, self.cos.shape[1] * 2, self.cfg["rope_base"], ids.device)
        x = self.tok_embeddings(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.output(self.norm(x))


# ---- data pipeline --------------------------------------------------------------------------------------------------
_encoder = None


def _init_worker(tokenizer_path):
    global _encoder
    torch.set_num_threads(1)
    _encoder = data.Encoder(tokenizer_path)


def _make_batch(args):
    """(ids int32 (B, T), weights float32 (B, T - 1)) of B training conversations from one seed."""
    seed, batch, length, answer_weight = args
    rng = random.Random(seed)
    ids = np.zeros((batch, length), dtype=np.int32)
    weights = np.zeros((batch, length - 1), dtype=np.float32)
    for i in range(batch):
        ids[i], weights[i] = data.training_sequence(_encoder, rng, length, answer_weight)
    return ids, weights


class BatchStream:
    """Keeps `ahead` batches in flight on a process pool so that training never waits for Python data generation."""

    def __init__(self, pool, seed, batch, length, answer_weight, ahead):
        self.pool, self.next_seed = pool, seed
        self.spec = (batch, length, answer_weight)
        self.pending = [self._submit() for _ in range(ahead)]

    def _submit(self):
        self.next_seed += 1
        return self.pool.apply_async(_make_batch, ((self.next_seed,) + self.spec,))

    def next(self):
        result = self.pending.pop(0).get()
        self.pending.append(self._submit())
        return result


# ---- evaluation -----------------------------------------------------------------------------------------------------
def case_messages(case):
    messages = [{"role": "system", "content": case["system"]}]
    for r in case["rounds"]:
        messages += [{"role": "user", "content": r["user"]}, {"role": "assistant", "content": r["assistant"]}]
    return messages + [{"role": "user", "content": case["question"]}]


@torch.no_grad()
def evaluate(model, encoder, paths, device, dtype):
    """Greedy exact match per held-out file. Greedy decoding reproduces the expected answer (and then stops at the
    end-of-turn token) iff the argmax at every answer position, given the expected prefix, is the expected token, so
    one teacher-forced forward pass per case decides it."""
    model.eval()
    report = {}
    for path in paths:
        cases = [json.loads(line) for line in open(path)]
        exact = 0
        for case in cases:
            messages = case_messages(case)
            prompt = encoder.conversation(messages, add_generation_prompt=True)
            target = encoder.sp.encode(case["answer"]) + [encoder.end]
            ids = torch.tensor([prompt + target], device=device)
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=device.type == "cuda"):
                logits = model(ids)
            pred = logits[0, len(prompt) - 1:-1].argmax(-1).tolist()
            exact += pred == target
        report[os.path.basename(path)] = {"cases": len(cases), "exact": exact, "accuracy": exact / len(cases)}
    model.train()
    return report


# ---- training -------------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=7.0, help="wall-clock training budget (model build included)")
    ap.add_argument("--seed", type=int, default=1234, help="model init seed; data seeds are seed * 1e6 + step")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--answer-weight", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--heldout", nargs="*", default=[])
    args = ap.parse_args()

    start = time.time()
    budget = args.minutes * 60.0
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.txt"), "w")

    def say(msg):
        line = f"[{time.time() - start:7.1f}s] {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    # The pool forks before CUDA is initialised; workers only run Python and SentencePiece.
    pool = mp.get_context("fork").Pool(args.workers, initializer=_init_worker, initargs=(args.tokenizer,))
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16
    encoder = data.Encoder(args.tokenizer)
    cfg = {"vocab": encoder.sp.get_piece_size(), "dim": args.dim, "n_layers": args.layers, "n_heads": args.heads,
           "n_kv_heads": args.kv_heads, "ffn": args.ffn, "context": args.context, "rms_eps": 1e-5,
           "rope_base": 10000.0}
    model = Llama(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"device {device}, torch {torch.__version__}, config {json.dumps(cfg)}, {n_params / 1e6:.2f}M parameters, "
        f"args {vars(args)}")

    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    # torch 1.13's AdamW has no `fused`.
    has_fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
    fused = {"fused": True} if device.type == "cuda" and has_fused else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), **fused)
    step_fn = model
    if args.compile and hasattr(torch, "compile") and device.type == "cuda":
        step_fn = torch.compile(model)

    stream = BatchStream(pool, args.seed * 1_000_000, args.batch, args.context + 1, args.answer_weight,
                         ahead=2 * args.workers)

    def loss_of(fn, ids, weights):
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=device.type == "cuda"):
            logits = fn(ids[:, :-1])
        losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                 reduction="none")
        return (losses * weights.reshape(-1)).sum() / weights.sum(), losses.mean()

    step, tokens, last_report = 0, 0, time.time()
    train_start = time.time()
    while True:
        elapsed = time.time() - start
        if elapsed >= budget:
            break
        # Time-based schedule: linear warmup over steps, then cosine to 10% over the remaining wall clock.
        progress = min(1.0, (time.time() - train_start) / max(1.0, budget - (train_start - start)))
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        ids_np, w_np = stream.next()
        ids = torch.from_numpy(ids_np).long().to(device, non_blocking=True)
        weights = torch.from_numpy(w_np).to(device, non_blocking=True)
        try:
            loss, plain = loss_of(step_fn, ids, weights)
        except Exception as e:  # torch.compile failures surface at the first call: fall back to eager
            if step_fn is model:
                raise
            say(f"torch.compile failed ({type(e).__name__}: {e}); continuing eager")
            step_fn = model
            loss, plain = loss_of(step_fn, ids, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += ids_np.shape[0] * (ids_np.shape[1] - 1)
        if step == 1 or time.time() - last_report > 15:
            last_report = time.time()
            rate = tokens / max(1e-9, time.time() - train_start)
            say(f"step {step} loss {loss.item():.4f} (unweighted {plain.item():.4f}) lr {lr:.2e} "
                f"tokens {tokens / 1e6:.1f}M ({rate / 1e3:.0f}k tok/s)")
    pool.terminate()
    say(f"training done: {step} steps, {tokens / 1e6:.1f}M tokens, final loss {loss.item():.4f}")

    ckpt = os.path.join(args.out, "model.pt")
    torch.save({"config": cfg, "state_dict": model.state_dict()}, ckpt)
    say(f"saved {ckpt}")
    if args.heldout:
        report = {"steps": step, "tokens": tokens, "params": n_params}
        try:  # the checkpoint is saved: an evaluation failure must not lose the run
            report.update(evaluate(model, encoder, args.heldout, device, dtype))
        except Exception as e:
            report["error"] = f"{type(e).__name__}: {e}"
        with open(os.path.join(args.out, "eval.json"), "w") as f:
            json.dump(report, f, indent=1)
        say(f"eval {json.dumps(report)}")


if __name__ == "__main__":
    main()
