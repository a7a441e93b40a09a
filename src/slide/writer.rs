//! Writing an image as a tiled, pyramidal TIFF that slide readers open: the generic layout
//! libvips writes (`tiffsave --tile --pyramid`, every level in the main directory chain,
//! deflate tiles, resolution tags; TIFF or BigTIFF) and the Aperio SVS layout (JPEG tiles
//! sharing one `JPEGTables`, a stripped thumbnail as the second directory, levels reduced
//! 4× each, and the Aperio description with `MPP` and `AppMag`).
//!
//! It builds test slides from ordinary images and writes small pyramids; the whole file is
//! assembled in memory, so it is meant for images that fit there.

use std::{io::Write, path::Path};

use image::{imageops, RgbImage};

use super::SlideError;

/// The file layout of [`write_pyramid`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TiffLayout {
    /// Generic pyramidal TIFF: deflate tiles, levels halved until one tile holds the
    /// level, `NewSubfileType = 1` on reduced levels; BigTIFF (64-bit offsets) when
    /// `bigtiff`.
    Pyramidal {
        /// Write BigTIFF rather than classic TIFF.
        bigtiff: bool,
    },
    /// As [`Pyramidal`](Self::Pyramidal), but the reduced levels are SubIFDs of level 0
    /// (tag 330) instead of later directories of the main chain, as OME-TIFF has written
    /// its pyramids since Bio-Formats 6.
    SubIfds {
        /// Write BigTIFF rather than classic TIFF.
        bigtiff: bool,
    },
    /// Aperio SVS (classic TIFF): JPEG tiles (Photometric YCbCr) with shared tables at
    /// `quality`, a thumbnail, levels reduced 4× each, `AppMag = app_mag`.
    AperioSvs {
        /// JPEG quality (1–100; Aperio scanners use 30–70).
        quality: u8,
        /// Objective magnification written as `AppMag`.
        app_mag: u32,
    },
}

/// Options of [`write_pyramid`].
#[derive(Debug, Clone, PartialEq)]
pub struct PyramidOptions {
    /// The layout.
    pub layout: TiffLayout,
    /// Tile side (px); a multiple of 16, as TIFF requires.
    pub tile_size: u32,
    /// Microns per pixel at level 0, written to the description or resolution tags.
    pub mpp: Option<f64>,
    /// Level 0's ImageDescription in the pyramidal layout (e.g. OME-XML); the Aperio
    /// layout writes its own.
    pub description: Option<String>,
}

impl PyramidOptions {
    /// Generic pyramidal BigTIFF with 256-px tiles.
    pub fn pyramidal(mpp: Option<f64>) -> Self {
        PyramidOptions {
            layout: TiffLayout::Pyramidal { bigtiff: true },
            tile_size: 256,
            mpp,
            description: None,
        }
    }

    /// Aperio SVS with 240-px tiles at quality 70 and AppMag 40.
    pub fn aperio(mpp: f64) -> Self {
        PyramidOptions {
            layout: TiffLayout::AperioSvs {
                quality: 70,
                app_mag: 40,
            },
            tile_size: 240,
            mpp: Some(mpp),
            description: None,
        }
    }
}

