#!/usr/bin/env python3
"""GGUF files of the tiny qwen2, qwen3, gemma2, gemma3 and phi3 checkpoints, written with
gguf-py the way llama.cpp's convert_hf_to_gguf.py writes those architectures.

Input: engine/tests/fixtures/hf/<model>/ (make_hf_fixtures.py).
Output: engine/tests/fixtures/gguf-arch/
  <model>.f32.gguf            every tensor f32; its expected outputs are hf/<model>/expected.json,
                              or <model>.f32.expected.json where the file is not the checkpoint
                              (gemma2: the converter drops lm_head, llama.cpp ties it)
  <model>.q8_0.gguf           2-D weights in Q8_0 (gguf-py's quantizer), norms f32
  <model>.q8_0.expected.json  transformers (f32, eager) on the Q8_0 weights dequantized by
                              gguf-py, in the schema of expected.json
  manifest.json               versions, files, sha256, what the converter conventions were

The converter conventions followed (convert_hf_to_gguf.py, llama.cpp):
- tensor names from gguf-py's tensor map for the architecture (`get_tensor_name_map`), which
  is what the converter's `map_tensor_name` uses; no q/k permutation (these architectures
  rotate halves in llama.cpp, LLAMA_ROPE_TYPE_NEOX);
- Gemma 2/3: every `*norm.weight` stored as `w + 1`; `attention.key_length`/`value_length`,
  `attention.sliding_window`, Gemma 2's `attn_logit_softcapping`/`final_logit_softcapping`,
  Gemma 3's `rope.freq_base` (global layers) and linear `rope.scaling.*` (global layers);
- Qwen3: `attention.key_length`/`value_length`, YaRN as `rope.scaling.type` = yarn,
  `rope.scaling.factor`, `rope.scaling.original_context_length`;
- Phi-3: fused `attn_qkv` and `ffn_up` (gate rows first) as in the checkpoint,
  `rope.dimension_count` = int(partial_rotary_factor * hidden) // heads,
  `rope.scaling.attn_factor`, `rope.scaling.original_context_length`, and the LongRoPE
  factors as f32 tensors `rope_factors_long.weight` / `rope_factors_short.weight`;
  `attention.sliding_window` 0 when the config has none.
The tokenizer is the fixtures' byte-level BPE written as a `gpt2` vocabulary.

Usage: python3 tools/reference/make_arch_gguf.py
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import quants  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

import make_hf_fixtures as mhf  # noqa: E402
from common import FIXTURES, deterministic_torch, round_floats, versions, write_json  # noqa: E402
from make_gguf_vectors import chat_template, tokenizer_metadata  # noqa: E402

OUT = FIXTURES / "gguf-arch"
MODELS = {
    "qwen2": gguf.MODEL_ARCH.QWEN2,
    "qwen3": gguf.MODEL_ARCH.QWEN3,
    "gemma2": gguf.MODEL_ARCH.GEMMA2,
    "gemma3": gguf.MODEL_ARCH.GEMMA3,
    "phi3": gguf.MODEL_ARCH.PHI3,
}


def rope_params(cfg: dict) -> dict:
    """The global RoPE parameters of a config in either layout."""
    rp = cfg.get("rope_parameters")
    if rp is None:
        rp = dict(cfg.get("rope_scaling") or {})
        rp.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    if "full_attention" in rp:
        rp = rp["full_attention"]
    return rp


def write_model(name: str, qtype: QT | None) -> dict[str, np.ndarray]:
    """Write <name>.<f32|q8_0>.gguf; return its tensors by HF name as stored, dequantized,
    with Gemma's norms converted back to w."""
    hf = FIXTURES / "hf" / name
    cfg = json.loads((hf / "config.json").read_text())
    arch = MODELS[name]
    arch_name = gguf.MODEL_ARCH_NAMES[arch]
    t = load_file(str(hf / "model.safetensors"))
    nmap = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    gemma = arch in (gguf.MODEL_ARCH.GEMMA2, gguf.MODEL_ARCH.GEMMA3)
    gen = json.loads((hf / "generation_config.json").read_text())
    tokmeta = tokenizer_metadata(hf)
    heads, hidden = cfg["num_attention_heads"], cfg["hidden_size"]
    rp = rope_params(cfg)

    path = OUT / f"{name}.{'f32' if qtype is None else 'q8_0'}.gguf"
    w = gguf.GGUFWriter(str(path), arch_name)
    w.add_name(f"compsafe {name} fixture")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32 if qtype is None
                        else gguf.LlamaFileType.MOSTLY_Q8_0))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if cfg.get("head_dim") and arch != gguf.MODEL_ARCH.PHI3:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if arch != gguf.MODEL_ARCH.GEMMA2:
        w.add_rope_freq_base(rp["rope_theta"])
    rope_type = rp.get("rope_type", rp.get("type", "default"))
    if arch == gguf.MODEL_ARCH.QWEN3 and rope_type == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rp["factor"])
        w.add_rope_scaling_orig_ctx_len(rp["original_max_position_embeddings"])
    if gemma:
        w.add_sliding_window(cfg["sliding_window"])
    if arch == gguf.MODEL_ARCH.GEMMA2:
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    if arch == gguf.MODEL_ARCH.GEMMA3 and rope_type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rp["factor"])
    extra: dict[str, np.ndarray] = {}
    if arch == gguf.MODEL_ARCH.PHI3:
        rot = rp.get("partial_rotary_factor", 1.0)
        rope_dims = int(rot * hidden) // heads
        orig = cfg["original_max_position_embeddings"]
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_rope_dimension_count(rope_dims)
        w.add_sliding_window(cfg.get("sliding_window") or 0)
        scale = cfg["max_position_embeddings"] / orig
        attn_factor = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0
        w.add_rope_scaling_attn_factors(attn_factor)
        assert len(rp["long_factor"]) == rope_dims // 2
        extra["rope_factors_long.weight"] = np.array(rp["long_factor"], dtype=np.float32)
        extra["rope_factors_short.weight"] = np.array(rp["short_factor"], dtype=np.float32)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokmeta["tokens"])
    w.add_token_types(tokmeta["types"])
    w.add_token_merges(tokmeta["merges"])
    w.add_bos_token_id(gen["bos_token_id"])
    w.add_eos_token_id(gen["eos_token_id"])
    w.add_pad_token_id(gen["pad_token_id"])
    w.add_chat_template(chat_template(hf))

    stored: dict[str, np.ndarray] = {}
    for hf_name in sorted(t):
        if hf_name == "lm_head.weight" and arch == gguf.MODEL_ARCH.GEMMA2:
            # The converter drops it: llama.cpp's gemma2 always reads the output matrix from
            # token_embd (real Gemma 2 checkpoints tie them anyway).
            continue
        arr = np.ascontiguousarray(t[hf_name], dtype=np.float32)
        if gemma and hf_name.endswith("norm.weight"):
            arr = arr + np.float32(1.0)
        gname = nmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert gname is not None, hf_name
        if qtype is not None and arr.ndim == 2:
            q = quants.quantize(arr, qtype)
            w.add_tensor(gname, q, raw_dtype=qtype)
            back = quants.dequantize(q, qtype).astype(np.float32)
        else:
            w.add_tensor(gname, arr)
            back = arr
        if gemma and hf_name.endswith("norm.weight"):
            # What transformers must see so that 1 + w equals the stored value exactly.
            back = back - np.float32(1.0)
        stored[hf_name] = back
    if "lm_head.weight" in t and "lm_head.weight" not in stored:
        stored["lm_head.weight"] = stored["model.embed_tokens.weight"].copy()
    for gname, arr in extra.items():
        w.add_tensor(gname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def expected_for(name: str, weights: dict[str, np.ndarray]) -> dict:
    """transformers (f32, eager) on `weights`, in the schema of expected.json."""
    hf = FIXTURES / "hf" / name
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / name
        shutil.copytree(hf, d, ignore=shutil.ignore_patterns("*.safetensors*", "expected.json"))
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()},
                  str(d / "model.safetensors"), metadata={"format": "pt"})
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        return mhf.reference_outputs(d, tok, "q8_0")


