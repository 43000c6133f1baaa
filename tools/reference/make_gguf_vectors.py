#!/usr/bin/env python3
"""Write GGUF reference data: quantization vectors and two tiny GGUF checkpoints.

Output: engine/tests/fixtures/gguf/
  source.f32.bin                    seeded (8, 512) f32 tensor, raw little-endian
  <T>.quant.bin, <T>.dequant.f32.bin  gguf-py quantize(source, T) and dequantize of it
                                      (T = every type gguf-py can quantize that matters here)
  <T>.blocks.bin, <T>.dequant.f32.bin seeded random blocks (finite f16 scales) and their
                                      dequantization, for the K-quants (gguf-py cannot
                                      quantize them) and the 32-wide legacy quants
                                      (as <T>.random.blocks.bin / <T>.random.dequant.f32.bin)
  manifest.json                     every file with type, shape, block count, sha256
  llama-plain.f32.gguf              engine/tests/fixtures/hf/llama-plain converted the
                                    llama.cpp way (q/k rows permuted)
  llama-plain.q8_0.gguf             the same with every 2-D weight in Q8_0, norms f32
  llama-plain.q8_0.expected.json    transformers outputs for the Q8_0-dequantized weights

Requires engine/tests/fixtures/hf/llama-plain (run make_hf_fixtures.py first).

Usage: python3 tools/reference/make_gguf_vectors.py [--out DIR] [--hf DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import quants  # noqa: E402

from common import FIXTURES, round_floats, versions, write_json  # noqa: E402

SEED = 20240601
ROWS, COLS = 8, 512

# Types quantized from the source tensor with gguf-py.
QUANTIZE_TYPES = [QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.F16, QT.BF16]
# Types given as random blocks (gguf-py cannot quantize K-quants).
KQUANT_TYPES = [QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K, QT.Q8_K]
LEGACY_RANDOM_TYPES = [QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0]
N_KBLOCKS = 8

# Byte offsets of the scale fields inside one block, from gguf-py's
# dequantize_blocks (which mirrors ggml's block_* structs):
#   Q2_K (84 B):  scales[16] qs[64] d:f16@80 dmin:f16@82
#   Q3_K (110 B): hmask[32] qs[64] scales[12] d:f16@108
#   Q4_K (144 B): d:f16@0 dmin:f16@2 scales[12] qs[128]
#   Q5_K (176 B): d:f16@0 dmin:f16@2 scales[12] qh[32] qs[128]
#   Q6_K (210 B): ql[128] qh[64] scales:i8[16] d:f16@208
#   Q8_K (292 B): d:f32@0 qs:i8[256] bsums:i16[16]@260
#   Q4_0 (18 B):  d:f16@0 qs[16]          Q4_1 (20 B): d:f16@0 m:f16@2 qs[16]
#   Q5_0 (22 B):  d:f16@0 qh[4] qs[16]    Q5_1 (24 B): d:f16@0 m:f16@2 qh[4] qs[16]
#   Q8_0 (34 B):  d:f16@0 qs:i8[32]
F16_FIELDS = {
    QT.Q2_K: [80, 82],
    QT.Q3_K: [108],
    QT.Q4_K: [0, 2],
    QT.Q5_K: [0, 2],
    QT.Q6_K: [208],
    QT.Q4_0: [0],
    QT.Q4_1: [0, 2],
    QT.Q5_0: [0],
    QT.Q5_1: [0, 2],
    QT.Q8_0: [0],
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_tensor() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    # A few outliers, like the ones real weight matrices have.
    for r, c, v in [(0, 5, 12.5), (1, 300, -17.25), (3, 31, 8.0), (4, 32, -9.5),
                    (6, 511, 20.0), (7, 128, -11.0)]:
        x[r, c] = v
    # One all-zero block and one block of tiny values (edge cases for the scale).
    x[2, 64:96] = 0.0
    x[5, 256:288] = rng.standard_normal(32).astype(np.float32) * 1e-4
    return x


def random_scale(rng: np.random.Generator, n: int) -> np.ndarray:
    mag = rng.uniform(0.05, 0.5, size=n)
    sign = rng.choice([-1.0, 1.0], size=n)
    return mag * sign


def random_blocks(qtype: QT, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype == QT.Q8_K:
        d = random_scale(rng, n_blocks).astype("<f4")
        blocks[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
        qs = blocks[:, 4:260].view(np.int8).astype(np.int16)
        bsums = qs.reshape(n_blocks, 16, 16).sum(axis=2).astype("<i2")
        blocks[:, 260:292] = bsums.view(np.uint8).reshape(n_blocks, 32)
        return blocks
    for off in F16_FIELDS[qtype]:
        v = random_scale(rng, n_blocks).astype("<f2")
        blocks[:, off:off + 2] = v.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def dequantize_q8_k(blocks: np.ndarray) -> np.ndarray:
    """ggml's dequantize_row_q8_K: y = d * qs (gguf-py has no Q8_K dequantizer)."""
    d = blocks[:, 0:4].copy().view("<f4").astype(np.float32)
    qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return d * qs