/// Writes `image` as a pyramidal TIFF (see the module docs) atomically at `path`.
///
/// # Errors
/// A tile size that is not a positive multiple of 16, an empty image, a JPEG encoder
/// error, or the file cannot be written.
pub fn write_pyramid(
    path: &Path,
    image: &RgbImage,
    options: &PyramidOptions,
) -> Result<(), SlideError> {
    let ts = options.tile_size;
    if ts == 0 || !ts.is_multiple_of(16) || ts > 4096 {
        return Err(SlideError::invalid(
            path,
            format!("tile size {ts}: TIFF tiles are multiples of 16 (at most 4096 here)"),
        ));
    }
    if image.width() == 0 || image.height() == 0 {
        return Err(SlideError::invalid(path, "cannot write an empty image"));
    }
    let (big, factor) = match options.layout {
        TiffLayout::Pyramidal { bigtiff } | TiffLayout::SubIfds { bigtiff } => (bigtiff, 2),
        TiffLayout::AperioSvs { .. } => (false, 4),
    };
    let mut levels = vec![image.clone()];
    loop {
        let last = levels.last().expect("level 0");
        if last.width().max(last.height()) <= ts || last.width() < factor || last.height() < factor
        {
            break;
        }
        let next = imageops::resize(
            last,
            last.width() / factor,
            last.height() / factor,
            imageops::FilterType::Triangle,
        );
        levels.push(next);
    }
    let mut file = TiffBytes::new(big);
    // Each level's tiles are written as it comes; the directories after, when the
    // SubIFDs' offsets are known.
    let mut directories = Vec::new();
    for (k, level) in levels.iter().enumerate() {
        let downsample = image.width() as f64 / level.width() as f64;
        let entries = match options.layout {
            TiffLayout::Pyramidal { .. } | TiffLayout::SubIfds { .. } => {
                let mut e = tiled_level(&mut file, level, ts, Compression::Deflate)
                    .map_err(|m| SlideError::invalid(path, m))?;
                if let Some(mpp) = options.mpp {
                    let per_cm = 1e4 / (mpp * downsample);
                    let n = (per_cm * 1000.0).round().min(u32::MAX as f64) as u32;
                    e.push(Entry::rational(282, n, 1000));
                    e.push(Entry::rational(283, n, 1000));
                    e.push(Entry::shorts(296, &[3]));
                }
                e.push(Entry::longs(254, &[u32::from(k > 0)]));
                if let (0, Some(text)) = (k, &options.description) {
                    e.push(Entry::ascii(270, text));
                }
                e
            }
            TiffLayout::AperioSvs { quality, app_mag } => {
                let mut e = tiled_level(&mut file, level, ts, Compression::Jpeg(quality))
                    .map_err(|m| SlideError::invalid(path, m))?;
                let (w0, h0) = image.dimensions();
                let (w, h) = level.dimensions();
                let head = if k == 0 {
                    format!("{w0}x{h0} [0,0 {w0}x{h0}] ({ts}x{ts}) JPEG/YCC Q={quality}")
                } else {
                    format!("{w0}x{h0} -> {w}x{h} - ({ts}x{ts}) JPEG/YCC Q={quality}")
                };
                let mpp = options
                    .mpp
                    .map(|m| format!("|MPP = {m:.4}"))
                    .unwrap_or_default();
                e.push(Entry::ascii(
                    270,
                    &format!("Aperio Image Library v12.0.15\r\n{head}|AppMag = {app_mag}{mpp}"),
                ));
                e
            }
        };
        directories.push(entries);
        if k == 0 && matches!(options.layout, TiffLayout::AperioSvs { .. }) {
            directories.push(thumbnail(&mut file, image));
        }
    }
    if let TiffLayout::SubIfds { .. } = options.layout {
        let subs: Vec<u64> = directories[1..]
            .iter_mut()
            .map(|entries| file.write_directory(entries).0)
            .collect();
        let entry = file.sub_ifds(&subs);
        directories.truncate(1);
        directories[0].push(entry);
    }
    for entries in &mut directories {
        file.directory(entries);
    }
    if !big && file.data.len() as u64 > u32::MAX as u64 {
        return Err(SlideError::invalid(
            path,
            format!(
                "{} bytes do not fit classic TIFF's 32-bit offsets; write BigTIFF",
                file.data.len()
            ),
        ));
    }
    crate::io::write_atomic_bytes(path, &file.data).map_err(|e| SlideError::io(path, e))
}

enum Compression {
    Deflate,
    Jpeg(u8),
}

/// The tiles of one level written to `file`; the level's directory entries returned.
fn tiled_level(
    file: &mut TiffBytes,
    level: &RgbImage,
    ts: u32,
    compression: Compression,
) -> Result<Vec<Entry>, String> {
    let (w, h) = level.dimensions();
    let mut offsets = Vec::new();
    let mut counts = Vec::new();
    let mut tables: Option<Vec<u8>> = None;
    let mut subsampling = [1u16, 1];
    for ty in 0..h.div_ceil(ts) {
        for tx in 0..w.div_ceil(ts) {
            // Edge tiles are padded to the full size with white, as TIFF requires.
            let mut tile = RgbImage::from_pixel(ts, ts, image::Rgb([255, 255, 255]));
            let (x0, y0) = (tx * ts, ty * ts);
            let view = imageops::crop_imm(level, x0, y0, ts.min(w - x0), ts.min(h - y0));
            imageops::replace(&mut tile, &*view, 0, 0);
            let bytes = match compression {
                Compression::Deflate => {
                    let mut z =
                        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                    z.write_all(tile.as_raw()).map_err(|e| e.to_string())?;
                    z.finish().map_err(|e| e.to_string())?
                }
                Compression::Jpeg(quality) => {
                    let mut jpeg = Vec::new();
                    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
                        .encode(tile.as_raw(), ts, ts, image::ExtendedColorType::Rgb8)
                        .map_err(|e| e.to_string())?;
                    let split = split_jpeg(&jpeg)?;
                    subsampling = split.subsampling;
                    match &tables {
                        None => tables = Some(split.tables),
                        Some(t) if *t == split.tables => {}
                        Some(_) => return Err("JPEG tiles with different tables".into()),
                    }
                    split.abbreviated
                }
            };
            file.align();
            offsets.push(file.data.len() as u64);
            counts.push(bytes.len() as u64);
            file.data.extend_from_slice(&bytes);
        }
    }
    let mut e = vec![
        Entry::longs(256, &[w]),
        Entry::longs(257, &[h]),
        Entry::shorts(258, &[8, 8, 8]),
        Entry::shorts(277, &[3]),
        Entry::shorts(284, &[1]),
        Entry::shorts(322, &[ts as u16]),
        Entry::shorts(323, &[ts as u16]),
        file.offsets(324, &offsets),
        file.offsets(325, &counts),
    ];
    match compression {
        Compression::Deflate => {
            e.push(Entry::shorts(259, &[8]));
            e.push(Entry::shorts(262, &[2]));
        }
        Compression::Jpeg(_) => {
            e.push(Entry::shorts(259, &[7]));
            e.push(Entry::shorts(262, &[6]));
            e.push(Entry::shorts(530, &subsampling));
            e.push(Entry::undefined(347, tables.unwrap_or_default()));
        }
    }
    Ok(e)
}

