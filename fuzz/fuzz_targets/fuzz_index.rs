#![no_main]
//! Fuzzes cairn's index decoder; the body is `cairn_fuzz::index` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::index(data);
});
