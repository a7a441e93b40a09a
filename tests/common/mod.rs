//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The project's shared folder with real data (`../shared` beside the repository, or
/// `$NUCSEG_SHARED`). Tests that need it fail loudly when it is missing rather than
/// silently passing.
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("NUCSEG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        dir.join("data").is_dir(),
        "real test data not found at {} (set NUCSEG_SHARED to the folder holding data/ and metrics-golden/)",
        dir.display()
    );
    dir
}

pub fn monuseg() -> PathBuf {
    shared().join("data/monuseg-kumar")
}

#[path = "../../src/test_util.rs"]
mod test_util;
pub use test_util::TempDir;

/// A fresh scratch folder `nucseg-test-<name>-<pid>`, removed when dropped (see `TempDir`).
pub fn tmp_dir(name: &str) -> TempDir {
    test_util::temp_dir(name)
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit: small and independent of any crate.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG header declaring `width × height` 8-bit RGB, with one empty IDAT and IEND:
/// a few dozen bytes that would decode to `3 · width · height` bytes.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, adaptive filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Disc nuclei of radius 7 on a 24 px grid, with their label map.
pub fn disc_tile(w: u32, h: u32) -> (nucseg::data::RgbImage, nucseg::data::LabelMap) {
    let mut labels = nucseg::data::LabelMap::new(w, h);
    let image = nucseg::data::RgbImage::from_fn(w, h, |x, y| {
        let k = (x / 24) + (y / 24) * 100;
        let (cx, cy) = ((x / 24) * 24 + 12, (y / 24) * 24 + 12);
        if (x as i32 - cx as i32).pow(2) + (y as i32 - cy as i32).pow(2) < 49 {
            labels.set(x, y, k + 1);
            image::Rgb([80, 50, 140])
        } else {
            image::Rgb([230, 170, 200])
        }
    });
    (image, labels)
}
