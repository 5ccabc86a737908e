#![no_main]
//! Fuzzes cairn's pack decoder; the body is `cairn_fuzz::pack` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::pack(data);
});
