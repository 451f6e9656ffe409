#!/usr/bin/env python3
"""Side-by-side Markdown table of llama-bench and roundchat-bench JSON results (python3, standard library only).

Usage: bench_table.py --peer PEER.json [...] --ours OURS.json [...] [--peak-bw 3.0e12] [--out TABLE.md]
                      [--merged PEER_ALL.json OURS_ALL.json]

Records are joined on (model file name, n_prompt, n_gen, n_depth). For decode tests (tg) the table also gives the
share of peak memory bandwidth each side reaches: weight bytes x tokens/s / peak, since every decoded token reads
every weight once (the KV cache reads come on top, so at depth the share understates the real traffic).
"""
import argparse
import json
import os
import sys


def load_records(paths):
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        if not text:
            print(f"bench_table: {path} is empty, skipped", file=sys.stderr)
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:  # a benchmark that died mid-way
            print(f"bench_table: {path} is not valid JSON ({e}), skipped", file=sys.stderr)
            continue
        records.extend(data if isinstance(data, list) else [data])
    return records


def key_of(record):
    name = os.path.basename(record["model_filename"])
    return (name, int(record.get("n_prompt", 0)), int(record.get("n_gen", 0)), int(record.get("n_depth", 0)))


def test_name(n_prompt, n_gen, n_depth):
    name = f"pp{n_prompt}" if n_prompt > 0 else f"tg{n_gen}"
    return f"{name} @ d{n_depth}" if n_depth > 0 else name


def weight_bytes(record):
    vram = record.get("vram") or {}
    return vram.get("weight_bytes") or record.get("model_size")


def fmt_ts(record):
    if record is None:
        return "-"
    return f"{record['avg_ts']:,.1f} ± {record.get('stddev_ts', 0.0):,.1f}"


def fmt_bw(record, peak):
    if record is None or weight_bytes(record) is None:
        return "-"
    return f"{100.0 * weight_bytes(record) * record['avg_ts'] / peak:.0f}%"


def make_table(peer, ours, peak):
    by_peer = {key_of(r): r for r in peer}
    by_ours = {key_of(r): r for r in ours}
    keys = sorted(set(by_peer) | set(by_ours), key=lambda k: (k[0], k[1] == 0, k[3], k[1], k[2]))
    device = next((r.get("device") or r.get("gpu_info") for r in ours + peer if r.get("device") or r.get("gpu_info")),
                  "unknown device")
    lines = [
        f"Device: {device}. Peak bandwidth for the tg columns: {peak:.3g} B/s (weight bytes x t/s / peak).",
        "",
        "| model | test | llama.cpp t/s | ours t/s | ours / llama.cpp | BW llama.cpp | BW ours |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k in keys:
        p, o = by_peer.get(k), by_ours.get(k)
        ratio = f"{o['avg_ts'] / p['avg_ts']:.2f}" if p and o and p["avg_ts"] > 0 else "-"
        decode = k[1] == 0
        lines.append(f"| {os.path.splitext(k[0])[0]} | {test_name(k[1], k[2], k[3])} | {fmt_ts(p)} | {fmt_ts(o)} | "
                     f"{ratio} | {fmt_bw(p, peak) if decode else ''} | {fmt_bw(o, peak) if decode else ''} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", nargs="*", default=[], help="llama-bench -o json outputs")
    ap.add_argument("--ours", nargs="*", default=[], help="roundchat-bench -o json outputs")
    ap.add_argument("--peak-bw", type=float, default=3.0e12, help="peak memory bandwidth, B/s (default 3.0e12)")
    ap.add_argument("--out", help="also write the table here")
    ap.add_argument("--merged", nargs=2, metavar=("PEER_ALL", "OURS_ALL"),
                    help="also write every peer record and every one of ours as one JSON list each")
    args = ap.parse_args()
    peer, ours = load_records(args.peer), load_records(args.ours)
    table = make_table(peer, ours, args.peak_bw)
    if args.merged:
        for path, records in zip(args.merged, (peer, ours)):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(records, f, indent=1)
    sys.stdout.write(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table)


if __name__ == "__main__":
    main()
