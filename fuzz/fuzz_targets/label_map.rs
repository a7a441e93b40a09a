//! `cargo +nightly fuzz run label_map`: see [`bodies::label_map`].
#![no_main]

#[path = "bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::label_map(data));
