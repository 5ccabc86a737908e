#![no_main]
//! Fuzzes cairn's config decoder; the body is `cairn_fuzz::config` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::config(data);
});