/// Aperio's second directory: an uncompressed, stripped thumbnail (longest side 768).
fn thumbnail(file: &mut TiffBytes, image: &RgbImage) -> Vec<Entry> {
    let scale = 768.0 / image.width().max(image.height()) as f64;
    let (w, h) = if scale < 1.0 {
        (
            ((image.width() as f64 * scale) as u32).max(1),
            ((image.height() as f64 * scale) as u32).max(1),
        )
    } else {
        image.dimensions()
    };
    let thumb = imageops::resize(image, w, h, imageops::FilterType::Triangle);
    file.align();
    let offset = file.data.len() as u64;
    file.data.extend_from_slice(thumb.as_raw());
    vec![
        Entry::longs(254, &[0]),
        Entry::longs(256, &[w]),
        Entry::longs(257, &[h]),
        Entry::shorts(258, &[8, 8, 8]),
        Entry::shorts(259, &[1]),
        Entry::shorts(262, &[2]),
        Entry::ascii(
            270,
            &format!("Aperio Image Library v12.0.15\r\n{w}x{h} thumbnail"),
        ),
        file.offsets(273, &[offset]),
        Entry::shorts(277, &[3]),
        Entry::longs(278, &[h]),
        file.offsets(279, &[thumb.as_raw().len() as u64]),
        Entry::shorts(284, &[1]),
    ]
}

/// A JPEG split as TIFF stores it: the quantization and Huffman tables in a
/// `JPEGTables` stream (SOI, tables, EOI), and the rest as an abbreviated stream.
struct SplitJpeg {
    tables: Vec<u8>,
    abbreviated: Vec<u8>,
    /// The luma component's horizontal and vertical sampling factors.
    subsampling: [u16; 2],
}

fn split_jpeg(jpeg: &[u8]) -> Result<SplitJpeg, String> {
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] {
        return Err("the encoder wrote no JPEG start marker".into());
    }
    let mut tables = vec![0xFF, 0xD8];
    let mut abbreviated = vec![0xFF, 0xD8];
    let mut subsampling = [1, 1];
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return Err(format!("no JPEG marker at byte {i}"));
        }
        let marker = jpeg[i + 1];
        if marker == 0xDA {
            abbreviated.extend_from_slice(&jpeg[i..]);
            tables.extend_from_slice(&[0xFF, 0xD9]);
            return Ok(SplitJpeg {
                tables,
                abbreviated,
                subsampling,
            });
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let segment = jpeg
            .get(i..i + 2 + len)
            .ok_or("JPEG segment past the end")?;
        match marker {
            0xDB | 0xC4 => tables.extend_from_slice(segment),
            _ => {
                if marker == 0xC0 && segment.len() > 11 {
                    let hv = segment[11];
                    subsampling = [(hv >> 4) as u16, (hv & 15) as u16];
                }
                abbreviated.extend_from_slice(segment);
            }
        }
        i += 2 + len;
    }
    Err("the JPEG has no scan".into())
}

/// One directory entry: tag, field type, count, value bytes (little-endian).
struct Entry {
    tag: u16,
    kind: u16,
    count: u64,
    bytes: Vec<u8>,
}

