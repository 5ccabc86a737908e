#![no_main]
//! Fuzzes cairn's blob decoder; the body is `cairn_fuzz::blob` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::blob(data);
});
