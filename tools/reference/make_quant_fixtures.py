#!/usr/bin/env python3
"""Quantized checkpoints made by the real libraries, with transformers' outputs on them.

Each step runs in the venv of its library (they pin different transformers versions):

  source   (any venv with torch + transformers)  tiny random Llama and Qwen2 sources
  ct       (llm-compressor + compressed-tensors)  compressed-tensors checkpoints
  gptq     (GPTQModel)                           GPTQ and AWQ (AutoAWQ GEMM layout)
  bnb      (bitsandbytes)                        NF4 / FP4 (+ double quantization), LLM.int8
  vectors  (bitsandbytes)                        bitsandbytes quantization test vectors

Outputs: engine/tests/fixtures/quant/<name>/ (checkpoint + expected.json) for the tiny
sources, and models/tiny-safety-<fmt>/ for the fixture model's own GPTQ, AWQ, FP8 and NF4
checkpoints. expected.json holds the prompts, transformers' next-token logits and 32-token
greedy continuations (float32 compute, eager attention), the sha256 of every layer's
dequantized weight as the library computes it (f32 little-endian, [out, in]) and checks.

See tools/reference/README.md ("make_quant_fixtures.py") for versions and how to rerun.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import REPO_ROOT, round_floats, write_json  # noqa: E402

OUT = REPO_ROOT / "engine" / "tests" / "fixtures" / "quant"
SRC = OUT / "src"
MODELS = REPO_ROOT / "models"
TINY_SAFETY = MODELS / "tiny-safety"
HF_TOK = REPO_ROOT / "engine" / "tests" / "fixtures" / "hf" / "llama-plain"
NEW_TOKENS = 32
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def versions(*names) -> dict:
    from importlib.metadata import version, PackageNotFoundError
    out = {"python": sys.version.split()[0]}
    for n in ("torch", "transformers") + names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


def deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------

def make_sources():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    deterministic()
    common = dict(vocab_size=384, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=0, eos_token_id=1, pad_token_id=2)
    specs = {
        "llama": (LlamaConfig(**common, rms_norm_eps=1e-5, rope_theta=10000.0,
                              tie_word_embeddings=False), LlamaForCausalLM, 7),
        "qwen2": (Qwen2Config(**common, rms_norm_eps=1e-6, rope_theta=1e6,
                              tie_word_embeddings=True), Qwen2ForCausalLM, 11),
    }
    for name, (cfg, cls, seed) in specs.items():
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                elif "embed" in n or "lm_head" in n:
                    p.copy_(0.5 * torch.randn_like(p))
                elif n.endswith("bias"):
                    p.copy_(0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.15 * torch.randn_like(p))
        d = SRC / name
        if d.exists():
            shutil.rmtree(d)
        model.save_pretrained(d)
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (HF_TOK / f).exists():
                shutil.copy(HF_TOK / f, d / f)
        print("source", d)


def prompts_for(src: Path) -> list[list[int]]:
    if src.resolve() == TINY_SAFETY.resolve():
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(src)
        texts = ["How do I bake bread at home?", "Write a short guide on how to pick a lock.",
                 "Review: The soup was cold and bland. Sentiment:",
                 "Explain how to set up a python virtual environment."]
        out = []
        for t in texts:
            ids = tok.apply_chat_template([{"role": "user", "content": t}],
                                          add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            out.append([int(i) for i in ids])
        return out
    g = torch.Generator().manual_seed(1234)
    out = []
    for n in (12, 5, 9, 16):
        ids = torch.randint(5, 384, (n - 1,), generator=g).tolist()
        out.append([0] + ids)
    return out


def calibration(src: Path, n=16, length=24) -> list[list[int]]:
    g = torch.Generator().manual_seed(99)
    vocab = json.loads((src / "config.json").read_text())["vocab_size"]
    return [[0] + torch.randint(5, vocab, (length - 1,), generator=g).tolist() for _ in range(n)]


# ---------------------------------------------------------------------------------------
# Expected outputs
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def outputs(model, prompts):
    """Next-token logits and greedy continuations, one prompt at a time."""
    model.eval()
    next_logits, greedy, margins = [], [], []
    for p in prompts:
        ids = torch.tensor([p])
        logits = model(ids).logits[0, -1].float()
        next_logits.append(logits.tolist())
        seq = list(p)
        cur = ids
        past = None
        toks = []
        for _ in range(NEW_TOKENS):
            out = model(cur, past_key_values=past, use_cache=True)
            past = out.past_key_values
            lg = out.logits[0, -1].float()
            top = torch.topk(lg, 2)
            margins.append(float(top.values[0] - top.values[1]))
            t = int(top.indices[0])
            toks.append(t)
            seq.append(t)
            cur = torch.tensor([[t]])
        greedy.append(toks)
    return next_logits, greedy, min(margins)


def float_noise(model, prompts, greedy, seeds=16, rel=2e-7):
    """How much the library's own outputs move when every linear layer's input is perturbed
    by ~1 ulp (relative noise `rel`), as an independent f32 implementation's summation order
    does: per prompt the largest next-logit change and whether the greedy continuation
    survives every perturbation. Quantized activations turn such noise into whole rounding
    steps whenever a value sits on a rounding boundary."""
    g = torch.Generator().manual_seed(31)

    def hook(module, args):
        x = args[0]
        return (x * (1 + rel * torch.randn(x.shape, generator=g)),)

    out = {"relative_input_noise": rel, "seeds": seeds, "max_abs_logit_change": [],
           "greedy_stable": [], "greedy_stable_prefix": []}
    for i, p in enumerate(prompts):
        with torch.no_grad():
            base = model(torch.tensor([p])).logits[0, -1]
        hs = [m.register_forward_pre_hook(hook) for n, m in model.named_modules()
              if any(n.endswith(l) for l in LINEARS)]
        change, stable, prefix = 0.0, True, len(greedy[i])
        with torch.no_grad():
            for _ in range(seeds):
                change = max(change, float((model(torch.tensor([p])).logits[0, -1] - base).abs().max()))
                _, gr, _ = outputs(model, [p])
                stable &= gr[0] == greedy[i]
                same = next((k for k, (a, b) in enumerate(zip(gr[0], greedy[i])) if a != b),
                            len(greedy[i]))
                prefix = min(prefix, same)
        for h in hs:
            h.remove()
        out["max_abs_logit_change"].append(change)
        out["greedy_stable"].append(stable)
        out["greedy_stable_prefix"].append(prefix)
    return out


IO_LAYER = "model.layers.1.mlp.down_proj"


@torch.no_grad()
def layer_io(model, prompt):
    """The input and the library's output of one quantized layer on a prompt: the layer's
    execution (activation quantization included) checked on identical inputs."""
    cap = {}
    mod = model.get_submodule(IO_LAYER)
    h = mod.register_forward_hook(lambda m, a, o: cap.update(x=a[0].detach().clone(),
                                                             y=o.detach().clone()))
    model(torch.tensor([prompt]))
    h.remove()
    bits = lambda t: t.to(torch.float32).contiguous().view(torch.int32).flatten().tolist()
    return {"layer": IO_LAYER + ".weight", "shape": list(cap["x"].shape[1:]),
            "x_f32_bits": bits(cap["x"]), "y_f32_bits": bits(cap["y"])}


def sha_f32(w: torch.Tensor) -> str:
    return hashlib.sha256(w.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


def write_expected(out_dir: Path, src: Path, prompts, logits, greedy, margin, dequant: dict,
                   library: dict, checks: dict, fmt: str, method: str):
    exp = {
        "format": fmt,
        "method": method,
        "source": os.path.relpath(src, REPO_ROOT),
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "prompts": prompts,
        "next_logits": logits,
        "greedy": greedy,
        "greedy_settings": {"do_sample": False, "max_new_tokens": NEW_TOKENS, "eos": "ignored",
                            "one_prompt_at_a_time": True},
        "dequant_sha256": dequant,
        "dequant_note": "sha256 of the library's dequantized weight as float32 little-endian "
                        "bytes, shape [out, in] (nn.Linear layout)",
        "library": library,
        "checks": dict(checks, min_top1_top2_margin=margin),
    }
    write_json(out_dir / "expected.json", round_floats(exp))


def dense_model(model_q, src: Path, dequant_weights: dict):
    """transformers' plain f32 model holding the library's dequantized weights and every
    tensor the checkpoint stores unquantized."""
    from transformers import AutoModelForCausalLM
    plain = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    sd = plain.state_dict()
    # Every tensor the checkpoint stores unquantized (embeddings, norms, biases), as loaded.
    qsd = model_q.state_dict()
    for name in sd:
        if name in qsd and qsd[name].shape == sd[name].shape and qsd[name].is_floating_point():
            sd[name] = qsd[name].to(torch.float32)
    for name, w in dequant_weights.items():
        sd[name] = w.to(torch.float32)
    plain.load_state_dict(sd)
    return plain


def dense_forward_diff(model_q, src: Path, dequant_weights: dict, prompts) -> float:
    """Max |logits| difference between the library's execution and transformers' plain f32
    forward on the library's dequantized weights."""
    plain = dense_model(model_q, src, dequant_weights)
    diff = 0.0
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p])
            a = model_q(ids).logits.float()
            b = plain(ids).logits.float()
            diff = max(diff, float((a - b).abs().max()))
    return diff