def dequantize(blocks: np.ndarray, qtype: QT) -> tuple[np.ndarray, str]:
    if qtype == QT.Q8_K:
        try:
            return quants.dequantize(blocks, qtype), "gguf-py"
        except NotImplementedError:
            return dequantize_q8_k(blocks), "numpy port of ggml dequantize_row_q8_K"
    return quants.dequantize(blocks, qtype), "gguf-py"


def write_bin(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(np.ascontiguousarray(arr).tobytes())


def quant_vectors(out: Path) -> list[dict]:
    entries = []
    src = source_tensor()
    write_bin(out / "source.f32.bin", src.astype("<f4"))
    entries.append({"file": "source.f32.bin", "kind": "source", "type": "F32",
                    "shape": [ROWS, COLS], "seed": SEED})

    for qt in QUANTIZE_TYPES:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
        q = quants.quantize(src, qt)
        dq = quants.dequantize(q, qt).astype("<f4")
        assert dq.shape == src.shape and np.isfinite(dq).all()
        name = qt.name.lower()
        write_bin(out / f"{name}.quant.bin", q)
        write_bin(out / f"{name}.dequant.f32.bin", dq)
        n_blocks = src.size // block_size
        entries.append({
            "file": f"{name}.quant.bin", "kind": "quantized_source", "type": qt.name,
            "ggml_type_id": int(qt), "shape": [ROWS, COLS], "block_size": block_size,
            "type_size": type_size, "n_blocks": n_blocks, "bytes": int(q.nbytes),
            "source": "source.f32.bin", "dequant": f"{name}.dequant.f32.bin",
            "max_abs_err_vs_source": float(np.abs(dq - src).max()),
        })

    rng = np.random.default_rng(SEED + 1)
    for qt in KQUANT_TYPES + LEGACY_RANDOM_TYPES:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
        is_k = qt in KQUANT_TYPES
        # Always 8 rows of 256 values: 8 K-quant blocks, or 64 blocks of 32.
        n_blocks = N_KBLOCKS * 256 // block_size
        blocks = random_blocks(qt, n_blocks, rng)
        dq, how = dequantize(blocks, qt)
        dq = dq.reshape(N_KBLOCKS, 256).astype("<f4")
        assert np.isfinite(dq).all(), qt.name
        name = qt.name.lower()
        stem = name if is_k else f"{name}.random"
        write_bin(out / f"{stem}.blocks.bin", blocks)
        write_bin(out / f"{stem}.dequant.f32.bin", dq)
        entries.append({
            "file": f"{stem}.blocks.bin", "kind": "random_blocks", "type": qt.name,
            "ggml_type_id": int(qt), "shape": list(dq.shape), "block_size": block_size,
            "type_size": type_size, "n_blocks": n_blocks, "bytes": int(blocks.nbytes),
            "dequant": f"{stem}.dequant.f32.bin", "dequantized_by": how,
            "note": "random bytes except the scale fields, which are finite values with "
                    "|x| in [0.05, 0.5] and random sign (f16, or f32 for Q8_K)"
                    + ("; Q8_K bsums are consistent with qs" if qt == QT.Q8_K else ""),
        })
    return entries


# ---------------------------------------------------------------------------
# HF llama -> GGUF
# ---------------------------------------------------------------------------

def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half layout
    to the interleaved (GPT-J style) pair layout that llama.cpp's rope expects."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def load_hf(hf_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    cfg = json.loads((hf_dir / "config.json").read_text())
    tensors = {}
    index = hf_dir / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values()))
             if index.exists() else ["model.safetensors"])
    for f in files:
        tensors.update(load_file(str(hf_dir / f)))
    return cfg, {k: v.astype(np.float32) for k, v in tensors.items()}


