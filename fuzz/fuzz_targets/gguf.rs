//! The GGUF reader (header walk, metadata, tensor infos, tensors) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = compsafe_engine::loader::read_gguf(
        std::path::Path::new("fuzz.gguf"),
        data,
        &candle_core::Device::Cpu,
    );
});