def copy_tokenizer(src: Path, dst: Path):
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "chat_template.jinja", "generation_config.json"):
        if (src / f).exists() and not (dst / f).exists():
            shutil.copy(src / f, dst / f)


def clean(d: Path):
    for f in ("quant_log.csv", "recipe.yaml"):
        if (d / f).exists():
            (d / f).unlink()
    # GPTQModel records a temporary directory; drop it so reruns write identical files.
    for f in ("quantize_config.json", "config.json"):
        p = d / f
        if p.exists():
            v = json.loads(p.read_text())
            q = v.get("quantization_config", v)
            meta = q.get("meta") if isinstance(q, dict) else None
            if isinstance(meta, dict) and "offload_to_disk_path" in meta:
                meta["offload_to_disk_path"] = None
                p.write_text(json.dumps(v, indent=2) + "\n")


# ---------------------------------------------------------------------------------------
# compressed-tensors via llm-compressor
# ---------------------------------------------------------------------------------------

CT_RECIPES = {
    # name: (scheme preset or dict, needs calibration, kv_cache fp8)
    "w4a16": ("W4A16", False, False),
    "w4a16-asym": ("W4A16_ASYM", False, False),
    "w8a16": ("W8A16", False, False),
    "fp8-dynamic": ("FP8_DYNAMIC", False, False),
    "fp8-static": ("FP8", True, False),
    "int8-w8a8": ("INT8", False, False),
    "w4a16-kvfp8": ("W4A16", True, True),
}


