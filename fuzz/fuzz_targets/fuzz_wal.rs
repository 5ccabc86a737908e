#![no_main]
//! Fuzzes cairn's WAL record decoder and its parsers of PostgreSQL's WAL
//! names, segment headers and history files; the body is `cairn_fuzz::wal`
//! (fuzz/src/lib.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::wal(data);
});
