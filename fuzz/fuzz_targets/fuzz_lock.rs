#![no_main]
//! Fuzzes cairn's lock file decoder; the body is `cairn_fuzz::lock` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::lock(data);
});