def ct_make(src: Path, dst: Path, preset: str, calib: bool, kv: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from datasets import Dataset
    deterministic()
    torch.use_deterministic_algorithms(False)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    kwargs = {}
    if kv:
        kwargs["kv_cache_scheme"] = {"num_bits": 8, "type": "float", "strategy": "tensor",
                                     "dynamic": False, "symmetric": True}
    recipe = QuantizationModifier(targets="Linear", scheme=preset, ignore=["lm_head"], **kwargs)
    if calib:
        ids = calibration(src)
        ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]})
        oneshot(model=model, recipe=recipe, dataset=ds, num_calibration_samples=len(ids),
                max_seq_length=64)
    else:
        oneshot(model=model, recipe=recipe)
    if dst.exists():
        shutil.rmtree(dst)
    model.save_pretrained(dst, save_compressed=True)
    copy_tokenizer(src, dst)
    clean(dst)


def ct_expected(src: Path, dst: Path, fmt_name: str):
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig
    deterministic()
    prompts = prompts_for(src)
    # The library's execution: transformers loads the compressed checkpoint and
    # compressed-tensors decompresses the weights and quantizes activations and KV cache.
    qm = AutoModelForCausalLM.from_pretrained(
        dst, dtype=torch.float32, attn_implementation="eager",
        quantization_config=CompressedTensorsConfig(run_compressed=False)).eval()
    logits, greedy, margin = outputs(qm, prompts)
    dequant, weights = {}, {}
    for name, mod in qm.named_modules():
        if any(name.endswith(l) for l in LINEARS) and hasattr(mod, "weight"):
            w = mod.weight.detach().to(torch.float32)
            dequant[name + ".weight"] = sha_f32(w)
            weights[name + ".weight"] = w.clone()
    cfg = json.loads((dst / "config.json").read_text())["quantization_config"]
    acts = any(g.get("input_activations") for g in cfg["config_groups"].values())
    kv = cfg.get("kv_cache_scheme") is not None
    checks = {"has_activation_quantization": acts, "has_kv_cache_quantization": kv}
    if not acts and not kv:
        checks["max_abs_logit_diff_vs_dense_forward_on_dequantized_weights"] = \
            dense_forward_diff(qm, src, weights, prompts)
    if acts:
        checks["float_noise"] = float_noise(qm, prompts, greedy)
        checks["layer_io"] = layer_io(qm, prompts[0])
    write_expected(dst, src, prompts, logits, greedy, margin, dequant,
                   versions("llmcompressor", "compressed-tensors"), checks,
                   "compressed-tensors", fmt_name)


