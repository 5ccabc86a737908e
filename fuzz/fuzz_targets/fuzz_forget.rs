#![no_main]
//! Fuzzes cairn's forget record decoder; the body is `cairn_fuzz::forget`
//! (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::forget(data);
});
