#![no_main]
//! Fuzzes cairn's content-list decoder; the body is `cairn_fuzz::content_list` (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::content_list(data);
});