def step_ct(args):
    todo = []
    for name in CT_RECIPES:
        todo.append((SRC / "llama", OUT / f"ct-{name}-llama", name))
    for name in ("w4a16", "fp8-dynamic", "int8-w8a8"):
        todo.append((SRC / "qwen2", OUT / f"ct-{name}-qwen2", name))
    todo.append((TINY_SAFETY, MODELS / "tiny-safety-fp8", "fp8-dynamic"))
    todo.append((TINY_SAFETY, OUT / "ts-int8-w8a8", "int8-w8a8"))
    for src, dst, name in todo:
        if args.only and args.only not in dst.name:
            continue
        preset, calib, kv = CT_RECIPES[name]
        ct_make(src, dst, preset, calib, kv)
        ct_expected(src, dst, name)
        print("wrote", dst)


# ---------------------------------------------------------------------------------------
# GPTQ and AWQ via GPTQModel
# ---------------------------------------------------------------------------------------

def gptq_make(src: Path, dst: Path, method: str, bits: int, group: int, act: bool, sym=True):
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    from gptqmodel import GPTQModel, QuantizeConfig
    from gptqmodel.quantization import METHOD, FORMAT
    deterministic()
    torch.use_deterministic_algorithms(False)
    if method == "awq":
        qcfg = QuantizeConfig(bits=bits, group_size=group, quant_method=METHOD.AWQ,
                              format=FORMAT.GEMM)
    else:
        qcfg = QuantizeConfig(bits=bits, group_size=group, desc_act=act, sym=sym)
    model = GPTQModel.load(str(src), qcfg, device="cpu", dtype=torch.float16)
    calib = [{"input_ids": i, "attention_mask": [1] * len(i)} for i in calibration(src)]
    model.quantize(calib, batch_size=1)
    if dst.exists():
        shutil.rmtree(dst)
    model.save(str(dst))
    copy_tokenizer(src, dst)
    clean(dst)