impl Entry {
    fn shorts(tag: u16, v: &[u16]) -> Self {
        Entry {
            tag,
            kind: 3,
            count: v.len() as u64,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn longs(tag: u16, v: &[u32]) -> Self {
        Entry {
            tag,
            kind: 4,
            count: v.len() as u64,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn rational(tag: u16, n: u32, d: u32) -> Self {
        let mut bytes = n.to_le_bytes().to_vec();
        bytes.extend_from_slice(&d.to_le_bytes());
        Entry {
            tag,
            kind: 5,
            count: 1,
            bytes,
        }
    }

    fn ascii(tag: u16, s: &str) -> Self {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        Entry {
            tag,
            kind: 2,
            count: bytes.len() as u64,
            bytes,
        }
    }

    fn undefined(tag: u16, bytes: Vec<u8>) -> Self {
        Entry {
            tag,
            kind: 7,
            count: bytes.len() as u64,
            bytes,
        }
    }
}

/// A TIFF file under construction: header, then per directory its data and entries.
struct TiffBytes {
    data: Vec<u8>,
    big: bool,
    /// Where the pointer to the next directory goes.
    next_pointer: usize,
}

impl TiffBytes {
    fn new(big: bool) -> Self {
        let mut data = b"II".to_vec();
        if big {
            data.extend_from_slice(&43u16.to_le_bytes());
            data.extend_from_slice(&8u16.to_le_bytes());
            data.extend_from_slice(&0u16.to_le_bytes());
            data.extend_from_slice(&0u64.to_le_bytes());
        } else {
            data.extend_from_slice(&42u16.to_le_bytes());
            data.extend_from_slice(&0u32.to_le_bytes());
        }
        TiffBytes {
            data,
            big,
            next_pointer: if big { 8 } else { 4 },
        }
    }

    fn align(&mut self) {
        if self.data.len() % 2 == 1 {
            self.data.push(0);
        }
    }

    /// Offsets or byte counts: LONG8 in BigTIFF, LONG in TIFF.
    fn offsets(&self, tag: u16, v: &[u64]) -> Entry {
        if self.big {
            Entry {
                tag,
                kind: 16,
                count: v.len() as u64,
                bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            }
        } else {
            let longs: Vec<u32> = v.iter().map(|&x| x as u32).collect();
            Entry::longs(tag, &longs)
        }
    }

    fn put_offset(&mut self, at: usize, value: u64) {
        if self.big {
            self.data[at..at + 8].copy_from_slice(&value.to_le_bytes());
        } else {
            self.data[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
        }
    }

    /// The SubIFDs tag (330) pointing at `offsets`: IFD8 in BigTIFF, IFD in TIFF.
    fn sub_ifds(&self, offsets: &[u64]) -> Entry {
        let mut e = self.offsets(330, offsets);
        e.kind = if self.big { 18 } else { 13 };
        e
    }

    /// Appends a directory and links it from the previous one.
    fn directory(&mut self, entries: &mut [Entry]) {
        let (at, next) = self.write_directory(entries);
        self.put_offset(self.next_pointer, at);
        self.next_pointer = next;
    }

    /// Appends a directory (entries sorted by tag, long values out of line) that nothing
    /// links to yet; returns its offset and where its pointer to a next directory is.
    fn write_directory(&mut self, entries: &mut [Entry]) -> (u64, usize) {
        entries.sort_by_key(|e| e.tag);
        let inline = if self.big { 8 } else { 4 };
        let mut values = Vec::with_capacity(entries.len());
        for e in entries.iter() {
            if e.bytes.len() > inline {
                self.align();
                values.push(Some(self.data.len() as u64));
                self.data.extend_from_slice(&e.bytes);
            } else {
                values.push(None);
            }
        }
        self.align();
        let at = self.data.len() as u64;
        if self.big {
            self.data
                .extend_from_slice(&(entries.len() as u64).to_le_bytes());
        } else {
            self.data
                .extend_from_slice(&(entries.len() as u16).to_le_bytes());
        }
        for (e, out_of_line) in entries.iter().zip(values) {
            self.data.extend_from_slice(&e.tag.to_le_bytes());
            self.data.extend_from_slice(&e.kind.to_le_bytes());
            let mut field = vec![0u8; inline];
            match out_of_line {
                Some(offset) => field.copy_from_slice(&offset.to_le_bytes()[..inline]),
                None => field[..e.bytes.len()].copy_from_slice(&e.bytes),
            }
            if self.big {
                self.data.extend_from_slice(&e.count.to_le_bytes());
            } else {
                self.data.extend_from_slice(&(e.count as u32).to_le_bytes());
            }
            self.data.extend_from_slice(&field);
        }
        let next = self.data.len();
        self.data.extend(std::iter::repeat_n(0, inline));
        (at, next)
    }
}
