#![no_main]
//! Fuzzes cairn's snapshot decoder; the body is `cairn_fuzz::snapshot` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::snapshot(data);
});