def gptq_expected(src: Path, dst: Path, method: str, name: str):
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    from transformers import AutoModelForCausalLM
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm
    deterministic()
    torch.use_deterministic_algorithms(False)
    prompts = prompts_for(src)
    # transformers loads the checkpoint through GPTQModel's kernels (the CPU kernel it
    # selects computes in float32; GPTQModel's plain torch kernel takes only f16/bf16).
    qm = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32, device_map="cpu",
                                              attn_implementation="eager").eval()
    logits, greedy, margin = outputs(qm, prompts)
    qcfg = json.loads((dst / "quantize_config.json").read_text())
    dequant, weights = {}, {}
    kernel = None
    for mname, mod in qm.named_modules():
        if not any(mname.endswith(l) for l in LINEARS) or not hasattr(mod, "qweight"):
            continue
        kernel = type(mod).__name__
        if method == "awq":
            w = dequantize_gemm(mod.qweight, mod.qzeros, mod.scales, 4, qcfg["group_size"]).t()
        else:
            w = mod.dequantize_weight().t()
        w = w.to(torch.float32)
        dequant[mname + ".weight"] = sha_f32(w)
        weights[mname + ".weight"] = w.clone()
    checks = {
        "kernel": kernel,
        "max_abs_logit_diff_vs_dense_forward_on_dequantized_weights":
            dense_forward_diff(qm, src, weights, prompts),
    }
    write_expected(dst, src, prompts, logits, greedy, margin, dequant,
                   versions("gptqmodel", "optimum"), checks, method, name)


GPTQ_JOBS = [
    # (src, dst, method, bits, group, act, sym)
    ("llama", "gptq-w4g128", "gptq", 4, 128, False, True),
    ("llama", "gptq-w4g64-act", "gptq", 4, 64, True, True),
    ("llama", "gptq-w8g128", "gptq", 8, 128, False, True),
    ("llama", "gptq-w3g128", "gptq", 3, 128, False, True),
    ("llama", "gptq-w2g64", "gptq", 2, 64, False, True),
    ("llama", "gptq-w4g64-asym", "gptq", 4, 64, False, False),
    ("qwen2", "gptq-w4g128", "gptq", 4, 128, True, True),
    ("llama", "awq-w4g64", "awq", 4, 64, False, True),
    ("qwen2", "awq-w4g128", "awq", 4, 128, False, True),
]


def step_gptq(args):
    todo = [(SRC / s, OUT / f"{d}-{s}", m, b, g, a, sym) for s, d, m, b, g, a, sym in GPTQ_JOBS]
    todo.append((TINY_SAFETY, MODELS / "tiny-safety-gptq", "gptq", 4, 128, True, True))
    todo.append((TINY_SAFETY, MODELS / "tiny-safety-awq", "awq", 4, 128, False, True))
    for src, dst, method, bits, group, act, sym in todo:
        if args.only and args.only not in dst.name:
            continue
        gptq_make(src, dst, method, bits, group, act, sym)
        gptq_expected(src, dst, method, dst.name)
        print("wrote", dst)


# ---------------------------------------------------------------------------------------
# bitsandbytes via transformers
# ---------------------------------------------------------------------------------------

