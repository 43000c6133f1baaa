#!/usr/bin/env python3
"""The closing table of scripts/gpu-check.sh, from the files it wrote into its output folder.

Reads OUT/steps.tsv (step, status, seconds, detail), OUT/quickstart-compare.json,
OUT/throughput-compsafe.jsonl and OUT/throughput-hf.jsonl; writes OUT/summary.json and prints
the table. Targets (issue 6): decode at batch 1 >= 70% of the HBM roofline; batched throughput
>= 1.5x transformers on the same card.

usage: tools/gpu/summary.py OUT
"""

import json
import os
import sys

ROOFLINE_TARGET = 0.70
RATIO_TARGET = 1.5


def jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    return rows


def main():
    out = sys.argv[1]
    steps = []
    path = os.path.join(out, "steps.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4:
                    steps.append(
                        {"step": parts[0], "status": parts[1], "seconds": float(parts[2]), "detail": parts[3]}
                    )
    ours = {r["batch"]: r for r in jsonl(os.path.join(out, "throughput-compsafe.jsonl"))}
    hf = {r["batch"]: r for r in jsonl(os.path.join(out, "throughput-hf.jsonl"))}

    rows = [(s["step"], s["status"], f"{s['seconds']:.0f} s", s["detail"]) for s in steps]
    figures = []
    for b in sorted(set(ours) | set(hf)):
        o, h = ours.get(b), hf.get(b)
        fig = {"batch": b}
        if o:
            fig.update(
                compsafe_tokens_per_s=o["tokens_per_s"],
                compsafe_decode_tokens_per_s=o["decode_tokens_per_s"],
                step_ms=o["step_ms"],
                roofline_step_ms=o["roofline_step_ms"],
                roofline_fraction=o["roofline_fraction"],
                copy_gb_per_s=o["copy_gb_per_s"],
            )
        if h:
            fig.update(hf_tokens_per_s=h["tokens_per_s"], hf_decode_tokens_per_s=h["decode_tokens_per_s"])
        if o and h:
            fig["ratio"] = o["tokens_per_s"] / h["tokens_per_s"]
        figures.append(fig)
        detail = []
        if o:
            detail.append(
                f"compsafe {o['tokens_per_s']:.0f} tok/s, step {o['step_ms']:.2f} ms, "
                f"roofline {100 * o['roofline_fraction']:.0f}%"
            )
        if h:
            detail.append(f"transformers {h['tokens_per_s']:.0f} tok/s")
        if "ratio" in fig:
            detail.append(f"ratio {fig['ratio']:.2f}x")
        if b == 1 and o:
            ok = o["roofline_fraction"] >= ROOFLINE_TARGET
            rows.append(
                (
                    "decode b=1 vs HBM roofline",
                    "MET" if ok else "MISSED",
                    f"{100 * o['roofline_fraction']:.1f}%",
                    f"target >= {ROOFLINE_TARGET:.0%}; " + "; ".join(detail),
                )
            )
        elif b > 1 and "ratio" in fig:
            ok = fig["ratio"] >= RATIO_TARGET
            rows.append(
                (
                    f"b={b} compsafe / transformers",
                    "MET" if ok else "MISSED",
                    f"{fig['ratio']:.2f}x",
                    f"target >= {RATIO_TARGET}x; " + "; ".join(detail),
                )
            )
        else:
            rows.append((f"throughput b={b}", "PARTIAL", "", "; ".join(detail)))

    gpu = next((r.get("gpu") for r in list(ours.values()) + list(hf.values()) if r.get("gpu")), None)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"gpu": gpu, "steps": steps, "throughput": figures}, f, indent=2)
        f.write("\n")
    w0 = max([len(r[0]) for r in rows] + [5])
    w1 = max([len(r[1]) for r in rows] + [6])
    w2 = max([len(r[2]) for r in rows] + [5])
    print(f"\n{'check':<{w0}}  {'status':<{w1}}  {'value':<{w2}}  detail")
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]:<{w2}}  {r[3]}")


if __name__ == "__main__":
    main()
