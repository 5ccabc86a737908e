#![no_main]
//! Fuzzes cairn's keyfile decoder; the body is `cairn_fuzz::keyfile` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::keyfile(data);
});
