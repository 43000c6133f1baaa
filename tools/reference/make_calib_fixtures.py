#!/usr/bin/env python3
"""Reference outputs of calibrated compressors, for engine/tests/calib_reference.rs.

Builds a tiny random Llama (2 layers, hidden 128, MLP 256, 4 query / 2 key-value heads,
a few embedding channels scaled up like the outlier features of real LLMs), 16 calibration
sequences of 64 random tokens, and runs llm-compressor's one-shot pipeline ("sequential",
no shuffling) on them for each method. Writes into engine/tests/fixtures/calib/:

  model/                 the tiny Llama (HF layout, f32)
  tokens.json            the calibration sequences, in order
  <variant>.safetensors  per linear weight: integer codes (u8, code + 128) with scales and zero points
                         for quantizers, the f32 weights for SparseGPT, the kept-weight masks (u8)
                         for Wanda, and AWQ's chosen scales
  manifest.json          library versions and per-variant settings

Run with the llm-compressor venv (see README.md): python3 tools/reference/make_calib_fixtures.py
"""
import json
import os
import sys
from pathlib import Path

import torch

torch.manual_seed(0)
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "engine" / "tests" / "fixtures" / "calib"
MODEL = OUT / "model"
SEQS, SEQ_LEN, VOCAB = 16, 64, 512
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def make_model():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=True, bos_token_id=0, eos_token_id=1,
                      pad_token_id=2, torch_dtype="float32")
    model = LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
        # Outlier channels in the residual stream.
        emb = model.model.embed_tokens.weight
        emb[:, [3, 17, 60, 101]] *= 8.0
    MODEL.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(MODEL, safe_serialization=True)
    # A word-level tokenizer over the ids (llm-compressor wants a processor; the data are
    # already token ids).
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t2"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="t0", eos_token="t1",
                                   pad_token="t2", unk_token="t2")
    fast.save_pretrained(MODEL)
    return cfg


def tokens():
    g = torch.Generator().manual_seed(1)
    return torch.randint(3, VOCAB, (SEQS, SEQ_LEN), generator=g)


def load():
    from transformers import LlamaForCausalLM
    return LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()


def oneshot_run(recipe, ids):
    from datasets import Dataset
    from llmcompressor import oneshot
    model = load()
    ds = Dataset.from_dict({"input_ids": ids.tolist(),
                            "attention_mask": [[1] * SEQ_LEN] * SEQS})
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(MODEL)
    oneshot(model=model, processor=tok, dataset=ds, recipe=recipe, num_calibration_samples=SEQS,
            max_seq_length=SEQ_LEN, shuffle_calibration_samples=False,
            pipeline="sequential", batch_size=1)
    return model


def quantized_tensors(model):
    """Integer codes, scales and zero points of every quantized linear."""
    out = {}
    for l in range(2):
        for lin in LINEARS:
            m = model.get_submodule(f"model.layers.{l}.{lin}")
            w = m.weight.detach().float()
            s = m.weight_scale.detach().float()
            z = m.weight_zero_point.detach().float() if hasattr(m, "weight_zero_point") else torch.zeros_like(s)
            group = w.shape[1] // s.shape[1]
            se = s.repeat_interleave(group, dim=1)
            ze = z.repeat_interleave(group, dim=1)
            codes = torch.round(w / se + ze)
            # The stored weight must be exactly (code - zero) * scale.
            assert torch.equal((codes - ze) * se, w), f"{l}.{lin} not on its grid"
            name = f"model.layers.{l}.{lin}.weight"
            out[name + ".codes"] = (codes + 128).to(torch.uint8).contiguous()  # code + 128
            out[name + ".scale"] = s.contiguous()
            out[name + ".zero"] = z.contiguous()
    return out


def dense_tensors(model):
    return {f"model.layers.{l}.{lin}.weight": model.get_submodule(f"model.layers.{l}.{lin}")
            .weight.detach().float().contiguous()
            for l in range(2) for lin in LINEARS}


