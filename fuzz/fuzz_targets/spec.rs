//! The sweep spec parser on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = compsafe_core::spec::parse_spec(text, std::path::Path::new("/fuzz/spec.toml"));
    }
});