def hf_to_gguf_names(cfg: dict, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = {"token_embd.weight": t["model.embed_tokens.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[f"blk.{i}.attn_norm.weight"] = t[p + "input_layernorm.weight"]
        out[f"blk.{i}.attn_q.weight"] = permute(t[p + "self_attn.q_proj.weight"], n_head, n_head)
        out[f"blk.{i}.attn_k.weight"] = permute(t[p + "self_attn.k_proj.weight"], n_head, n_kv)
        out[f"blk.{i}.attn_v.weight"] = t[p + "self_attn.v_proj.weight"]
        out[f"blk.{i}.attn_output.weight"] = t[p + "self_attn.o_proj.weight"]
        out[f"blk.{i}.ffn_norm.weight"] = t[p + "post_attention_layernorm.weight"]
        out[f"blk.{i}.ffn_gate.weight"] = t[p + "mlp.gate_proj.weight"]
        out[f"blk.{i}.ffn_up.weight"] = t[p + "mlp.up_proj.weight"]
        out[f"blk.{i}.ffn_down.weight"] = t[p + "mlp.down_proj.weight"]
    out["output_norm.weight"] = t["model.norm.weight"]
    out["output.weight"] = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    return out


def gguf_to_hf_names(cfg: dict, g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = {"model.embed_tokens.weight": g["token_embd.weight"],
           "model.norm.weight": g["output_norm.weight"],
           "lm_head.weight": g["output.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = g[f"blk.{i}.attn_norm.weight"]
        out[p + "self_attn.q_proj.weight"] = unpermute(g[f"blk.{i}.attn_q.weight"], n_head)
        out[p + "self_attn.k_proj.weight"] = unpermute(g[f"blk.{i}.attn_k.weight"], n_kv)
        out[p + "self_attn.v_proj.weight"] = g[f"blk.{i}.attn_v.weight"]
        out[p + "self_attn.o_proj.weight"] = g[f"blk.{i}.attn_output.weight"]
        out[p + "post_attention_layernorm.weight"] = g[f"blk.{i}.ffn_norm.weight"]
        out[p + "mlp.gate_proj.weight"] = g[f"blk.{i}.ffn_gate.weight"]
        out[p + "mlp.up_proj.weight"] = g[f"blk.{i}.ffn_up.weight"]
        out[p + "mlp.down_proj.weight"] = g[f"blk.{i}.ffn_down.weight"]
    return out


def chat_template(hf_dir: Path) -> str:
    jinja = hf_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    return json.loads((hf_dir / "tokenizer_config.json").read_text())["chat_template"]


def tokenizer_metadata(hf_dir: Path) -> dict:
    tj = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(tj["model"]["vocab"])
    for at in tj["added_tokens"]:
        vocab[at["content"]] = at["id"]
    n = max(vocab.values()) + 1
    tokens = [""] * n
    for tok, i in vocab.items():
        tokens[i] = tok
    assert all(tokens), "vocab ids must be contiguous"
    special = {at["id"] for at in tj["added_tokens"] if at["special"]}
    types = [int(gguf.TokenType.CONTROL) if i in special else int(gguf.TokenType.NORMAL)
             for i in range(n)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    return {"tokens": tokens, "types": types, "merges": merges}


def write_gguf(hf_dir: Path, path: Path, qtype: QT | None) -> dict[str, np.ndarray]:
    """Write a llama GGUF; return the tensors as stored (dequantized when quantized)."""
    cfg, t = load_hf(hf_dir)
    assert cfg["model_type"] == "llama"
    assert not cfg.get("rope_scaling") and cfg.get("rope_parameters", {}).get("rope_type", "default") == "default", \
        "llama3 rope scaling needs a rope_freqs tensor; convert a model without it"
    rope_theta = cfg.get("rope_theta", cfg.get("rope_parameters", {}).get("rope_theta"))
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    gen = json.loads((hf_dir / "generation_config.json").read_text())
    tokmeta = tokenizer_metadata(hf_dir)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("compsafe llama-plain fixture")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32 if qtype is None else gguf.LlamaFileType.MOSTLY_Q8_0))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(rope_theta)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokmeta["tokens"])
    w.add_token_types(tokmeta["types"])
    w.add_token_merges(tokmeta["merges"])
    w.add_bos_token_id(cfg.get("bos_token_id", gen.get("bos_token_id")))
    w.add_eos_token_id(gen["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(chat_template(hf_dir))

    stored = {}
    for name, arr in hf_to_gguf_names(cfg, t).items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if qtype is not None and arr.ndim == 2:
            q = quants.quantize(arr, qtype)
            w.add_tensor(name, q, raw_dtype=qtype)
            stored[name] = quants.dequantize(q, qtype).astype(np.float32)
        else:
            w.add_tensor(name, arr)
            stored[name] = arr
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def read_back(path: Path) -> dict[str, np.ndarray]:
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        data = np.array(t.data)
        if t.tensor_type not in (QT.F32,):
            data = quants.dequantize(data, t.tensor_type)
        shape = [int(x) for x in reversed(t.shape)]
        out[t.name] = data.reshape(shape).astype(np.float32)
    return out


def numpy_forward_gguf(g: dict[str, np.ndarray], cfg: dict, ids: list[int]) -> np.ndarray:
    """Float64 forward pass using llama.cpp's conventions on GGUF-named tensors.

    RoPE here is the llama.cpp "normal" kind for LLM_ARCH_LLAMA: it rotates
    adjacent pairs (x[2i], x[2i+1]), which is what the q/k permutation is for.
    Returns logits (len(ids), vocab)."""
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg["hidden_size"] // n_head
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", cfg.get("rope_parameters", {}).get("rope_theta"))
    w = {k: v.astype(np.float64) for k, v in g.items()}
    T = len(ids)

    def rms(x, weight):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight

    def rope(x):  # x: (T, heads, hd), interleaved pairs
        inv = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    x = w["token_embd.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        b = f"blk.{i}."
        h = rms(x, w[b + "attn_norm.weight"])
        q = rope((h @ w[b + "attn_q.weight"].T).reshape(T, n_head, hd))
        k = rope((h @ w[b + "attn_k.weight"].T).reshape(T, n_kv, hd))
        v = (h @ w[b + "attn_v.weight"].T).reshape(T, n_kv, hd)
        rep = n_head // n_kv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, n_head * hd)
        x = x + o @ w[b + "attn_output.weight"].T
        h = rms(x, w[b + "ffn_norm.weight"])
        gate = h @ w[b + "ffn_gate.weight"].T
        act = gate / (1.0 + np.exp(-gate)) * (h @ w[b + "ffn_up.weight"].T)
        x = x + act @ w[b + "ffn_down.weight"].T
    return rms(x, w["output_norm.weight"]) @ w["output.weight"].T


def expected_for_weights(hf_dir: Path, weights: dict[str, np.ndarray]) -> dict:
    """transformers reference outputs for `weights` in the shape of hf_dir."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    import make_hf_fixtures as mhf

    cfg = json.loads((hf_dir / "config.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "m"
        shutil.copytree(hf_dir, d, ignore=shutil.ignore_patterns("*.safetensors*", "expected.json"))
        save_file({k: torch.from_numpy(np.ascontiguousarray(v))
                   for k, v in gguf_to_hf_names(cfg, weights).items()},
                  str(d / "model.safetensors"), metadata={"format": "pt"})
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        return mhf.reference_outputs(d, tok, "q8_0")


def convert(hf_dir: Path, out: Path) -> list[dict]:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    cfg, hf = load_hf(hf_dir)
    entries = []

    f32_path = out / "llama-plain.f32.gguf"
    write_gguf(hf_dir, f32_path, None)
    back = read_back(f32_path)
    back_hf = gguf_to_hf_names(cfg, back)
    for k, v in hf.items():
        assert np.array_equal(back_hf[k], v), f"{k} does not round-trip"
    # The GGUF, run with llama.cpp's rope convention, must reproduce transformers.
    ref = json.loads((hf_dir / "expected.json").read_text())
    diffs = []
    for i, p in enumerate(ref["prompts"]):
        logits = numpy_forward_gguf(back, cfg, p)
        diffs.append(float(np.abs(logits[-1] - np.array(ref["next_logits"][i])).max()))
        if i == 0:
            diffs.append(float(np.abs(logits - np.array(ref["all_logits_prompt0"])).max()))
    max_diff = max(diffs)
    assert max_diff < 1e-4, f"GGUF numpy forward differs from transformers by {max_diff}"
    entries.append({"file": f32_path.name, "kind": "gguf_checkpoint", "type": "F32",
                    "source_hf": "hf/llama-plain", "expected": "hf/llama-plain/expected.json",
                    "n_tensors": len(back),
                    "rope": "llama.cpp normal (adjacent pairs); attn_q/attn_k rows permuted",
                    "numpy_forward_vs_transformers_max_abs_diff": max_diff})

    q8_path = out / "llama-plain.q8_0.gguf"
    stored = write_gguf(hf_dir, q8_path, QT.Q8_0)
    back = read_back(q8_path)
    for k, v in stored.items():
        assert np.array_equal(back[k], v), f"{k}: Q8_0 read-back differs"
    exp = expected_for_weights(hf_dir, back)
    exp["note"] = ("transformers (f32, eager) run on the Q8_0 GGUF weights dequantized with "
                   "gguf-py and un-permuted back to HF layout; norms are f32 in the file")
    write_json(out / "llama-plain.q8_0.expected.json", round_floats(exp))
    entries.append({"file": q8_path.name, "kind": "gguf_checkpoint", "type": "Q8_0",
                    "source_hf": "hf/llama-plain", "expected": "llama-plain.q8_0.expected.json",
                    "n_tensors": len(back), "checks": exp["checks"]})
    return entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=FIXTURES / "gguf")
    ap.add_argument("--hf", type=Path, default=FIXTURES / "hf" / "llama-plain")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    entries = quant_vectors(out)
    entries += convert(args.hf, out)
    for e in entries:
        p = out / e["file"]
        e["sha256"] = sha256(p)
        if "dequant" in e:
            e["dequant_sha256"] = sha256(out / e["dequant"])
    manifest = {
        "versions": versions(),
        "byte_order": "little-endian",
        "float_files": "raw f32, row-major, shape as listed",
        "quantize_types": [q.name for q in QUANTIZE_TYPES],
        "random_block_types": [q.name for q in KQUANT_TYPES + LEGACY_RANDOM_TYPES],
        "files": entries,
    }
    write_json(out / "manifest.json", round_floats(manifest), compact=False)
    for e in entries:
        print(f"{e['file']:32s} {e['type']:6s} {e.get('shape', '')}")


if __name__ == "__main__":
    main()