def main():
    from safetensors.torch import save_file
    import llmcompressor
    import compressed_tensors
    import transformers
    from llmcompressor.modifiers.gptq import GPTQModifier

    cfg = make_model()
    ids = tokens()
    (OUT / "tokens.json").write_text(json.dumps(ids.tolist()))
    only = set(sys.argv[1:])
    manifest = {"versions": {"torch": torch.__version__,
                             "transformers": transformers.__version__,
                             "llmcompressor": llmcompressor.__version__,
                             "compressed_tensors": compressed_tensors.__version__},
                "seqs": SEQS, "seq_len": SEQ_LEN, "variants": {}}

    def gptq(name, scheme_weights, actorder):
        from compressed_tensors.quantization import QuantizationScheme, QuantizationArgs
        scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**scheme_weights))
        recipe = GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"],
                              actorder=actorder, dampening_frac=0.01, block_size=128)
        model = oneshot_run(recipe, ids)
        save_file(quantized_tensors(model), OUT / f"{name}.safetensors")
        manifest["variants"][name] = {"weights": scheme_weights, "actorder": actorder}

    def prune(name, modifier, **kw):
        from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
        cls = SparseGPTModifier if modifier == "sparsegpt" else WandaPruningModifier
        extra = dict(block_size=128, dampening_frac=0.01) if modifier == "sparsegpt" else {}
        recipe = cls(targets=["re:.*layers\\.\\d+\\..*_proj$"], ignore=["lm_head"], **kw, **extra)
        model = oneshot_run(recipe, ids)
        dense = dense_tensors(model)
        if modifier == "wanda":
            # Wanda keeps the kept weights unchanged: the mask (1 = kept) says it all.
            orig = dense_tensors(load())
            for k, v in dense.items():
                assert torch.equal(v[v != 0], orig[k][v != 0]), k
            dense = {k + ".kept": (v != 0).to(torch.uint8).contiguous() for k, v in dense.items()}
        save_file(dense, OUT / f"{name}.safetensors")
        manifest["variants"][name] = {"modifier": modifier, **kw}

    def awq(name, scheme):
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier
        chosen = []
        orig = AWQModifier._compute_best_scale

        def record(self, mapping, fp16_outputs, orig_layer_weights):
            s = orig(self, mapping, fp16_outputs, orig_layer_weights)
            chosen.append((mapping.smooth_name, s.double().clone()))
            return s

        AWQModifier._compute_best_scale = record
        # llm-compressor 0.14's AWQ pins cached activations in page-locked memory, which
        # needs a CUDA driver; on a CPU-only machine that fails ("Found no NVIDIA driver").
        # Pinning only speeds up host-to-device copies, so it is skipped here.
        from llmcompressor.pipelines.cache import IntermediatesCache
        IntermediatesCache.pin_memory = lambda self, batch_index: None
        try:
            recipe = [AWQModifier(duo_scaling=True, n_grid=20),
                      QuantizationModifier(targets=["Linear"], scheme=scheme, ignore=["lm_head"])]
            model = oneshot_run(recipe, ids)
        finally:
            AWQModifier._compute_best_scale = orig
        out = {}
        for l in range(2):
            for lin in LINEARS:
                m = model.get_submodule(f"model.layers.{l}.{lin}")
                w = m.weight.detach().float()
                s = m.weight_scale.detach().float()
                z = m.weight_zero_point.detach().float()
                g = w.shape[1] // s.shape[1]
                se, ze = s.repeat_interleave(g, 1), z.repeat_interleave(g, 1)
                codes = torch.round(torch.clamp(w / se + ze, -8, 7))
                key = f"model.layers.{l}.{lin}.weight"
                out[key + ".codes"] = (codes + 128).to(torch.uint8).contiguous()
                out[key + ".scale"] = s.contiguous()
                out[key + ".zero"] = z.contiguous()
            for n in ["input_layernorm", "post_attention_layernorm"]:
                out[f"model.layers.{l}.{n}.weight"] = model.get_submodule(
                    f"model.layers.{l}.{n}").weight.detach().float().contiguous()
        for smooth, s in chosen:
            out[f"{smooth}.awq_scales"] = s.contiguous()
        save_file(out, OUT / f"{name}.safetensors")
        manifest["variants"][name] = {"recipe": "AWQModifier(duo_scaling=True, n_grid=20) + QuantizationModifier",
                                      "scheme": scheme, "mappings": [c[0] for c in chosen]}

    def fp8_dynamic(name):
        # FP8 E4M3 weights per channel, dynamic per-token activations: no calibration data
        # is read, the weights are quantize-dequantized in place and keep their scales.
        from compressed_tensors.quantization.lifecycle.forward import fake_quantize
        from llmcompressor.modifiers.quantization import QuantizationModifier
        recipe = QuantizationModifier(targets=["Linear"], scheme="FP8_DYNAMIC", ignore=["lm_head"])
        model = oneshot_run(recipe, ids)
        out = {}
        for l in range(2):
            for lin in LINEARS:
                m = model.get_submodule(f"model.layers.{l}.{lin}")
                key = f"model.layers.{l}.{lin}.weight"
                # The weight is still the original one (it is compressed when saved): the
                # library's own quantize-dequantize with the scales it chose.
                args = m.quantization_scheme.weights
                out[key] = fake_quantize(m.weight.detach().float(), m.weight_scale.detach(),
                                         m.weight_zero_point.detach(), args).contiguous()
                out[key + ".scale"] = m.weight_scale.detach().float().reshape(-1).contiguous()
        save_file(out, OUT / f"{name}.safetensors")
        manifest["variants"][name] = {"scheme": "FP8_DYNAMIC"}

    def smoothquant(name, alpha):
        # SmoothQuant's smoothing, then int8 weights per channel with int8 per-token inputs.
        from compressed_tensors.quantization.lifecycle.forward import fake_quantize
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
        recipe = [SmoothQuantModifier(smoothing_strength=alpha),
                  QuantizationModifier(targets=["Linear"], scheme="W8A8", ignore=["lm_head"])]
        model = oneshot_run(recipe, ids)
        out = {}
        for l in range(2):
            for lin in LINEARS:
                m = model.get_submodule(f"model.layers.{l}.{lin}")
                key = f"model.layers.{l}.{lin}.weight"
                args = m.quantization_scheme.weights
                out[key] = fake_quantize(m.weight.detach().float(), m.weight_scale.detach(),
                                         m.weight_zero_point.detach(), args).contiguous()
                out[key + ".smoothed"] = m.weight.detach().float().contiguous()
                out[key + ".scale"] = m.weight_scale.detach().float().reshape(-1).contiguous()
            for n in ["input_layernorm", "post_attention_layernorm"]:
                out[f"model.layers.{l}.{n}.weight"] = model.get_submodule(
                    f"model.layers.{l}.{n}").weight.detach().float().contiguous()
        save_file(out, OUT / f"{name}.safetensors")
        manifest["variants"][name] = {"recipe": f"SmoothQuantModifier(smoothing_strength={alpha}) + QuantizationModifier(W8A8)"}

    def kv_fp8(name):
        # FP8 weights with an FP8 KV cache: per-tensor static k_scale / v_scale per layer,
        # calibrated on the tokens.
        from compressed_tensors.quantization import QuantizationArgs
        from llmcompressor.modifiers.quantization import QuantizationModifier
        kv = QuantizationArgs(num_bits=8, type="float", strategy="tensor", dynamic=False,
                              symmetric=True)
        recipe = QuantizationModifier(targets=["Linear"], scheme="FP8_DYNAMIC", ignore=["lm_head"],
                                      kv_cache_scheme=kv)
        model = oneshot_run(recipe, ids)
        out = {}
        for l in range(2):
            attn = model.get_submodule(f"model.layers.{l}.self_attn")
            out[f"model.layers.{l}.self_attn.k_scale"] = attn.k_scale.detach().float().reshape(-1).contiguous()
            out[f"model.layers.{l}.self_attn.v_scale"] = attn.v_scale.detach().float().reshape(-1).contiguous()
        save_file(out, OUT / f"{name}.safetensors")
        manifest["variants"][name] = {"scheme": "FP8_DYNAMIC", "kv_cache_scheme": "float8 tensor static"}

    variants = {
        "kv_fp8": lambda: kv_fp8("kv_fp8"),
        "smoothquant_w8a8": lambda: smoothquant("smoothquant_w8a8", 0.5),
        "fp8_dynamic": lambda: fp8_dynamic("fp8_dynamic"),
        "awq_w4g128": lambda: awq("awq_w4g128", "W4A16_ASYM"),
        "gptq_w4g128": lambda: gptq("gptq_w4g128", dict(num_bits=4, type="int", symmetric=True,
                                                         strategy="group", group_size=128), None),
        "gptq_w4g128_act": lambda: gptq("gptq_w4g128_act", dict(num_bits=4, type="int", symmetric=True,
                                                                 strategy="group", group_size=128), "static"),
        "gptq_w3g64_asym": lambda: gptq("gptq_w3g64_asym", dict(num_bits=3, type="int", symmetric=False,
                                                                 strategy="group", group_size=64), None),
        "gptq_w8": lambda: gptq("gptq_w8", dict(num_bits=8, type="int", symmetric=True,
                                                 strategy="channel"), None),
        "sparsegpt_0.5": lambda: prune("sparsegpt_0.5", "sparsegpt", sparsity=0.5, mask_structure="0:0"),
        "sparsegpt_2of4": lambda: prune("sparsegpt_2of4", "sparsegpt", sparsity=0.5, mask_structure="2:4"),
        "wanda_0.5": lambda: prune("wanda_0.5", "wanda", sparsity=0.5, mask_structure="0:0"),
        "wanda_2of4": lambda: prune("wanda_2of4", "wanda", sparsity=0.5, mask_structure="2:4"),
    }
    for name, run in variants.items():
        if only and name not in only:
            continue
        print("==", name, flush=True)
        run()
    old = json.loads((OUT / "manifest.json").read_text()) if (OUT / "manifest.json").exists() else {}
    old_vars = old.get("variants", {})
    old_vars.update(manifest["variants"])
    manifest["variants"] = old_vars
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
