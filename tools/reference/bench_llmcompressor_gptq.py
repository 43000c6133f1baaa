#!/usr/bin/env python3
"""llm-compressor's time to derive W4A16 GPTQ (group 128) on the Llama-3.2-1B shape with
random weights and random calibration tokens: the counterpart of
engine/examples/bench_gptq.rs (scripts/bench-gptq.sh runs both). Prints one JSON object.

usage: bench_llmcompressor_gptq.py [--layers 16] [--seqs 128] [--len 512] [--threads 2]
"""
import argparse
import json
import tempfile
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--seqs", type=int, default=128)
    ap.add_argument("--len", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=a.layers,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                      vocab_size=128256, max_position_embeddings=a.len, rms_norm_eps=1e-5,
                      rope_theta=500000.0, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab={"t0": 0, "t1": 1}, unk_token="t0")),
        pad_token="t0", eos_token="t1")
    # oneshot looks the model's files up by name: give it a folder with the config and tokenizer.
    tmp = tempfile.mkdtemp()
    cfg.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    model.config._name_or_path = tmp
    model.name_or_path = tmp
    ids = torch.randint(0, 128000, (a.seqs, a.len))
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * a.len] * a.seqs})
    recipe = GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"], actorder=None)
    t = time.perf_counter()
    oneshot(model=model, processor=tok, dataset=ds, recipe=recipe, num_calibration_samples=a.seqs,
            max_seq_length=a.len, shuffle_calibration_samples=False, pipeline="sequential")
    secs = time.perf_counter() - t
    print(json.dumps({"layers": a.layers, "seqs": a.seqs, "len": a.len, "threads": a.threads,
                      "seconds": round(secs, 2)}))


if __name__ == "__main__":
    main()
