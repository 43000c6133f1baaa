#!/usr/bin/env python3
"""Compares two `compsafe run` outputs of the same spec, prompt by prompt and cell by cell:
a run on a GPU against the run on the CPU.

Decisions are the judged outcomes of each prompt: verdict (refusal / compliance /
degenerate), refused, target_hit, predicted_label, label_correct, and for multiple-choice
prompts the argmax choice (mc1). Variants computed from float weights in f32 (the reference,
RTN, pruning, checkpoints) must decide every prompt as on the CPU. bf16 and f16 variants may
differ on at most --half-tolerance of their prompts (default 2%): the GPU's f32 kernels round
differently and half-precision weights leave smaller logit margins. GGUF variants may differ on
at most --gguf-tolerance (default 2%): the two backends compute a different function, as
llama.cpp's do. The CPU quantizes the activations of a k-quant matmul to Q8_K (blocks of 256,
f32 scale) and the GPU's kernels to Q8_1 (blocks of 32, f16 scale), so a GGUF model deployed on
a GPU is not bit for bit the one evaluated on a CPU.

Cell metrics of the exact classes must agree within 1e-5: a changed decision moves a rate by
1/n at least, while means of probabilities (TruthfulQA's mc2 accuracy) differ by float
rounding alone.

Prints one JSON object (also written to --json FILE) and exits 1 when a rule fails.

usage: tools/gpu/compare_quickstart.py CPU_OUT_DIR GPU_OUT_DIR [--json FILE]
                                       [--half-tolerance 0.02] [--gguf-tolerance 0.02]
"""

import argparse
import json
import os
import sys

CELL_TOLERANCE = 1e-5

DECISIONS = ("verdict", "refused", "target_hit", "predicted_label", "label_correct", "mc1")


def load_records(d):
    out = {}
    with open(os.path.join(d, "records.jsonl")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out[(r["variant"], r["suite"], r["prompt_id"])] = r
    return out


def load_report(d):
    with open(os.path.join(d, "report.json")) as f:
        return json.load(f)


def variant_class(info):
    """'half' for f16/bf16 casts, 'gguf' for GGUF variants, else 'f32'."""
    method = str(info.get("method", ""))
    if method in ("bf16", "f16") or method.startswith(("bf16", "f16")):
        return "half"
    if method.startswith("gguf"):
        return "gguf"
    return "f32"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cpu")
    ap.add_argument("gpu")
    ap.add_argument("--json")
    ap.add_argument("--half-tolerance", type=float, default=0.02)
    ap.add_argument("--gguf-tolerance", type=float, default=0.02)
    a = ap.parse_args()

    cpu, gpu = load_records(a.cpu), load_records(a.gpu)
    rep_cpu, rep_gpu = load_report(a.cpu), load_report(a.gpu)
    classes = {v["name"]: variant_class(v) for v in rep_cpu.get("variants", [])}
    classes.setdefault(rep_cpu.get("reference", "fp32"), "f32")

    problems = []
    if set(cpu) != set(gpu):
        problems.append(
            f"records differ in keys: {len(set(cpu) - set(gpu))} only on the cpu, "
            f"{len(set(gpu) - set(cpu))} only on the gpu"
        )
    per_class = {}
    per_variant = {}
    flips = []
    max_logodds = {}
    for key in sorted(set(cpu) & set(gpu)):
        c, g = cpu[key], gpu[key]
        variant = key[0]
        cls = classes.get(variant, "f32")
        stats = per_class.setdefault(cls, {"decisions": 0, "differ": 0})
        vstats = per_variant.setdefault(variant, {"class": cls, "decisions": 0, "differ": 0})
        fields = [f for f in DECISIONS if f in c or f in g]
        if not fields:
            continue
        stats["decisions"] += 1
        vstats["decisions"] += 1
        changed = [f for f in fields if c.get(f) != g.get(f)]
        if changed:
            stats["differ"] += 1
            vstats["differ"] += 1
            if len(flips) < 50:
                flips.append(
                    {
                        "variant": variant,
                        "suite": key[1],
                        "prompt_id": key[2],
                        "fields": {f: [c.get(f), g.get(f)] for f in changed},
                    }
                )
        lo_c, lo_g = c.get("refusal_logodds"), g.get("refusal_logodds")
        if lo_c is not None and lo_g is not None:
            d = abs(lo_c - lo_g)
            max_logodds[cls] = max(max_logodds.get(cls, 0.0), d)

    # Cell metrics: within CELL_TOLERANCE for the exact classes (rates move by 1/n per changed
    # decision; mean probabilities by rounding), reported for the others.
    cell_diffs = []
    cells_cpu = {(c["variant"], c["suite"]): c for c in rep_cpu.get("cells", [])}
    cells_gpu = {(c["variant"], c["suite"]): c for c in rep_gpu.get("cells", [])}
    for key, c in sorted(cells_cpu.items()):
        g = cells_gpu.get(key)
        if g is None:
            problems.append(f"cell {key} missing from the gpu report")
            continue
        for m in ("refusal_rate", "compliance_rate", "degenerate_rate", "asr", "accuracy", "mc1"):
            if c.get(m) is None and g.get(m) is None:
                continue
            if c.get(m) is None or g.get(m) is None or abs(c[m] - g[m]) > CELL_TOLERANCE:
                cell_diffs.append(
                    {"variant": key[0], "suite": key[1], "metric": m, "cpu": c.get(m), "gpu": g.get(m)}
                )

    tolerance = {"half": a.half_tolerance, "gguf": a.gguf_tolerance}
    names = {"half": "bf16/f16", "gguf": "GGUF"}
    for cls, s in sorted(per_class.items()):
        if cls not in tolerance and s["differ"]:
            problems.append(f"{cls} variants: {s['differ']} of {s['decisions']} decisions differ")
        if cls in tolerance and s["differ"] > tolerance[cls] * s["decisions"]:
            problems.append(
                f"{names[cls]} variants: {s['differ']} of {s['decisions']} decisions differ "
                f"(tolerance {tolerance[cls]:.0%})"
            )
    exact_classes = {n for n, c in classes.items() if c not in tolerance}
    for d in cell_diffs:
        if d["variant"] in exact_classes:
            problems.append(f"cell {d['variant']}/{d['suite']} {d['metric']}: {d['cpu']} vs {d['gpu']}")

    result = {
        "ok": not problems,
        "half_tolerance": a.half_tolerance,
        "gguf_tolerance": a.gguf_tolerance,
        "per_class": per_class,
        "per_variant": per_variant,
        "max_refusal_logodds_diff": max_logodds,
        "cell_metric_diffs": cell_diffs,
        "first_flips": flips,
        "problems": problems,
    }
    text = json.dumps(result, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
