#!/usr/bin/env python3
"""Write tiny random Hugging Face checkpoints plus transformers reference outputs.

Output: engine/tests/fixtures/hf/<model>/ with config.json, generation_config.json,
tokenizer.json, tokenizer_config.json (+ chat_template.jinja for the 5.x layout),
model.safetensors (or shards + model.safetensors.index.json) and expected.json.

Everything is seeded and computed on CPU in float32 with eager attention, so
rerunning the script with the same library versions rewrites identical files.
See tools/reference/README.md for the schema of expected.json.

Usage: python3 tools/reference/make_hf_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

from common import FIXTURES, deterministic_torch, round_floats, versions, write_json  # noqa: E402

# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

# Special tokens, in id order: the BPE trainer puts them first, so
# <s>=0, </s>=1, <pad>=2, <|user|>=3, <|assistant|>=4.
SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>"]
BOS, EOS, PAD = 0, 1, 2
VOCAB_SIZE = 384

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. A small model can still learn "
    "the shape of a sentence, even when it has only a few hundred tokens to work with.",
    "Compression makes a model smaller and faster. Quantization stores each weight with "
    "fewer bits, and pruning removes weights that matter least. Both change what the "
    "model says, and we want to measure how much.",
    "When a user asks for something harmful, a safe assistant should refuse politely and "
    "explain why. When the request is harmless, the assistant should simply help. Refusing "
    "a harmless request is also a failure, because it makes the assistant less useful.",
    "To bake bread, mix flour, water, salt and yeast. Knead the dough for ten minutes, let "
    "it rise for an hour, shape it, and bake it in a hot oven until the crust is brown.",
    "The weather today is cold and windy, with rain in the afternoon. Tomorrow should be "
    "warmer, and the weekend looks sunny across most of the country.",
    "Numbers like 1, 2, 3, 42 and 2024 appear in text too. So do questions: what time is it? "
    "How far is the station? Why is the sky blue? Where did I leave my keys?",
    "Please summarise the following article in three sentences. Translate this paragraph "
    "into French. Write a short poem about the sea. Explain how a bicycle works.",
    "User: Can you help me with my homework? Assistant: Of course. What subject is it? "
    "User: Mathematics, mostly fractions. Assistant: Let us start with an example.",
]


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT * 4, trainer)
    # Llama-style: encode() with add_special_tokens=True prepends <s>.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS)]
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def tokenizer_config(layout: str) -> dict:
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 256,
        "padding_side": "left",
        "added_tokens_decoder": {
            str(i): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, t in enumerate(SPECIAL_TOKENS)
        },
    }
    if layout == "v4":
        cfg["chat_template"] = CHAT_TEMPLATE
    return cfg


def write_tokenizer_files(tok: Tokenizer, model_dir: Path, layout: str) -> None:
    """Tokenizer files in the 4.x layout (written by hand, template inside
    tokenizer_config.json) or the 5.x layout (written by the installed
    transformers itself: chat_template.jinja next to a slim tokenizer_config.json)."""
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "special_tokens_map.json"):
        (model_dir / name).unlink(missing_ok=True)
    if layout == "v5":
        from transformers import PreTrainedTokenizerFast

        hf_tok = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
            model_max_length=256, padding_side="left", clean_up_tokenization_spaces=False,
        )
        hf_tok.chat_template = CHAT_TEMPLATE
        hf_tok.save_pretrained(model_dir)
        assert (model_dir / "chat_template.jinja").exists()
        assert "chat_template" not in json.loads((model_dir / "tokenizer_config.json").read_text())
        return
    tok.save(str(model_dir / "tokenizer.json"))
    write_json(model_dir / "tokenizer_config.json", tokenizer_config(layout), compact=False)
    write_json(model_dir / "special_tokens_map.json", {
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "additional_special_tokens": SPECIAL_TOKENS[3:],
    }, compact=False)


# ---------------------------------------------------------------------------
# Config layouts
# ---------------------------------------------------------------------------

ROPE_KEYS = ("rope_type", "factor", "low_freq_factor", "high_freq_factor",
             "original_max_position_embeddings", "beta_fast", "beta_slow",
             "attention_factor", "mscale", "mscale_all_dim", "short_factor",
             "long_factor", "partial_rotary_factor")


def to_v4_layout(cfg: dict) -> dict:
    """Rewrite a config dict into the transformers 4.x layout.

    4.x: top-level `rope_theta`, `rope_scaling` (null or dict without rope_theta),
    `torch_dtype`. 5.x: `rope_parameters` dict holding rope_theta + rope_type (+
    scaling params), `dtype`.
    """
    cfg = dict(cfg)
    rp = cfg.pop("rope_parameters", None)
    if rp is not None:
        rp = dict(rp)
        cfg["rope_theta"] = rp.pop("rope_theta")
        if rp.get("rope_type", "default") == "default" and set(rp) <= {"rope_type"}:
            cfg["rope_scaling"] = None
        else:
            cfg["rope_scaling"] = rp
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["transformers_version"] = "4.57.1"
    return cfg


def to_v5_layout(cfg: dict) -> dict:
    cfg = dict(cfg)
    if "rope_parameters" not in cfg:
        rp = {"rope_theta": cfg.pop("rope_theta")}
        scaling = cfg.pop("rope_scaling", None)
        if scaling:
            rp.update(scaling)
        else:
            rp["rope_type"] = "default"
        cfg["rope_parameters"] = rp
    if "torch_dtype" in cfg:
        cfg["dtype"] = cfg.pop("torch_dtype")
    return cfg


def detect_layout(cfg: dict) -> str:
    return "v5" if "rope_parameters" in cfg else "v4"


def rewrite_config(model_dir: Path, layout: str) -> None:
    path = model_dir / "config.json"
    cfg = json.loads(path.read_text())
    cfg = to_v4_layout(cfg) if layout == "v4" else to_v5_layout(cfg)
    write_json(path, cfg, compact=False)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    bos_token_id=BOS,
    eos_token_id=EOS,
    pad_token_id=PAD,
    hidden_act="silu",
)

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    # Small on purpose: with head_dim 16 and theta 1e4 the rotary wavelengths are
    # 6.3, 19.9, 62.8, ... so one pair is untouched (< 32/4), one is smoothed and
    # the other six are divided by `factor`.
    "original_max_position_embeddings": 32,
}


def llama_config(rope_parameters) -> LlamaConfig:
    return LlamaConfig(**COMMON, tie_word_embeddings=False, rope_parameters=rope_parameters,
                       attention_bias=False, mlp_bias=False)


def mistral_config() -> MistralConfig:
    return MistralConfig(**COMMON, tie_word_embeddings=False, sliding_window=None,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def qwen2_config() -> Qwen2Config:
    common = dict(COMMON)
    common["num_hidden_layers"] = 3
    common["rms_norm_eps"] = 1e-6
    return Qwen2Config(**common, tie_word_embeddings=True, use_sliding_window=False,
                       sliding_window=None, max_window_layers=3,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


def qwen3_config() -> Qwen3Config:
    """Qwen3 with per-head q/k norms, explicit head_dim, tied embeddings and YaRN scaling."""
    return Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=True, attention_bias=False,
                       use_sliding_window=False, max_window_layers=2,
                       rope_parameters={"rope_type": "yarn", "rope_theta": 1000000.0,
                                        "factor": 4.0, "original_max_position_embeddings": 64})


def qwen3_moe_config() -> Qwen3MoeConfig:
    """Qwen3-MoE: 4 experts of width 64, top 2 renormalised, layer 1 dense (mlp_only_layers); dynamic NTK."""
    common = dict(COMMON)
    common["num_hidden_layers"] = 3
    return Qwen3MoeConfig(**common, head_dim=16, tie_word_embeddings=False, num_experts=4,
                          num_experts_per_tok=2, norm_topk_prob=True, moe_intermediate_size=64,
                          decoder_sparse_step=1, mlp_only_layers=[1], use_sliding_window=False,
                          rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0,
                                           "factor": 2.0})


# Untied: with random weights a tied Gemma mostly echoes its input token (the scaled embedding
# dominates the stream and the output matrix is that same embedding).
GEMMA = dict(COMMON, hidden_activation="gelu_pytorch_tanh", head_dim=16,
             rms_norm_eps=1e-6, tie_word_embeddings=False)
GEMMA.pop("hidden_act")


def gemma2_config() -> Gemma2Config:
    """Gemma 2: 4 layers alternating sliding (window 8) and global; soft-capping low enough to
    bite on random weights; query_pre_attn_scalar = head_dim, as llama.cpp assumes."""
    cfg = dict(GEMMA, num_hidden_layers=4)
    return Gemma2Config(**cfg, sliding_window=8, query_pre_attn_scalar=16,
                        attn_logit_softcapping=20.0, final_logit_softcapping=15.0,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def gemma3_config() -> Gemma3TextConfig:
    """Gemma 3 text: 6 layers (five sliding with window 8 and local theta 1e4, then one global
    with theta 1e6 and linear scaling 2), per-head q/k norms."""
    cfg = dict(GEMMA, num_hidden_layers=6)
    return Gemma3TextConfig(**cfg, sliding_window=8, query_pre_attn_scalar=16,
                            rope_parameters={
                                "full_attention": {"rope_type": "linear", "factor": 2.0,
                                                   "rope_theta": 1000000.0},
                                "sliding_attention": {"rope_type": "default",
                                                      "rope_theta": 10000.0}})


PHI3_SHORT = [1.0, 1.02, 1.05, 1.1, 1.15, 1.2]
PHI3_LONG = [1.0, 1.5, 2.2, 3.5, 5.0, 8.0]


def phi3_config() -> Phi3Config:
    """Phi-3 with fused qkv/gate_up, LongRoPE (original context 32, so generation crosses into
    the long factors) and a partial rotary factor of 0.75 (12 of 16 dimensions rotate)."""
    return Phi3Config(**COMMON, tie_word_embeddings=False, original_max_position_embeddings=32,
                      sliding_window=None,
                      rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                       "partial_rotary_factor": 0.75,
                                       "short_factor": PHI3_SHORT, "long_factor": PHI3_LONG})


def mixtral_config() -> MixtralConfig:
    """Mixtral: 4 experts, top 2, every layer a mixture."""
    return MixtralConfig(**COMMON, tie_word_embeddings=False, num_local_experts=4,
                         num_experts_per_tok=2, sliding_window=None,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """Large-ish random weights so logits are peaked and continuations vary. Gemma's norms
    scale by 1 + w, so theirs are drawn around 0."""
    g = torch.Generator().manual_seed(seed)
    gemma = model.config.model_type.startswith("gemma")
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                p.copy_((0.0 if gemma else 1.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                # Gemma multiplies embeddings by sqrt(hidden) = 8: keep the stream's scale.
                p.copy_((0.125 if gemma else 0.5) * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


# ---------------------------------------------------------------------------
# Reference outputs
# ---------------------------------------------------------------------------

PROMPT_TEXTS = [
    "When a user asks for something harmful, a safe assistant should refuse politely and explain why.",
    "Hello",
    "To bake bread, mix flour and water",
    "Why is the sky blue? The weather today is cold",
]
PROMPT_LENGTHS = [20, 3, 9, 14]  # including the leading <s>
N_NEW = 32

TOKENIZER_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "naïve café — 日本語 🙂 ünïcödé",
    "<|user|>\nHow do I bake bread?\n<|assistant|>\n",
    "  leading spaces,\ttabs and\nnewlines</s><pad>",
]

CHAT_MESSAGES = [
    {"role": "user", "content": "How do I bake bread?"},
    {"role": "assistant", "content": "Mix flour, water, salt and yeast."},
    {"role": "user", "content": "And then?"},
]


def make_prompts(tok: Tokenizer) -> list[list[int]]:
    prompts = []
    for text, n in zip(PROMPT_TEXTS, PROMPT_LENGTHS):
        ids = tok.encode(text).ids
        assert ids[0] == BOS and len(ids) >= n, (text, len(ids))
        prompts.append(ids[:n])
    return prompts


def load(model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    # EOS is disabled for the reference generations so that exactly N_NEW tokens
    # come out and EOS is treated as an ordinary token (no masking, no stopping).
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD
    return model


def greedy(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=False,
        max_new_tokens=N_NEW,
        eos_token_id=None,
        pad_token_id=PAD,
        return_dict_in_generate=True,
        output_logits=True,
        use_cache=True,
    )
    new = out.sequences[:, input_ids.shape[1]:]
    logits = torch.stack(out.logits, dim=1)  # (batch, N_NEW, vocab)
    assert new.shape[1] == N_NEW
    return new, logits


def min_margin(logits: torch.Tensor) -> float:
    top2 = torch.topk(logits, 2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1]).min())


def reference_outputs(model_dir: Path, tok: Tokenizer, dtype_stored: str) -> dict:
    torch.manual_seed(0)
    model = load(model_dir)
    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = make_prompts(tok)

    # Tokenizer: transformers and the raw tokenizers library must agree.
    tok_ids = [hf_tok(t)["input_ids"] for t in TOKENIZER_TEXTS]
    for t, ids in zip(TOKENIZER_TEXTS, tok_ids):
        assert ids == tok.encode(t).ids, (t, ids)
    rendered = hf_tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=False)
    expected_render = "<s>" + "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in CHAT_MESSAGES) + "<|assistant|>\n"
    assert rendered == expected_render, (rendered, expected_render)
    chat_ids = hf_tok(rendered, add_special_tokens=False)["input_ids"]
    chat_ids_direct = hf_tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=True)
    if hasattr(chat_ids_direct, "keys"):
        chat_ids_direct = chat_ids_direct["input_ids"]
    assert list(chat_ids_direct) == chat_ids, (chat_ids_direct, chat_ids)

    next_logits, single_greedy, margins = [], [], []
    all_logits0 = None
    with torch.no_grad():
        for i, p in enumerate(prompts):
            ids = torch.tensor([p])
            mask = torch.ones_like(ids)
            logits = model(input_ids=ids, attention_mask=mask).logits[0]
            if i == 0:
                all_logits0 = logits
            next_logits.append(logits[-1])
            new, step_logits = greedy(model, ids, mask)
            assert torch.allclose(step_logits[0, 0], logits[-1], atol=1e-5)
            single_greedy.append(new[0].tolist())
            margins.append(min_margin(step_logits))

        # One left-padded batch.
        width = max(len(p) for p in prompts)
        b_ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
        b_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        b_new, b_logits = greedy(model, b_ids, b_mask)
        batch_greedy = b_new.tolist()
        batch_next = b_logits[:, 0]
        margins.append(min_margin(b_logits))

    batch_vs_single = float((batch_next - torch.stack(next_logits)).abs().max())
    agree = batch_greedy == single_greedy
    distinct = [len(set(g)) for g in single_greedy]
    eos_in_greedy = any(EOS in g for g in single_greedy + batch_greedy)

    return {
        "model_type": model.config.model_type,
        "dtype_stored": dtype_stored,
        "config_layout": detect_layout(json.loads((model_dir / "config.json").read_text())),
        "compute_dtype": "f32",
        "attn_implementation": "eager",
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "pad_token_id": PAD,
        "rope_inv_freq": rope_inv_freq(model),
        "prompts": prompts,
        "next_logits": torch.stack(next_logits).tolist(),
        "all_logits_prompt0": all_logits0.tolist(),
        "greedy": single_greedy,
        "greedy_settings": {
            "do_sample": False,
            "max_new_tokens": N_NEW,
            "eos": "disabled: generation_config.eos_token_id=None, so exactly 32 tokens "
                   "are produced and EOS would be an ordinary token (no logit masking)",
            "eos_generated": eos_in_greedy,
        },
        "batch": {
            "padding_side": "left",
            "position_ids": "attention_mask.cumsum(-1) - 1, 0 at pad positions",
            "input_ids": b_ids.tolist(),
            "attention_mask": b_mask.tolist(),
            "greedy": batch_greedy,
            "next_logits": batch_next.tolist(),
        },
        "tokenizer": {
            "add_special_tokens": True,
            "note": "tokenizer(text) with the default add_special_tokens=True; the post-processor "
                    "prepends <s> (id 0) and adds no </s>",
            "texts": TOKENIZER_TEXTS,
            "ids": tok_ids,
        },
        "chat": {
            "messages": CHAT_MESSAGES,
            "add_generation_prompt": True,
            "rendered": rendered,
            "ids": chat_ids,
            "note": "ids = tokenizer(rendered, add_special_tokens=False); the template itself "
                    "emits bos_token, so the ids start with <s>",
        },
        "checks": {
            "batch_greedy_equals_single": agree,
            "batch_vs_single_next_logits_max_abs_diff": batch_vs_single,
            "min_top1_top2_logit_margin_over_greedy_steps": min(margins),
            "distinct_tokens_per_greedy": distinct,
        },
    }


def rope_inv_freq(model) -> list[float]:
    rot = model.model.rotary_emb
    inv = getattr(rot, "inv_freq", None)
    if inv is None:  # per layer type (Gemma 3): the full-attention frequencies
        inv = rot.full_attention_inv_freq
    return inv.tolist()


# LongRoPE picks short or long factors by the longest sequence of the whole batch in
# transformers, so a batch of prompts of different lengths crosses over at another step than
# each prompt alone; compsafe decides per sequence and is compared with the one-at-a-time runs.
BATCH_MAY_DIFFER = {"phi3"}


def validate(exp: dict, name: str, margin: float = 1e-3) -> list[str]:
    problems = []
    c = exp["checks"]
    if not c["batch_greedy_equals_single"] and name not in BATCH_MAY_DIFFER:
        problems.append("batch greedy != single greedy")
    if c["min_top1_top2_logit_margin_over_greedy_steps"] < margin:
        problems.append(f"greedy margin {c['min_top1_top2_logit_margin_over_greedy_steps']:.2e} < {margin}")
    if min(c["distinct_tokens_per_greedy"]) < 6:
        problems.append(f"greedy too repetitive {c['distinct_tokens_per_greedy']}")
    if exp["greedy_settings"]["eos_generated"]:
        problems.append("EOS appears in a greedy continuation")
    if problems:
        print(f"  {name}: " + "; ".join(problems))
    return problems


# ---------------------------------------------------------------------------
# Writing model directories
# ---------------------------------------------------------------------------

def save_model(model, tok: Tokenizer, out: Path, layout: str, **save_kwargs) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True, **save_kwargs)
    # save_pretrained also writes generation_config.json; replace it with ours.
    GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD).save_pretrained(out)
    rewrite_config(out, layout)
    write_tokenizer_files(tok, out, layout)


def build(name: str, config, cls, seed: int):
    torch.manual_seed(seed)
    model = cls(config)
    init_weights(model, seed)
    model.eval()
    return model


def family_llama(tok, out_root: Path, seed: int, work: Path) -> dict[str, dict]:
    """llama-gqa (+ v5 copy, f16 shards, bf16) and llama-plain, all from one weight set."""
    results = {}
    base = build("llama-gqa", llama_config(dict(LLAMA3_ROPE)), LlamaForCausalLM, seed)

    d = work / "llama-gqa"
    save_model(base, tok, d, "v4")
    results["llama-gqa"] = reference_outputs(d, tok, "f32")

    d5 = work / "llama-gqa-v5layout"
    save_model(base, tok, d5, "v5")
    results["llama-gqa-v5layout"] = reference_outputs(d5, tok, "f32")

    plain = build("llama-plain", llama_config({"rope_type": "default", "rope_theta": 10000.0}),
                  LlamaForCausalLM, seed)
    plain.load_state_dict(base.state_dict())
    dp = work / "llama-plain"
    save_model(plain, tok, dp, "v4")
    results["llama-plain"] = reference_outputs(dp, tok, "f32")

    f16 = build("f16", llama_config(dict(LLAMA3_ROPE)), LlamaForCausalLM, seed)
    f16.load_state_dict(base.state_dict())
    f16 = f16.to(torch.float16)
    df = work / "llama-sharded-f16"
    save_model(f16, tok, df, "v5", max_shard_size="100KB")
    results["llama-sharded-f16"] = reference_outputs(df, tok, "f16")

    bf = build("bf16", llama_config(dict(LLAMA3_ROPE)), LlamaForCausalLM, seed)
    bf.load_state_dict(base.state_dict())
    bf = bf.to(torch.bfloat16)
    db = work / "llama-bf16"
    save_model(bf, tok, db, "v4")
    results["llama-bf16"] = reference_outputs(db, tok, "bf16")
    return results


def family_mistral(tok, out_root: Path, seed: int, work: Path) -> dict[str, dict]:
    m = build("mistral", mistral_config(), MistralForCausalLM, seed)
    d = work / "mistral"
    save_model(m, tok, d, "v5")
    return {"mistral": reference_outputs(d, tok, "f32")}


def family_qwen2(tok, out_root: Path, seed: int, work: Path) -> dict[str, dict]:
    m = build("qwen2", qwen2_config(), Qwen2ForCausalLM, seed)
    d = work / "qwen2"
    save_model(m, tok, d, "v4")
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys(), "tied lm_head must not be stored"
    return {"qwen2": reference_outputs(d, tok, "f32")}


def single(name: str, make_config, cls, layout: str = "v5"):
    def family(tok, out_root: Path, seed: int, work: Path) -> dict[str, dict]:
        m = build(name, make_config(), cls, seed)
        d = work / name
        save_model(m, tok, d, layout)
        return {name: reference_outputs(d, tok, "f32")}
    return family


FAMILIES = [
    ("llama", family_llama, 1000),
    ("mistral", family_mistral, 2000),
    ("qwen2", family_qwen2, 3000),
    ("qwen3", single("qwen3", qwen3_config, Qwen3ForCausalLM, "v4"), 4000),
    ("qwen3-moe", single("qwen3-moe", qwen3_moe_config, Qwen3MoeForCausalLM), 5000),
    ("gemma2", single("gemma2", gemma2_config, Gemma2ForCausalLM), 6000),
    ("gemma3", single("gemma3", gemma3_config, Gemma3ForCausalLM), 7000),
    ("phi3", single("phi3", phi3_config, Phi3ForCausalLM), 8000),
    ("mixtral", single("mixtral", mixtral_config, MixtralForCausalLM), 9000),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=FIXTURES / "hf")
    ap.add_argument("--max-tries", type=int, default=20)
    ap.add_argument("--only", default=None,
                    help="comma-separated families to (re)write; the manifest keeps the others")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None

    deterministic_torch(threads=1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tok = train_tokenizer()
    out_root: Path = args.out
    out_root.mkdir(parents=True, exist_ok=True)

    manifest = {"versions": versions(), "models": {}}
    old = out_root / "manifest.json"
    if only and old.exists():
        manifest["models"] = json.loads(old.read_text())["models"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for fam, fn, seed0 in FAMILIES:
            if only and fam not in only:
                continue
            for attempt in range(args.max_tries):
                seed = seed0 + attempt
                print(f"{fam}: seed {seed}")
                results = fn(tok, out_root, seed, work)
                bad = [n for n, e in results.items() if validate(e, n)]
                if not bad:
                    break
            else:
                raise SystemExit(f"{fam}: no seed passed the checks")
            for name, exp in results.items():
                dst = out_root / name
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(work / name, dst)
                write_json(dst / "expected.json", round_floats(exp))
                files = sorted(p.name for p in dst.iterdir())
                manifest["models"][name] = {
                    "seed": seed,
                    "model_type": exp["model_type"],
                    "dtype_stored": exp["dtype_stored"],
                    "config_layout": exp["config_layout"],
                    "files": files,
                    "checks": exp["checks"],
                }
                print(f"  wrote {dst.relative_to(out_root.parent)}  checks={exp['checks']}")

    manifest["token_ids"] = {"bos": BOS, "eos": EOS, "pad": PAD,
                             "<|user|>": 3, "<|assistant|>": 4}
    manifest["native_config_layout"] = native_layout()
    write_json(out_root / "manifest.json", round_floats(manifest), compact=False)


def native_layout() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        llama_config(dict(LLAMA3_ROPE)).save_pretrained(tmp)
        return detect_layout(json.loads((Path(tmp) / "config.json").read_text()))


if __name__ == "__main__":
    main()
