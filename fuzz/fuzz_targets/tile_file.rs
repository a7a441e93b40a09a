//! `cargo +nightly fuzz run tile_file`: see [`bodies::tile_file`].
#![no_main]

#[path = "bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::tile_file(data));