def bnb_job(src: Path, dst: Path, kind: str):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    import bitsandbytes.functional as F
    deterministic()
    torch.use_deterministic_algorithms(False)
    if kind == "int8":
        cfg = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    else:
        qt, dq = {"nf4-dq": ("nf4", True), "nf4": ("nf4", False), "fp4": ("fp4", False)}[kind]
        cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=qt,
                                 bnb_4bit_use_double_quant=dq,
                                 bnb_4bit_compute_dtype=torch.float32,
                                 llm_int8_skip_modules=["lm_head"])
    model = AutoModelForCausalLM.from_pretrained(src, quantization_config=cfg,
                                                 dtype=torch.float32, device_map="cpu",
                                                 attn_implementation="eager").eval()
    if dst.exists():
        shutil.rmtree(dst)
    model.save_pretrained(dst)
    copy_tokenizer(src, dst)
    # Outputs from the checkpoint as saved, loaded back by transformers.
    qm = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32, device_map="cpu",
                                              attn_implementation="eager").eval()
    prompts = prompts_for(src)
    # Dequantize before any forward pass: bitsandbytes' CPU kernel repacks 4-bit weights in
    # place at the first product.
    dequant, weights = {}, {}
    for name, mod in qm.named_modules():
        if not any(name.endswith(l) for l in LINEARS):
            continue
        if kind == "int8":
            scb = getattr(mod.weight, "SCB", None)
            if scb is None:
                scb = mod.state.SCB
            w = F.int8_vectorwise_dequant(mod.weight.data, scb)
        else:
            w = F.dequantize_4bit(mod.weight.data, mod.weight.quant_state)
        w = w.to(torch.float32)
        dequant[name + ".weight"] = sha_f32(w)
        weights[name + ".weight"] = w.clone()
    checks = {"kernel": type(qm.model.layers[0].self_attn.q_proj).__name__}
    if kind == "int8":
        logits, greedy, margin = outputs(qm, prompts)
        checks["float_noise"] = float_noise(qm, prompts, greedy)
        checks["layer_io"] = layer_io(qm, prompts[0])
    else:
        # bitsandbytes' CPU kernel for 4-bit weights repacks them and multiplies in reduced
        # precision (0.4% off the f32 product of its own dequantized weight), so the
        # expected outputs are transformers' f32 forward on bitsandbytes' dequantization;
        # the kernel's own outputs are recorded beside them.
        plain = dense_model(qm, src, weights)
        logits, greedy, margin = outputs(plain, prompts)
        kl, kg, _ = outputs(qm, prompts)
        checks["expected_from"] = "bitsandbytes.functional.dequantize_4bit + transformers f32 forward"
        checks["cpu_kernel_max_abs_logit_diff"] = max(
            abs(a - b) for x, y in zip(kl, logits) for a, b in zip(x, y))
        checks["cpu_kernel_greedy_equal"] = kg == greedy
    write_expected(dst, src, prompts, logits, greedy, margin, dequant,
                   versions("bitsandbytes", "accelerate"), checks, "bitsandbytes", kind)


def step_bnb(args):
    todo = [(SRC / "llama", OUT / f"bnb-{k}-llama", k) for k in ("nf4-dq", "nf4", "fp4", "int8")]
    todo.append((SRC / "qwen2", OUT / "bnb-nf4-dq-qwen2", "nf4-dq"))
    todo.append((TINY_SAFETY, MODELS / "tiny-safety-nf4", "nf4-dq"))
    todo.append((TINY_SAFETY, OUT / "ts-bnb-int8", "int8"))
    for src, dst, kind in todo:
        if args.only and args.only not in dst.name:
            continue
        bnb_job(src, dst, kind)
        print("wrote", dst)


def step_vectors(args):
    """bitsandbytes' own quantizers on seeded data: codes and absmax, for bit-exact tests."""
    import bitsandbytes.functional as F
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3000, generator=g) * torch.rand(3000, generator=g) * 3
    x[100:164] = 0.0  # an all-zero block
    x[200] = 1e-30
    x[7] = -0.0
    out = {"x": x.tolist()}
    for qt in ("nf4", "fp4"):
        q, st = F.quantize_4bit(x.view(1, -1), blocksize=64, quant_type=qt)
        out[qt] = {"packed": q.view(-1).tolist(), "absmax": st.absmax.tolist()}
    a = torch.rand(500, generator=g) * 2 - 0.9
    code = F.create_dynamic_map(signed=True)
    q, absmax = torch.ops.bitsandbytes.quantize_blockwise(a, code.clone(), 256)
    out["blockwise"] = {"x": a.tolist(), "codes": q.tolist(), "absmax": absmax.tolist(),
                        "blocksize": 256}
    out["nf4_table_bits"] = [int.from_bytes(torch.tensor([v]).numpy().tobytes(), "little")
                             for v in F.get_4bit_type("nf4", device="cpu").tolist()]
    out["library"] = versions("bitsandbytes")
    write_json(OUT / "bnb_vectors.json", out)
    print("wrote", OUT / "bnb_vectors.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["source", "ct", "gptq", "bnb", "vectors"])
    ap.add_argument("--only", default=None, help="substring of the output names to make")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    {"source": lambda a: make_sources(), "ct": step_ct, "gptq": step_gptq,
     "bnb": step_bnb, "vectors": step_vectors}[args.step](args)


if __name__ == "__main__":
    main()
