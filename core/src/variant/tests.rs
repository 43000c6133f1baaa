use super::*;

#[test]
fn shorthands_round_trip() {
    for s in [
        "fp32",
        "f16",
        "bf16",
        "int8",
        "int4:g32",
        "int4:g32:asym",
        "int3:g64",
        "int2:g16",
        "gguf:q8_0",
        "gguf:q4k",
        "gguf:q2k",
        "gguf:iq4xs",
        "gguf:q80",
        "gguf:q4_k_m",
        "gguf:iq4_xs",
        "gguf:q2_k:pure",
        "gguf:q4_k_m:imatrix=calib-suite",
        "gguf:q4_k_m:imatrix=Data/My.imatrix",
        "prune:0.5",
        "prune:0.5:layer",
        "prune:2of4",
        "heads:3.1,3.2",
        "ablate:layer:0",
        "ablate:layer:0,3",
        "ablate:mlp:1:192-256",
        "ablate:mlp:1:0-64,2:64-128",
        "noise:0.05",
        "noise:0.05:s7",
        "gptq:w4g128",
        "gptq:w4g128:act",
        "gptq:w3g64:asym",
        "gptq:w8",
        "gptq:w2g16:act:asym:damp0.1:block64",
        "awq:w4g128",
        "awq:w4g64:sym:grid10",
        "smoothquant:w8a8",
        "smoothquant:w8a8:0.8",
        "fp8",
        "fp8:static",
        "nf4",
        "fp4",
        "nf4:dq",
        "fp4:dq:b128",
        "sparsegpt:0.5",
        "sparsegpt:2of4",
        "sparsegpt:0.6:damp0.1",
        "wanda:0.5",
        "wanda:2of4",
        "sparsegpt:2of4+gptq:w4g128",
        "wanda:0.5+int4:g32",
        "kv:fp8",
        "kv:int8",
        "gptq:w4g128+kv:fp8",
        "sparsegpt:2of4+gptq:w4g128+kv:int8",
    ] {
        let m = Method::parse(s, "variant").unwrap();
        assert_eq!(m.to_string(), s, "round trip of {s}");
    }
}

