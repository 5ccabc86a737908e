#![no_main]
//! Fuzzes cairn's tree decoder; the body is `cairn_fuzz::tree` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::tree(data);
});