def main() -> None:
    deterministic_torch(threads=1)
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"versions": versions(), "files": {}}
    for name in MODELS:
        f32 = write_model(name, None)
        src = load_file(str(FIXTURES / "hf" / name / "model.safetensors"))
        worst = max(float(np.abs(f32[k] - src[k]).max()) for k in src)
        names = ["f32.gguf", "q8_0.gguf", "q8_0.expected.json"]
        if worst > 0:
            # The file is not the checkpoint (Gemma 2's output matrix): its own reference.
            write_json(OUT / f"{name}.f32.expected.json", round_floats(expected_for(name, f32)))
            names.append("f32.expected.json")
        q8 = write_model(name, QT.Q8_0)
        exp = expected_for(name, q8)
        write_json(OUT / f"{name}.q8_0.expected.json", round_floats(exp))
        for suffix in names:
            p = OUT / f"{name}.{suffix}"
            manifest["files"][p.name] = {
                "bytes": p.stat().st_size,
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            }
        manifest["files"][f"{name}.f32.gguf"]["max_abs_roundtrip_vs_safetensors"] = worst
        manifest["files"][f"{name}.q8_0.expected.json"]["checks"] = exp["checks"]
        print(f"{name}: f32 round trip {worst:.1e}; q8_0 checks {exp['checks']}")
    write_json(OUT / "manifest.json", round_floats(manifest), compact=False)


if __name__ == "__main__":
    main()
