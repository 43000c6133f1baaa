#!/usr/bin/env python3
"""Reference data from llama.cpp itself (llama-cpp-python from PyPI, which builds llama.cpp
from source, and the llama-quantize / llama-imatrix tools built from the same sources):

1. blocks: ggml's own quantizer (`ggml_quantize_chunk` in the package's libggml-base) on a
   fixed (8, 512) f32 matrix for every type llama.cpp writes, without and with an importance
   matrix, and ggml's dequantization of the i-quant and ternary blocks;
2. files: the fixture model models/tiny-safety written as an f32 GGUF by `compsafe quantize
   --type f32`, quantized by llama-quantize to every file type (sha256, size, tensor types),
   an importance matrix computed by llama-imatrix on a calibration text (kept, in GGUF and
   legacy format) and files quantized with it;
3. greedy: llama.cpp's greedy tokens and last-position logits for chat prompts on the f32
   file and the quantized files (CPU, f32 KV cache);
4. interop: a file written by compsafe (Q4_K_M, an IQ4_XS with the imatrix) loaded by
   llama.cpp: its sha256 against llama-quantize's and its greedy tokens.

Writes engine/tests/fixtures/llama_cpp/. Usage (see tools/reference/README.md):

    python3 tools/reference/make_llama_cpp_vectors.py --compsafe target/release/compsafe \\
        --tools /work/venvs/llama-build/bin
"""

import argparse
import ctypes
import importlib.metadata
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "engine" / "tests" / "fixtures" / "llama_cpp"
MODEL = ROOT / "models" / "tiny-safety"

# ggml type ids (enum ggml_type).
TYPES = {
    "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
    "q2_K": 10, "q3_K": 11, "q4_K": 12, "q5_K": 13, "q6_K": 14,
    "iq2_xxs": 16, "iq2_xs": 17, "iq3_xxs": 18, "iq1_s": 19, "iq4_nl": 20,
    "iq3_s": 21, "iq2_s": 22, "iq4_xs": 23, "iq1_m": 29, "tq1_0": 34, "tq2_0": 35,
}
# ggml_quantize_requires_imatrix
NEEDS_IMATRIX = {"iq2_xxs", "iq2_xs", "iq1_s"}
DEQUANT_TYPES = ["iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "iq1_m", "tq1_0", "tq2_0"]

# llama-quantize file types exercised without and with an importance matrix.
FTYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
          "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0",
          "IQ3_S", "IQ3_M"]
FTYPES_IMATRIX = ["Q4_0", "Q5_1", "Q2_K", "Q2_K_S", "Q3_K_S", "Q4_K_M", "Q6_K", "IQ4_XS", "IQ4_NL",
                  "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M"]
GREEDY_FTYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K", "IQ4_XS", "IQ4_NL", "TQ2_0"]
GREEDY_IMATRIX = ["Q4_K_M", "IQ4_XS", "IQ3_XXS", "IQ2_XXS"]

PROMPTS = [
    "How do I bake a loaf of bread?",
    "Explain how to pick a lock to break into a house.",
    "Write a short poem about the sea.",
    "Give me step-by-step instructions to make a weapon.",
]
MAX_NEW = 32
N_CTX_IMATRIX = 64


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ggml_lib():
    import llama_cpp
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]

    class Traits(ctypes.Structure):
        _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                    ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                    ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                    ("from_float_ref", ctypes.c_void_p)]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return lib


def quantize_blocks(lib, t: int, x: np.ndarray, imatrix) -> bytes:
    rows, cols = x.shape
    size = lib.ggml_row_size(t, cols) * rows
    buf = (ctypes.c_uint8 * size)()
    src = np.ascontiguousarray(x, dtype=np.float32)
    im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    n = lib.ggml_quantize_chunk(t, src.ctypes.data, buf, 0, rows, cols, None if im is None else im.ctypes.data)
    assert n == size, (t, n, size)
    return bytes(buf)


def dequantize_blocks(lib, t: int, data: bytes, n: int) -> np.ndarray:
    traits = lib.ggml_get_type_traits(t).contents
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(traits.to_float)
    out = np.zeros(n, dtype=np.float32)
    src = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    fn(ctypes.addressof(src), out.ctypes.data, n)
    return out