#[test]
fn aliases_and_errors() {
    assert_eq!(
        Method::parse("gguf:Q4K", "v").unwrap(),
        Method::Gguf { ty: GgufType::Q4K }
    );
    // llama-quantize's alias: Q4_K is the Q4_K_M mix.
    assert_eq!(
        Method::parse("gguf:Q4_K", "v").unwrap(),
        Method::GgufFile {
            ftype: GgufFtype::Q4KM,
            pure: false,
            imatrix: None
        }
    );
    for bad in [
        "int9",
        "int4:g0",
        "gguf:q9k",
        "gguf:q4k:pure",
        "gguf:q4_k_m:imatrix",
        "gguf:q4_k_m:fast",
        "prune:1.5",
        "prune:4of2",
        "heads:3",
        "ablate:layer",
        "ablate:layer:x",
        "ablate:mlp:1:64-0",
        "ablate:mlp:1",
        "noise:0",
        "noise:2",
        "noise:0.05:7",
        "zzz",
        "gptq",
        "gptq:w5g128",
        "gptq:w4g0",
        "gptq:w4g128:fast",
        "gptq:w4g128:damp2",
        "awq:w4g128:act",
        "smoothquant:w8a8:1.5",
        "smoothquant:w4a4",
        "fp8:e5m2",
        "nf4:b48",
        "sparsegpt:1.0",
        "wanda:4of2",
        "kv:int4",
        "gptq:w4g128+sparsegpt:0.5",
        "int4+int8",
        "kv:fp8+kv:int8",
    ] {
        let e = Method::parse(bad, "variants[0]").unwrap_err();
        assert!(e.to_string().contains("variants[0]"), "{e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn gguf_file_types_and_imatrix_sources() {
    let m = Method::parse("gguf:Q4_K_M:imatrix=Data/My.imatrix", "v").unwrap();
    assert_eq!(
        m,
        Method::GgufFile {
            ftype: GgufFtype::Q4KM,
            pure: false,
            imatrix: Some(ImatrixSource::File("Data/My.imatrix".into()))
        }
    );
    let m = Method::parse("gguf:iq4_xs:imatrix=fixture-harmful", "v").unwrap();
    assert!(
        matches!(m, Method::GgufFile { imatrix: Some(ImatrixSource::Suite(ref s)), .. } if s == "fixture-harmful")
    );
    for f in GgufFtype::ALL {
        assert_eq!(GgufFtype::parse(f.name()), Some(f));
        let v = Method::parse(&format!("gguf:{}", f.name()), "v").unwrap();
        assert_eq!(v.to_string(), format!("gguf:{}", f.name()));
    }
    for t in GgufType::ALL {
        let v = Method::parse(&format!("gguf:{}", t.short_name()), "v").unwrap();
        assert_eq!(v, Method::Gguf { ty: t });
    }
    assert_eq!(GgufFtype::Q4KM.id(), 15);
    assert_eq!(GgufFtype::IQ4XS.default_type(), GgufType::IQ4XS);
    assert_eq!(GgufFtype::IQ2S.default_type(), GgufType::IQ2XS);
}

#[test]
fn gguf_bits_per_weight() {
    assert_eq!(GgufType::Q8_0.bits_per_weight(), 8.5);
    assert_eq!(GgufType::Q4K.bits_per_weight(), 4.5);
    assert_eq!(GgufType::Q2K.bits_per_weight(), 2.625);
    assert_eq!(GgufType::Q6K.bits_per_weight(), 6.5625);
    assert_eq!(GgufType::IQ4XS.bits_per_weight(), 4.25);
    assert_eq!(GgufType::IQ2XXS.bits_per_weight(), 2.0625);
}

#[test]
fn calibrated_parameters_and_needs() {
    let m = Method::parse("gptq:w4g128:act", "v").unwrap();
    assert_eq!(
        m,
        Method::Gptq(GptqSpec {
            act_order: true,
            ..GptqSpec::default()
        })
    );
    assert!(m.needs_calibration());
    assert!(!Method::parse("fp8", "v").unwrap().needs_calibration());
    assert!(Method::parse("fp8:static", "v")
        .unwrap()
        .needs_calibration());
    assert!(!Method::parse("nf4", "v").unwrap().needs_calibration());
    assert!(Method::parse("wanda:0.5+int4:g32", "v")
        .unwrap()
        .needs_calibration());
    // The cache's static key and value scales are calibrated.
    assert!(Method::parse("int4+kv:fp8", "v")
        .unwrap()
        .needs_calibration());
    assert_eq!(
        Method::parse("gptq:w4g128", "v").unwrap().kind(),
        "quantization"
    );
    assert_eq!(Method::parse("wanda:2of4", "v").unwrap().kind(), "pruning");
    let e = Method::parse("gptq:w4g128:fast", "variants[3]").unwrap_err();
    assert!(e.to_string().contains("unknown gptq option"), "{e}");
}

#[test]
fn table_form_carries_every_parameter() {
    let m: Method = toml::from_str(
        "method = \"gptq\"\nbits = 3\ngroup = 64\nact_order = true\nasym = true\ndamp = 0.05\nblock = 64\n",
    )
    .unwrap();
    assert_eq!(m.to_string(), "gptq:w3g64:act:asym:damp0.05:block64");
    m.check("variants[0]").unwrap();
    let bad: Method = toml::from_str("method = \"gptq\"\nbits = 5\n").unwrap();
    let e = bad.check("variants[0]").unwrap_err();
    assert!(e.to_string().contains("variants[0]"), "{e}");
    let e = toml::from_str::<Method>("method = \"gptq\"\nbitz = 4\n").unwrap_err();
    assert!(e.to_string().contains("bitz"), "{e}");
    let m: Method = toml::from_str("method = \"smoothquant\"\nalpha = 0.75\n").unwrap();
    assert_eq!(m.to_string(), "smoothquant:w8a8:0.75");
    // Every shorthand survives a trip through its table form.
    for s in [
        "awq:w4g128",
        "nf4:dq",
        "sparsegpt:2of4",
        "sparsegpt:2of4+gptq:w4g128+kv:fp8",
    ] {
        let m = Method::parse(s, "v").unwrap();
        let t = toml::to_string(&m).unwrap();
        let back: Method = toml::from_str(&t).unwrap();
        assert_eq!(back, m, "{s} via {t}");
    }
}
