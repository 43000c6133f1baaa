//! The bad-input corpus of quantized checkpoints (GPTQ, AWQ, compressed-tensors,
//! bitsandbytes): every broken file exits 2 naming the file, the tensor and the field.

use super::*;

/// `compsafe layers` on a copy of the quantized fixture `name` broken by `brk`.
fn quant_with(dir: &Path, name: &str, brk: impl Fn(&Path)) -> Vec<String> {
    let model = dir.join("q");
    copy_dir(
        &root().join("engine/tests/fixtures/quant").join(name),
        &model,
    );
    brk(&model);
    s(&[
        "layers",
        "--model",
        model.to_str().unwrap(),
        "--variant",
        "int8",
    ])
}

/// Rewrites a JSON file of the model directory through `f`.
fn with_json(model: &Path, file: &str, f: impl Fn(&mut serde_json::Value)) {
    let p = model.join(file);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Renames a tensor in the safetensors header (its data stays).
fn rename_tensor(model: &Path, from: &str, to: &str) {
    with_header(model, |h| {
        let o = h.as_object_mut().unwrap();
        let t = o.remove(from).unwrap();
        o.insert(to.into(), t);
    });
}

const QP: &str = "model.layers.0.self_attn.q_proj";

fn quant_cases() -> Vec<(&'static str, Setup)> {
    vec![
        ("quant: unknown quant_method", |d| {
            let a = quant_with(d, "gptq-w4g128-llama", |m| {
                with_json(m, "config.json", |v| {
                    v["quantization_config"]["quant_method"] = "hqq".into()
                })
            });
            (
                a,
                s(&["config.json", "quantization_config.quant_method", "hqq"]),
            )
        }),
        ("quant: unknown compressed-tensors format", |d| {
            let a = quant_with(d, "ct-w4a16-llama", |m| {
                with_json(m, "config.json", |v| {
                    v["quantization_config"]["format"] = "marlin-24".into()
                })
            });
            (
                a,
                s(&["config.json", "quantization_config.format", "marlin-24"]),
            )
        }),
        ("quant: GPTQ bits the format does not allow", |d| {
            let a = quant_with(d, "gptq-w4g128-llama", |m| {
                with_json(m, "config.json", |v| {
                    v["quantization_config"]["bits"] = 5.into()
                })
            });
            (a, s(&["config.json", "quantization_config.bits", "5"]))
        }),
        ("quant: AWQ bits the format does not allow", |d| {
            let a = quant_with(d, "awq-w4g64-llama", |m| {
                with_json(m, "config.json", |v| {
                    v["quantization_config"]["bits"] = 8.into()
                })
            });
            (a, s(&["config.json", "quantization_config.bits", "8"]))
        }),
        ("quant: compressed-tensors weight bits out of range", |d| {
            let a = quant_with(d, "ct-w4a16-llama", |m| {
                with_json(m, "config.json", |v| {
                    v["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] =
                        12.into()
                })
            });
            (a, s(&["config.json", "weights.num_bits", "12"]))
        }),
        ("quant: GPTQ qweight shape disagrees with config", |d| {
            let a = quant_with(d, "gptq-w4g128-llama", |m| {
                with_json(m, "config.json", |v| {
                    v["quantization_config"]["bits"] = 8.into()
                })
            });
            (a, s(&["model.safetensors", "q_proj.qweight", "shape"]))
        }),
        ("quant: weight_packed disagrees with weight_shape", |d| {
            let a = quant_with(d, "ct-w4a16-llama", |m| {
                with_tensor_bytes(m, &format!("{QP}.weight_shape"), |b| {
                    b[8..16].copy_from_slice(&64i64.to_le_bytes())
                })
            });
            (
                a,
                s(&["model.safetensors", "q_proj.weight_shape", "weight_shape"]),
            )
        }),
        ("quant: GPTQ scales missing", |d| {
            let a = quant_with(d, "gptq-w4g128-llama", |m| {
                rename_tensor(m, &format!("{QP}.scales"), "unused.scales")
            });
            (a, s(&["model.safetensors", "q_proj.scales", "missing"]))
        }),
        ("quant: compressed-tensors scales missing", |d| {
            let a = quant_with(d, "ct-w4a16-llama", |m| {
                rename_tensor(m, &format!("{QP}.weight_scale"), "unused.weight_scale")
            });
            (
                a,
                s(&["model.safetensors", "q_proj.weight_scale", "missing"]),
            )
        }),
        ("quant: GPTQ zero points missing", |d| {
            let a = quant_with(d, "gptq-w4g128-llama", |m| {
                rename_tensor(m, &format!("{QP}.qzeros"), "unused.qzeros")
            });
            (a, s(&["model.safetensors", "q_proj.qzeros", "missing"]))
        }),
        ("quant: compressed-tensors zero points missing", |d| {
            let a = quant_with(d, "ct-w4a16-asym-llama", |m| {
                rename_tensor(m, &format!("{QP}.weight_zero_point"), "unused.zp")
            });
            (
                a,
                s(&["model.safetensors", "q_proj.weight_zero_point", "missing"]),
            )
        }),
        ("quant: g_idx not a permutation of the groups", |d| {
            let a = quant_with(d, "gptq-w4g64-act-llama", |m| {
                // Column 0 moves to the other group: one group has 65 columns, one 63.
                with_tensor_bytes(m, &format!("{QP}.g_idx"), |b| {
                    let g = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    b[..4].copy_from_slice(&(1 - g).to_le_bytes())
                })
            });
            (
                a,
                s(&["model.safetensors", "q_proj.g_idx", "g_idx", "permutation"]),
            )
        }),
        ("quant: g_idx names a group that does not exist", |d| {
            let a = quant_with(d, "gptq-w4g64-act-llama", |m| {
                with_tensor_bytes(m, &format!("{QP}.g_idx"), |b| {
                    b[..4].copy_from_slice(&7i32.to_le_bytes())
                })
            });
            (a, s(&["model.safetensors", "q_proj.g_idx", "group 7"]))
        }),
        ("quant: bitsandbytes quant_map is not the NF4 table", |d| {
            let a = quant_with(d, "bnb-nf4-llama", |m| {
                with_tensor_bytes(m, &format!("{QP}.weight.quant_map"), |b| {
                    b[4..8].copy_from_slice(&0.5f32.to_le_bytes())
                })
            });
            (
                a,
                s(&["model.safetensors", "q_proj.weight.quant_map", "quant_map"]),
            )
        }),
        (
            "quant: bitsandbytes quant_state shape disagrees with config",
            |d| {
                let a = quant_with(d, "bnb-nf4-llama", |m| {
                    let name = format!("{QP}.weight.quant_state.bitsandbytes__nf4");
                    with_tensor_bytes(m, &name, |b| {
                        let t = String::from_utf8(b.to_vec()).unwrap();
                        let t = t.replace("[128, 128]", "[128, 129]");
                        b.copy_from_slice(t.as_bytes());
                    })
                });
                (a, s(&["model.safetensors", "quant_state", "shape"]))
            },
        ),
        ("quant: static input scale missing", |d| {
            let a = quant_with(d, "ct-fp8-static-llama", |m| {
                rename_tensor(m, &format!("{QP}.input_scale"), "unused.input_scale")
            });
            (
                a,
                s(&["model.safetensors", "q_proj.input_scale", "missing"]),
            )
        }),
        ("quant: KV-cache scale missing", |d| {
            let a = quant_with(d, "ct-w4a16-kvfp8-llama", |m| {
                rename_tensor(m, "model.layers.1.self_attn.v_scale", "unused.v_scale")
            });
            (a, s(&["model.safetensors", "v_scale", "kv_cache_scheme"]))
        }),
        (
            "quant: quantized tensor that no config group targets",
            |d| {
                let a = quant_with(d, "ct-w4a16-llama", |m| {
                    with_json(m, "config.json", |v| {
                        v["quantization_config"]["config_groups"]["group_0"]["targets"] =
                            serde_json::json!(["re:.*mlp.*"])
                    })
                });
                (
                    a,
                    s(&["model.safetensors", "q_proj.weight_packed", "config_groups"]),
                )
            },
        ),
    ]
}

#[test]
fn every_bad_quantized_checkpoint_exits_2_naming_file_tensor_and_field() {
    check_cases(&quant_cases(), "bad_inputs_quant.txt");
}
