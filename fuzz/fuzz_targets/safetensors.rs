//! The safetensors reader on arbitrary bytes, against a tiny Llama config.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn expected() -> &'static BTreeMap<String, Vec<usize>> {
    static E: OnceLock<BTreeMap<String, Vec<usize>>> = OnceLock::new();
    E.get_or_init(|| {
        let cfg = compsafe_engine::config::ModelConfig::from_hf_json(include_str!(
            "../seeds/tiny-config.json"
        ))
        .expect("the tiny config parses");
        cfg.expected_shapes().into_iter().collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = compsafe_engine::loader::read_safetensors(
        std::path::Path::new("fuzz.safetensors"),
        data,
        expected(),
        &candle_core::Device::Cpu,
    );
});