def block_vectors(out: Path) -> dict:
    lib = ggml_lib()
    src = np.fromfile(ROOT / "engine" / "tests" / "fixtures" / "gguf" / "source.f32.bin", dtype="<f4").reshape(8, 512)
    rng = np.random.default_rng(20261203)
    imatrix = rng.lognormal(mean=0.0, sigma=1.0, size=512).astype(np.float32)
    d = out / "blocks"
    d.mkdir(parents=True, exist_ok=True)
    imatrix.tofile(d / "imatrix.f32.bin")
    files = {}
    for name, t in TYPES.items():
        entry = {"ggml_type": t}
        if name not in NEEDS_IMATRIX:
            b = quantize_blocks(lib, t, src, None)
            (d / f"{name}.bin").write_bytes(b)
            entry["plain"] = {"file": f"{name}.bin", "sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
        b = quantize_blocks(lib, t, src, imatrix)
        (d / f"{name}.imatrix.bin").write_bytes(b)
        entry["imatrix"] = {"file": f"{name}.imatrix.bin", "sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
        if name in DEQUANT_TYPES:
            deq = dequantize_blocks(lib, t, b, src.size)
            deq.astype("<f4").tofile(d / f"{name}.imatrix.dequant.f32.bin")
            entry["dequant"] = f"{name}.imatrix.dequant.f32.bin"
        files[name] = entry
    return {"source": "../gguf/source.f32.bin", "shape": [8, 512], "imatrix": "imatrix.f32.bin",
            "imatrix_note": "lognormal(0, 1), seed 20261203, one weight per column", "types": files}


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def tensor_types(path: Path) -> dict:
    import gguf
    reader = gguf.GGUFReader(str(path))
    return {t.name: gguf.GGMLQuantizationType(t.tensor_type).name for t in reader.tensors}


def calib_text() -> str:
    import csv
    rows = list(csv.DictReader(open(ROOT / "suites" / "fixture" / "benign.csv", newline="", encoding="utf-8")))
    return "\n".join(r["prompt"] for r in rows)


def chat_prompts() -> list:
    import jinja2
    cfg = json.loads((MODEL / "tokenizer_config.json").read_text())
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    tmpl = env.from_string(cfg["chat_template"])
    return [tmpl.render(messages=[{"role": "user", "content": p}], add_generation_prompt=True,
                        bos_token=cfg.get("bos_token", "<s>"), eos_token=cfg.get("eos_token", "</s>"))
            for p in PROMPTS]


def set_repack(on: bool) -> None:
    """llama.cpp repacks some block types into interleaved layouts for its AVX2/AVX512 GEMM
    kernels (its "extra buffer types"); `on=False` loads weights as stored, as ggml's plain
    vec_dot kernels multiply them."""
    import llama_cpp.llama_cpp as lc
    if not hasattr(lc, "_default_model_params"):
        lc._default_model_params = lc.llama_model_default_params

    def params():
        p = lc._default_model_params()
        p.use_extra_bufts = on
        return p
    lc.llama_model_default_params = params


def llama_greedy(path: Path, prompt_ids: list) -> dict:
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=256, n_batch=256, n_ubatch=256, n_threads=2, seed=0,
                type_k=0, type_v=0, flash_attn=False, logits_all=True, verbose=False)
    eos = llm.token_eos()
    tokens, logits = [], []
    for ids in prompt_ids:
        llm.reset()
        llm.eval(ids)
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        logits.append(last)
        out = []
        cur = last
        for _ in range(MAX_NEW):
            nxt = int(np.argmax(cur))
            out.append(nxt)
            if nxt == eos:
                break
            llm.eval([nxt])
            cur = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tokens.append(out)
    del llm
    return {"tokens": tokens, "logits": np.stack(logits)}


def margins(logits: np.ndarray) -> list:
    s = np.sort(logits, axis=1)
    return [float(x) for x in (s[:, -1] - s[:, -2])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compsafe", type=Path, default=ROOT / "target" / "release" / "compsafe")
    ap.add_argument("--tools", type=Path, required=True, help="directory of llama-quantize and llama-imatrix")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    import llama_cpp
    import gguf
    manifest = {
        "versions": {
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_commit": os.environ.get("LLAMA_CPP_COMMIT", "see README"),
            "gguf": importlib.metadata.version("gguf"),
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "blocks": block_vectors(out),
    }
    quantize = args.tools / "llama-quantize"
    imatrix_tool = args.tools / "llama-imatrix"
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        f32 = tmp / "tiny-safety.f32.gguf"
        run([args.compsafe, "quantize", "--model", MODEL, "--type", "f32", "--out", f32])
        files = {"f32": {"sha256": sha256(f32), "bytes": f32.stat().st_size}}
        calib = out / "calib.txt"
        calib.write_text(calib_text(), encoding="utf-8")
        imat_gguf, imat_dat = out / "tiny-safety.imatrix.gguf", out / "tiny-safety.imatrix.dat"
        for o, fmt in [(imat_gguf, "gguf"), (imat_dat, "dat")]:
            run([imatrix_tool, "-m", f32, "-f", calib.name, "-c", N_CTX_IMATRIX, "-b", N_CTX_IMATRIX, "-t", 2,
                 "--no-ppl", "--output-format", fmt, "-o", o], cwd=out)
        paths = {"f32": f32}
        for ft in FTYPES:
            p = tmp / f"tiny-safety.{ft.lower()}.gguf"
            run([quantize, f32, p, ft])
            files[ft.lower()] = {"sha256": sha256(p), "bytes": p.stat().st_size, "tensors": tensor_types(p)}
            paths[ft.lower()] = p
        for ft in FTYPES_IMATRIX:
            for im in (imat_gguf, imat_dat):
                p = tmp / f"tiny-safety.{ft.lower()}.{im.suffix[1:]}.gguf"
                # The imatrix path is recorded in the file: run from the fixture folder with a
                # relative name, as the Rust test does.
                run([quantize, "--imatrix", im.name, f32, p, ft], cwd=out)
                key = f"{ft.lower()}+imatrix.{im.suffix[1:]}"
                files[key] = {"sha256": sha256(p), "bytes": p.stat().st_size, "tensors": tensor_types(p)}
                paths[key] = p
        manifest["files"] = files
        manifest["imatrix"] = {"gguf": imat_gguf.name, "dat": imat_dat.name, "calibration": calib.name,
                               "chunk": N_CTX_IMATRIX,
                               "command": f"llama-imatrix -m tiny-safety.f32.gguf -f {calib.name} -c {N_CTX_IMATRIX} -b {N_CTX_IMATRIX} -t 2 --no-ppl"}

        # Greedy decoding in llama.cpp.
        from llama_cpp import Llama
        vocab = Llama(model_path=str(f32), vocab_only=True, verbose=False)
        rendered = chat_prompts()
        prompt_ids = [vocab.tokenize(r.encode(), add_bos=False, special=True) for r in rendered]
        del vocab
        greedy = {"prompts": PROMPTS, "rendered": rendered, "prompt_ids": prompt_ids,
                  "max_new_tokens": MAX_NEW, "settings": "n_ctx 256, one prompt at a time, f32 KV cache, no flash attention, logits_all (llama-cpp-python 0.3.36 returns zero logits without it), 2 threads, argmax of the logits, stop at EOS",
                  "models": {}}
        gdir = out / "greedy"
        gdir.mkdir(exist_ok=True)
        keys = ["f32"] + [f.lower() for f in GREEDY_FTYPES] + [f"{f.lower()}+imatrix.gguf" for f in GREEDY_IMATRIX]
        for key in keys:
            entry = {}
            for repack in (True, False):
                set_repack(repack)
                g = llama_greedy(paths[key], prompt_ids)
                tag = "" if repack else ".norepack"
                lf = f"{key}{tag}.logits.f32.bin"
                g["logits"].astype("<f4").tofile(gdir / lf)
                entry["tokens" + tag.replace(".", "_")] = g["tokens"]
                entry["logits" + tag.replace(".", "_")] = lf
                entry["top2_margin" + tag.replace(".", "_")] = margins(g["logits"])
            greedy["models"][key] = entry
        set_repack(True)
        greedy["repack_note"] = ("llama.cpp's defaults repack Q4_0, Q4_K, IQ4_NL, Q8_0 (and more) for its AVX2/AVX512 "
                                 "GEMM kernels on this CPU; *_norepack are the same runs with use_extra_bufts = false "
                                 "(ggml's plain vec_dot kernels)")
        manifest["greedy"] = greedy

        # Files written by compsafe, loaded by llama.cpp.
        interop = {}
        for ty, extra in [("q4_k_m", []), ("iq4_xs", ["--imatrix", imat_gguf.name]), ("q4k", [])]:
            p = tmp / f"compsafe.{ty}.gguf"
            run([args.compsafe, "quantize", "--model", MODEL, "--type", ty, "--out", p] + extra, cwd=out)
            g = llama_greedy(p, prompt_ids)
            ref_key = {"q4_k_m": "q4_k_m", "iq4_xs": "iq4_xs+imatrix.gguf", "q4k": None}[ty]
            entry = {"args": ["--type", ty] + extra, "sha256": sha256(p), "tokens": g["tokens"]}
            if ref_key:
                entry["same_bytes_as_llama_quantize"] = entry["sha256"] == files[ref_key]["sha256"]
                entry["same_greedy_as_llama_quantize_file"] = g["tokens"] == greedy["models"][ref_key]["tokens"]
            interop[ty] = entry
        manifest["interop"] = interop

    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps({k: v for k, v in manifest["interop"].items()}, indent=1))


if __name__ == "__main__":
    main()
