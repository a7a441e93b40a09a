//! One tile's detections on disk: what a run (or a shard of it) leaves for stitching, and
//! what lets a killed run resume from the tiles it finished.
//!
//! Format (little-endian, then zlib-compressed): `NSTL`, version 1, tile index, the tile's
//! width and height, the detection count, the seconds the tile took (f32); per detection `x0 y0 width height` (u32, tile
//! coordinates), score (f32), class (u32), box (4 × f32), and the mask's bits packed
//! row-major, 8 per byte.

use std::{
    io::{Read, Write},
    path::Path,
};

use crate::instances::{Instance, InstanceMask, Instances};

use super::SlideError;

const MAGIC: &[u8; 4] = b"NSTL";
const VERSION: u32 = 1;
/// A tile file may not decode to more than this many mask pixels (a corrupt or hostile
/// file cannot ask for a huge allocation).
const MAX_MASK_PIXELS: u64 = 1 << 28;
/// A tile file decompresses to at most this: the masks' bits and 64 MiB of headers.
const MAX_FILE_BYTES: u64 = MAX_MASK_PIXELS / 8 + (64 << 20);

/// Writes the detections `found` of tile `index` (tile coordinates), segmented in
/// `seconds`, atomically at `path`.
pub fn write_tile(
    path: &Path,
    index: usize,
    found: &Instances,
    seconds: f32,
) -> Result<(), SlideError> {
    let mut raw = Vec::new();
    raw.extend_from_slice(MAGIC);
    for v in [
        VERSION,
        index as u32,
        found.width,
        found.height,
        found.items.len() as u32,
        seconds.to_bits(),
    ] {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    for inst in &found.items {
        let m = &inst.mask;
        for v in [m.x0, m.y0, m.width, m.height] {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        raw.extend_from_slice(&inst.score.to_le_bytes());
        raw.extend_from_slice(&inst.class_id.to_le_bytes());
        for v in inst.bbox {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        let mut byte = 0u8;
        for (k, &bit) in m.data.iter().enumerate() {
            byte |= (bit as u8) << (k % 8);
            if k % 8 == 7 {
                raw.push(byte);
                byte = 0;
            }
        }
        if m.data.len() % 8 != 0 {
            raw.push(byte);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&raw)
        .and_then(|_| z.finish())
        .and_then(|bytes| crate::io::write_atomic_bytes(path, &bytes))
        .map_err(|e| SlideError::io(path, e))
}

/// Reads a file written by [`write_tile`] for tile `index`: the detections and seconds.
///
/// # Errors
/// The file cannot be read, is not a tile file, is for another tile, or is truncated.
pub fn read_tile(path: &Path, index: usize) -> Result<(Instances, f32), SlideError> {
    let compressed = std::fs::read(path).map_err(|e| SlideError::io(path, e))?;
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&compressed[..])
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| SlideError::invalid(path, format!("not a tile file: {e}")))?;
    let bad = |what: &str| SlideError::invalid(path, format!("broken tile file: {what}"));
    let mut r = Cursor { raw: &raw, at: 0 };
    if r.take(4).ok_or_else(|| bad("truncated"))? != MAGIC {
        return Err(bad("no NSTL header"));
    }
    let u32s = |r: &mut Cursor, n: usize| -> Result<Vec<u32>, SlideError> {
        (0..n)
            .map(|_| r.u32().ok_or_else(|| bad("truncated")))
            .collect()
    };
    let [version, stored, width, height, count, seconds] = u32s(&mut r, 6)?[..] else {
        unreachable!("six values")
    };
    if version != VERSION {
        return Err(bad(&format!("version {version}, expected {VERSION}")));
    }
    if stored as usize != index {
        return Err(bad(&format!("it holds tile {stored}, not tile {index}")));
    }
    let mut items = Vec::new();
    let mut pixels = 0u64;
    for _ in 0..count {
        let v = u32s(&mut r, 10)?;
        let [x0, y0, w, h] = [v[0], v[1], v[2], v[3]];
        let n = w as u64 * h as u64;
        pixels += n;
        if pixels > MAX_MASK_PIXELS {
            return Err(bad("masks over the pixel budget"));
        }
        let bytes = r
            .take(n.div_ceil(8) as usize)
            .ok_or_else(|| bad("truncated"))?;
        let data = (0..n as usize)
            .map(|k| bytes[k / 8] >> (k % 8) & 1 == 1)
            .collect();
        items.push(Instance {
            mask: InstanceMask {
                x0,
                y0,
                width: w,
                height: h,
                data,
            },
            bbox: [6, 7, 8, 9].map(|k| f32::from_bits(v[k])),
            score: f32::from_bits(v[4]),
            class_id: v[5],
        });
    }
    if r.at != raw.len() {
        return Err(bad("trailing bytes"));
    }
    Ok((
        Instances {
            width,
            height,
            items,
        },
        f32::from_bits(seconds),
    ))
}

struct Cursor<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.raw.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
    }
}
