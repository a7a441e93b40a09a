//! `cargo +nightly fuzz run export`: see [`bodies::export`].
#![no_main]

#[path = "bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::export(data));
