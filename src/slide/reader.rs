//! Whole-slide images read tile by tile: tiled or stripped TIFF and BigTIFF, pyramidal
//! (every reduced level in the main IFD chain, as libvips, Aperio and QuPath write them, or
//! in the base level's SubIFDs, as OME-TIFF since Bio-Formats 6 does), OME-TIFF and Aperio
//! SVS (JPEG tiles with shared `JPEGTables`). Only the tiles a region needs are read;
//! nothing else of the slide is held in memory.
//!
//! Pixel size (µm per pixel at level 0) comes from, in this order: the Aperio
//! description's `MPP = …`, the OME-XML `PhysicalSizeX` (µm, nm or mm), the TIFF
//! `XResolution` with `ResolutionUnit` centimetre or inch.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use image::RgbImage;
use tiff::{
    decoder::{ChunkType, Decoder, DecodingResult, Limits},
    tags::Tag,
    ColorType,
};

use super::SlideError;

/// SubIFDs of the base level read as candidate levels, at most (a pyramid halving a
/// 2^18-px side needs 18).
pub const MAX_SUB_IFDS: usize = 64;
/// Largest tile (or strip) side accepted, so a hostile header cannot ask for a huge buffer.
pub const MAX_CHUNK_SIDE: u32 = 8192;
/// Largest compressed tile accepted (bytes).
pub const MAX_CHUNK_BYTES: u64 = 256 << 20;
/// Largest level-0 side accepted (px): the largest scanned slides are about 200k px wide;
/// this bounds the thumbnail (8192² at 32×) and the tile list a hostile header can ask for.
pub const MAX_SLIDE_SIDE: u32 = 1 << 18;
/// Largest region [`SlideReader::read_region`] returns (pixels): 16384².
pub const MAX_REGION_PIXELS: u64 = 1 << 28;
/// Decoded tiles kept for reuse (bytes): neighbouring tiles and the nuclei measured after
/// them read the same slide tiles again.
pub const CHUNK_CACHE_BYTES: usize = 96 << 20;
/// Pixel sizes outside this range (µm per pixel) are not a microscope's and are refused.
pub const PLAUSIBLE_MPP: (f64, f64) = (0.05, 50.0);

/// What a slide reader gives the segmenter: its pyramid, pixel size and pixels. The TIFF
/// reader ([`TiffSlide`]) implements it; another format plugs in by implementing it too.
pub trait SlideReader: Send + Sync {
    /// The file it reads.
    fn path(&self) -> &Path;
    /// The levels, full resolution first, each smaller than the one before.
    fn levels(&self) -> &[SlideLevel];
    /// Microns per pixel at level 0, when the file says (see the module docs).
    fn mpp(&self) -> Option<f64>;
    /// The format, for reports: `"aperio-svs"`, `"ome-tiff"`, `"tiff"`.
    fn format(&self) -> &'static str;
    /// The `width × height` region with top-left corner `(x, y)` of `level` (coordinates of
    /// that level); pixels outside the level are white (glass).
    ///
    /// # Errors
    /// An empty region or one over [`MAX_REGION_PIXELS`]; a tile that cannot be read.
    fn read_region(
        &self,
        level: usize,
        x: i64,
        y: i64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, SlideError>;

    /// Level 0's `(width, height)`.
    fn dimensions(&self) -> (u32, u32) {
        let l = &self.levels()[0];
        (l.width, l.height)
    }
}

/// Checks a [`SlideReader::read_region`] request: an existing level, a non-empty region
/// within [`MAX_REGION_PIXELS`]; returns the level.
pub(crate) fn check_region(
    slide: &(impl SlideReader + ?Sized),
    level: usize,
    x: i64,
    y: i64,
    width: u32,
    height: u32,
) -> Result<&SlideLevel, SlideError> {
    let refuse = |reason| SlideError::Region {
        path: slide.path().to_path_buf(),
        level,
        x,
        y,
        width,
        height,
        reason,
    };
    let l = slide
        .levels()
        .get(level)
        .ok_or_else(|| refuse("no such level"))?;
    if width == 0 || height == 0 {
        return Err(refuse("empty region"));
    }
    if width as u64 * height as u64 > MAX_REGION_PIXELS {
        return Err(refuse("over the region budget of 2^28 pixels"));
    }
    Ok(l)
}

/// One level of a slide's pyramid.
#[derive(Debug, Clone, PartialEq)]
pub struct SlideLevel {
    /// Width (px).
    pub width: u32,
    /// Height (px).
    pub height: u32,
    /// Level 0's width over this level's (1 for level 0; 4, 16, … for Aperio).
    pub downsample: f64,
    /// Width of a stored tile (the level's width for strips).
    pub chunk_width: u32,
    /// Height of a stored tile or strip.
    pub chunk_height: u32,
}

/// How a level's chunks are compressed, for the reader's own decoding.
#[derive(Debug, Clone, PartialEq)]
enum Coding {
    /// Decoded by the `tiff` crate (none, LZW, deflate, PackBits).
    Tiff,
    /// JPEG, decoded here with the level's `JPEGTables` prepended (Aperio, TIFF TN2).
    Jpeg {
        tables: Option<Vec<u8>>,
        offsets: Vec<u64>,
        byte_counts: Vec<u64>,
        /// The TIFF's PhotometricInterpretation: 6 (YCbCr) is converted to RGB, 2 (RGB,
        /// Aperio's "JPEG/RGB") and 1 (grey) are taken as they are.
        photometric: u16,
    },
}

/// A TIFF or BigTIFF slide (see the module docs). Safe to share between threads; reads of
/// one level are serialized.
#[derive(Debug)]
pub struct TiffSlide {
    path: PathBuf,
    levels: Vec<SlideLevel>,
    /// How each level's chunks are decoded.
    codings: Vec<Coding>,
    mpp: Option<f64>,
    format: &'static str,
    description: String,
    decoders: Vec<Mutex<Decoder<SlideFile>>>,
    file: Mutex<File>,
    cache: Mutex<ChunkCache>,
}

/// A decoded chunk: width, height, RGB bytes.
type Chunk = (u32, u32, Arc<Vec<u8>>);

/// Least-recently-used decoded chunks, up to [`CHUNK_CACHE_BYTES`].
#[derive(Debug, Default)]
struct ChunkCache {
    chunks: HashMap<(usize, u32), (Chunk, u64)>,
    bytes: usize,
    clock: u64,
}

impl ChunkCache {
    fn get(&mut self, key: (usize, u32)) -> Option<Chunk> {
        self.clock += 1;
        let clock = self.clock;
        self.chunks.get_mut(&key).map(|(c, used)| {
            *used = clock;
            c.clone()
        })
    }

    fn put(&mut self, key: (usize, u32), chunk: Chunk) {
        self.clock += 1;
        self.bytes += chunk.2.len();
        if let Some((old, _)) = self.chunks.insert(key, (chunk, self.clock)) {
            self.bytes -= old.2.len();
        }
        while self.bytes > CHUNK_CACHE_BYTES && self.chunks.len() > 1 {
            let oldest = *self
                .chunks
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k)
                .expect("not empty");
            if let Some((c, _)) = self.chunks.remove(&oldest) {
                self.bytes -= c.2.len();
            }
        }
    }
}

/// TIFF compression codes the reader decodes.
const NONE: u16 = 1;
const LZW: u16 = 5;
const OLD_JPEG: u16 = 6;
const JPEG: u16 = 7;
const DEFLATE: u16 = 8;
const PACKBITS: u16 = 32773;
const OLD_DEFLATE: u16 = 32946;
const JPEG_2000: [u16; 2] = [33003, 33005];

fn limits() -> Limits {
    let mut l = Limits::default();
    l.decoding_buffer_size = (MAX_CHUNK_SIDE as usize).pow(2) * 4;
    l.ifd_value_size = 64 << 20;
    l
}

impl TiffSlide {
    /// Opens a slide and reads its directories (not its pixels).
    ///
    /// # Errors
    /// Not a TIFF; no RGB level; a level compressed with a codec the reader lacks (JPEG
    /// 2000, old-style JPEG); tiles over [`MAX_CHUNK_SIDE`]; an implausible pixel size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SlideError> {
        let path = path.as_ref().to_path_buf();
        let open = |first_ifd: Option<u64>| {
            File::open(&path)
                .map(|f| SlideFile::new(BufReader::new(f), first_ifd))
                .map_err(|e| SlideError::io(&path, e))
        };
        let format_error = |e: tiff::TiffError| SlideError::Format {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut decoder = Decoder::new(open(None)?)
            .map_err(format_error)?
            .with_limits(limits());
        // (where: the directory's index in the main chain, or the offset of a SubIFD)
        let mut directories: Vec<(Where, Directory)> = Vec::new();
        for ifd in 0.. {
            if ifd > 0 {
                if !decoder.more_images() || ifd >= 1024 {
                    break;
                }
                match decoder.seek_to_image(ifd) {
                    Ok(()) => {}
                    // An associated image the tiff crate cannot parse is not a level.
                    Err(_) => continue,
                }
            }
            directories.push((
                Where::Chain(ifd),
                directory(&mut decoder).map_err(format_error)?,
            ));
            if ifd == 0 {
                // OME-TIFF's reduced levels: SubIFDs of the base level, each read as the first
                // directory of a view of the file whose header points at it.
                let subs = decoder
                    .find_tag(Tag::SubIfd)
                    .ok()
                    .flatten()
                    .and_then(|v| v.into_u64_vec().ok())
                    .unwrap_or_default();
                for offset in subs.into_iter().take(MAX_SUB_IFDS) {
                    let sub = Decoder::new(open(Some(offset))?)
                        .map(|d| d.with_limits(limits()))
                        .and_then(|mut d| directory(&mut d));
                    // A SubIFD the tiff crate cannot parse is not a level.
                    if let Ok(d) = sub {
                        directories.push((Where::SubIfd(offset), d));
                    }
                }
                decoder.seek_to_image(0).map_err(format_error)?;
            }
        }
        let (_, base) = directories
            .first()
            .cloned()
            .ok_or_else(|| SlideError::Format {
                path: path.clone(),
                message: "no image directory".into(),
            })?;
        let description = base.description.clone().unwrap_or_default();
        let format = if description.starts_with("Aperio") {
            "aperio-svs"
        } else if description.contains("<OME") {
            "ome-tiff"
        } else {
            "tiff"
        };
        // Level 0, then every later directory of the same aspect that is smaller than the
        // level before and tiled (Aperio's thumbnail, label and macro images are strips).
        // Candidates largest first (the chain's and the SubIFDs' levels together).
        let mut candidates: Vec<&(Where, Directory)> = directories.iter().skip(1).collect();
        candidates.sort_by_key(|(_, d)| std::cmp::Reverse(d.width));
        let mut chosen = vec![(Where::Chain(0), base.clone())];
        for (ifd, d) in candidates {
            let last = &chosen.last().expect("level 0").1;
            // The same downsample along both axes, up to rounding of the level's size.
            let expected_height = base.height as f64 * d.width as f64 / base.width as f64;
            let same_aspect =
                (d.height as f64 - expected_height).abs() <= (0.02 * expected_height).max(2.0);
            if d.tiled && d.width < last.width && d.height < last.height && same_aspect {
                chosen.push((*ifd, d.clone()));
            }
        }
        if base.width > MAX_SLIDE_SIDE || base.height > MAX_SLIDE_SIDE {
            return Err(SlideError::Unsupported {
                path: path.clone(),
                level: 0,
                what: format!(
                    "{}x{} pixels, over the {MAX_SLIDE_SIDE}-pixel side this reader accepts",
                    base.width, base.height
                ),
            });
        }
        let mpp = pixel_size(&path, &description, &base)?;
        let (mut levels, mut codings, mut decoders) = (Vec::new(), Vec::new(), Vec::new());
        for (level, (at, d)) in chosen.into_iter().enumerate() {
            let (info, coding) = d.into_level(&path, level, base.width, base.height)?;
            levels.push(info);
            codings.push(coding);
            let (first, ifd) = match at {
                Where::Chain(ifd) => (None, ifd),
                Where::SubIfd(offset) => (Some(offset), 0),
            };
            let mut d = Decoder::new(open(first)?)
                .map_err(format_error)?
                .with_limits(limits());
            d.seek_to_image(ifd).map_err(format_error)?;
            decoders.push(Mutex::new(d));
        }
        let file = File::open(&path).map_err(|e| SlideError::io(&path, e))?;
        Ok(TiffSlide {
            levels,
            codings,
            mpp,
            format,
            description,
            decoders,
            file: Mutex::new(file),
            cache: Mutex::new(ChunkCache::default()),
            path,
        })
    }

    /// Level 0's ImageDescription (Aperio's key–value line, OME-XML), empty if none.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Chunk `index` of `level` as RGB, from the cache or decoded.
    fn chunk(&self, level: usize, index: u32) -> Result<Chunk, SlideError> {
        let lock = || self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = lock().get((level, index)) {
            return Ok(c);
        }
        let (w, h, data) = self.read_chunk(level, index)?;
        let chunk = (w, h, Arc::new(data));
        lock().put((level, index), chunk.clone());
        Ok(chunk)
    }

    /// Decodes chunk `index` of `level` as RGB, `(width, height, pixels)`.
    fn read_chunk(&self, level: usize, index: u32) -> Result<(u32, u32, Vec<u8>), SlideError> {
        let l = &self.levels[level];
        let tile_error = |message: String| SlideError::Tile {
            path: self.path.clone(),
            level,
            tile: index as u64,
            message,
        };
        match &self.codings[level] {
            Coding::Jpeg {
                tables,
                offsets,
                byte_counts,
                photometric,
            } => {
                let (offset, count) = (offsets[index as usize], byte_counts[index as usize]);
                if count > MAX_CHUNK_BYTES {
                    return Err(tile_error(format!(
                        "{count} compressed bytes, over the limit of {MAX_CHUNK_BYTES}"
                    )));
                }
                let mut data = Vec::new();
                {
                    let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
                    // The bytes must be in the file before a buffer is sized for them.
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    if offset.checked_add(count).is_none_or(|end| end > len) {
                        return Err(tile_error(format!(
                            "{count} bytes at {offset}, past the end of the {len}-byte file"
                        )));
                    }
                    data.resize(count as usize, 0);
                    f.seek(SeekFrom::Start(offset))
                        .and_then(|_| f.read_exact(&mut data))
                        .map_err(|e| {
                            tile_error(format!("cannot read {count} bytes at {offset}: {e}"))
                        })?;
                }
                let stream = match tables {
                    Some(t) if t.len() >= 4 && data.len() >= 2 => {
                        let mut s = Vec::with_capacity(t.len() + data.len());
                        s.extend_from_slice(&t[..t.len() - 2]);
                        s.extend_from_slice(&data[2..]);
                        s
                    }
                    _ => data,
                };
                let (w, h, rgb) =
                    decode_jpeg(stream, *photometric, (l.chunk_width, l.chunk_height))
                        .map_err(tile_error)?;
                if w < l.chunk_width.min(l.width) || h == 0 {
                    return Err(tile_error(format!(
                        "JPEG tile is {w}x{h}, the level's tiles are {}x{}",
                        l.chunk_width, l.chunk_height
                    )));
                }
                Ok((w, h, rgb))
            }
            Coding::Tiff => {
                let mut d = self.decoders[level]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let colour = d.colortype().map_err(|e| tile_error(e.to_string()))?;
                let (w, h) = d.chunk_data_dimensions(index);
                let data = match d.read_chunk(index).map_err(|e| tile_error(e.to_string()))? {
                    DecodingResult::U8(v) => v,
                    _ => return Err(tile_error("not 8-bit samples".into())),
                };
                let channels = match colour {
                    ColorType::RGB(8) => 3,
                    ColorType::RGBA(8) => 4,
                    ColorType::Gray(8) => 1,
                    other => return Err(tile_error(format!("unsupported colour type {other:?}"))),
                };
                let n = w as usize * h as usize;
                if data.len() < n * channels {
                    return Err(tile_error(format!(
                        "{} bytes decoded for a {w}x{h} chunk of {channels} channel(s)",
                        data.len()
                    )));
                }
                let rgb = match channels {
                    3 => data[..n * 3].to_vec(),
                    4 => data[..n * 4]
                        .chunks_exact(4)
                        .flat_map(|p| {
                            // Transparent pixels are glass (white), as in the image reader.
                            let a = p[3] as u32;
                            [0, 1, 2].map(|c| ((p[c] as u32 * a + 255 * (255 - a)) / 255) as u8)
                        })
                        .collect(),
                    _ => data[..n].iter().flat_map(|&g| [g, g, g]).collect(),
                };
                Ok((w, h, rgb))
            }
        }
    }
}

impl SlideReader for TiffSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn levels(&self) -> &[SlideLevel] {
        &self.levels
    }

    fn mpp(&self) -> Option<f64> {
        self.mpp
    }

    fn format(&self) -> &'static str {
        self.format
    }

    fn read_region(
        &self,
        level: usize,
        x: i64,
        y: i64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, SlideError> {
        let l = check_region(self, level, x, y, width, height)?;
        let across = l.width.div_ceil(l.chunk_width) as i64;
        let mut out = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
        let (lw, lh) = (l.width as i64, l.height as i64);
        let (x0, y0) = (x.max(0), y.max(0));
        let (x1, y1) = ((x + width as i64).min(lw), (y + height as i64).min(lh));
        if x0 >= x1 || y0 >= y1 {
            return Ok(out);
        }
        let (cw, ch) = (l.chunk_width as i64, l.chunk_height as i64);
        for ty in (y0 / ch)..=((y1 - 1) / ch) {
            for tx in (x0 / cw)..=((x1 - 1) / cw) {
                let index = (ty * across + tx) as u32;
                let (w, h, data) = self.chunk(level, index)?;
                let (ox, oy) = (tx * cw, ty * ch);
                // The part of this chunk inside both the region and the level.
                let (cx0, cy0) = (ox.max(x0), oy.max(y0));
                let (cx1, cy1) = ((ox + w as i64).min(x1), (oy + h as i64).min(y1));
                for yy in cy0..cy1 {
                    let src = ((yy - oy) as usize * w as usize + (cx0 - ox) as usize) * 3;
                    let len = (cx1 - cx0) as usize * 3;
                    let dst = ((yy - y) as usize * width as usize + (cx0 - x) as usize) * 3;
                    out.as_mut()[dst..dst + len].copy_from_slice(&data[src..src + len]);
                }
            }
        }
        Ok(out)
    }
}

/// Where a directory is: its index in the main chain, or a SubIFD's offset.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Where {
    Chain(usize),
    SubIfd(u64),
}

/// The slide file as the `tiff` crate reads it: as it is, or with the header's offset of
/// the first directory replaced, so that the crate decodes a SubIFD (which it cannot seek
/// to) as its first image.
#[derive(Debug)]
struct SlideFile {
    file: BufReader<File>,
    pos: u64,
    /// The header's first-directory field (its position) and the bytes that replace it.
    first_ifd: Option<(u64, Vec<u8>)>,
}

impl SlideFile {
    fn new(mut file: BufReader<File>, first_ifd: Option<u64>) -> Self {
        let first_ifd = first_ifd.and_then(|offset| {
            let mut head = [0u8; 4];
            file.read_exact(&mut head).ok()?;
            file.seek(SeekFrom::Start(0)).ok()?;
            let little = &head[..2] == b"II";
            let big = u16::from_le_bytes([head[2], head[3]]) == 43
                || u16::from_be_bytes([head[2], head[3]]) == 43;
            let bytes = match (big, little) {
                (true, true) => offset.to_le_bytes().to_vec(),
                (true, false) => offset.to_be_bytes().to_vec(),
                (false, true) => u32::try_from(offset).ok()?.to_le_bytes().to_vec(),
                (false, false) => u32::try_from(offset).ok()?.to_be_bytes().to_vec(),
            };
            Some((if big { 8 } else { 4 }, bytes))
        });
        SlideFile {
            file,
            pos: 0,
            first_ifd,
        }
    }
}

impl Read for SlideFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some((at, bytes)) = &self.first_ifd {
            for (k, b) in bytes.iter().enumerate() {
                let i = at + k as u64;
                if i >= self.pos && i < self.pos + n as u64 {
                    buf[(i - self.pos) as usize] = *b;
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SlideFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

/// The tags of one directory that decide whether and how it is read.
#[derive(Debug, Clone)]
struct Directory {
    width: u32,
    height: u32,
    tiled: bool,
    chunk: (u32, u32),
    compression: u16,
    photometric: u16,
    samples: u16,
    bits: Vec<u16>,
    description: Option<String>,
    resolution: Option<(f64, u16)>,
    tables: Option<Vec<u8>>,
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
}

fn directory(d: &mut Decoder<SlideFile>) -> tiff::TiffResult<Directory> {
    let (width, height) = d.dimensions()?;
    let tiled = d.get_chunk_type() == ChunkType::Tile;
    let unsigned = |d: &mut Decoder<SlideFile>, tag| -> tiff::TiffResult<Option<u64>> {
        Ok(d.find_tag(tag)?.and_then(|v| v.into_u64().ok()))
    };
    let compression = unsigned(d, Tag::Compression)?.unwrap_or(1) as u16;
    let photometric = unsigned(d, Tag::PhotometricInterpretation)?.unwrap_or(2) as u16;
    let samples = unsigned(d, Tag::SamplesPerPixel)?.unwrap_or(1) as u16;
    let bits = d
        .find_tag(Tag::BitsPerSample)?
        .map(|v| v.into_u16_vec())
        .transpose()?
        .unwrap_or_else(|| vec![1]);
    let description = d
        .find_tag(Tag::ImageDescription)?
        .and_then(|v| v.into_string().ok());
    let resolution = match d.find_tag(Tag::XResolution)? {
        Some(tiff::decoder::ifd::Value::Rational(n, m)) if m > 0 => {
            let unit = unsigned(d, Tag::ResolutionUnit)?.unwrap_or(2) as u16;
            Some((n as f64 / m as f64, unit))
        }
        _ => None,
    };
    let (offsets_tag, counts_tag) = if tiled {
        (Tag::TileOffsets, Tag::TileByteCounts)
    } else {
        (Tag::StripOffsets, Tag::StripByteCounts)
    };
    let vec64 = |d: &mut Decoder<SlideFile>, tag| -> tiff::TiffResult<Vec<u64>> {
        Ok(d.find_tag(tag)?
            .map(|v| v.into_u64_vec())
            .transpose()?
            .unwrap_or_default())
    };
    let (offsets, byte_counts, tables) = if compression == JPEG {
        (
            vec64(d, offsets_tag)?,
            vec64(d, counts_tag)?,
            d.find_tag(Tag::JPEGTables)?
                .map(|v| v.into_u8_vec())
                .transpose()?,
        )
    } else {
        (Vec::new(), Vec::new(), None)
    };
    let chunk = if tiled {
        (
            unsigned(d, Tag::TileWidth)?.unwrap_or(0) as u32,
            unsigned(d, Tag::TileLength)?.unwrap_or(0) as u32,
        )
    } else {
        (
            width,
            (unsigned(d, Tag::RowsPerStrip)?.unwrap_or(height as u64)).min(height as u64) as u32,
        )
    };
    Ok(Directory {
        width,
        height,
        tiled,
        chunk,
        compression,
        photometric,
        samples,
        bits,
        description,
        resolution,
        tables,
        offsets,
        byte_counts,
    })
}

impl Directory {
    fn into_level(
        self,
        path: &Path,
        level: usize,
        base_width: u32,
        base_height: u32,
    ) -> Result<(SlideLevel, Coding), SlideError> {
        let unsupported = |what: String| SlideError::Unsupported {
            path: path.to_path_buf(),
            level,
            what,
        };
        if self.width == 0 || self.height == 0 {
            return Err(unsupported(format!(
                "{}x{} pixels",
                self.width, self.height
            )));
        }
        let (cw, ch) = self.chunk;
        if cw == 0 || ch == 0 || cw > MAX_CHUNK_SIDE || (self.tiled && ch > MAX_CHUNK_SIDE) {
            return Err(unsupported(format!(
                "tiles of {cw}x{ch} pixels (the reader takes sides of 1 to {MAX_CHUNK_SIDE}; \
                 a stripped image must be at most {MAX_CHUNK_SIDE} pixels wide)"
            )));
        }
        if !self.tiled && cw as u64 * ch as u64 > (MAX_CHUNK_SIDE as u64).pow(2) {
            return Err(unsupported(format!(
                "strips of {cw}x{ch} pixels (at most {MAX_CHUNK_SIDE}^2 pixels per strip)"
            )));
        }
        if self.bits.iter().any(|&b| b != 8) {
            return Err(unsupported(format!(
                "{:?} bits per sample (slides are read as 8-bit RGB)",
                self.bits
            )));
        }
        let across = self.width.div_ceil(cw);
        let down = self.height.div_ceil(ch);
        let coding = match self.compression {
            JPEG => {
                let n = across as usize * down as usize;
                if self.offsets.len() < n || self.byte_counts.len() < n {
                    return Err(unsupported(format!(
                        "{} tile offsets and {} byte counts for {n} tiles",
                        self.offsets.len(),
                        self.byte_counts.len()
                    )));
                }
                if !matches!((self.photometric, self.samples), (6 | 2, 3) | (1, 1)) {
                    return Err(unsupported(format!(
                        "JPEG with photometric interpretation {} and {} samples",
                        self.photometric, self.samples
                    )));
                }
                Coding::Jpeg {
                    tables: self.tables,
                    offsets: self.offsets,
                    byte_counts: self.byte_counts,
                    photometric: self.photometric,
                }
            }
            NONE | LZW | DEFLATE | OLD_DEFLATE | PACKBITS => {
                if !matches!(self.photometric, 1 | 2) || !matches!(self.samples, 1 | 3 | 4) {
                    return Err(unsupported(format!(
                        "photometric interpretation {} with {} samples (RGB, RGBA or grey \
                         expected)",
                        self.photometric, self.samples
                    )));
                }
                Coding::Tiff
            }
            c if JPEG_2000.contains(&c) => {
                return Err(unsupported(format!(
                    "JPEG 2000 compression ({c}), which the pure-Rust reader does not decode; \
                     build with `--features openslide` (OpenSlide reads it) or convert the \
                     slide (e.g. `vips tiffsave in.svs out.tif --tile --pyramid --compression \
                     jpeg`)"
                )))
            }
            OLD_JPEG => {
                return Err(unsupported(
                    "old-style JPEG compression (6), deprecated since TIFF 6.0".into(),
                ))
            }
            c => return Err(unsupported(format!("compression {c}"))),
        };
        let downsample =
            (base_width as f64 / self.width as f64 + base_height as f64 / self.height as f64) / 2.0;
        let info = SlideLevel {
            width: self.width,
            height: self.height,
            downsample,
            chunk_width: cw,
            chunk_height: ch,
        };
        Ok((info, coding))
    }
}

/// Microns per pixel at level 0 (see the module docs), `None` when the file does not say.
fn pixel_size(path: &Path, description: &str, base: &Directory) -> Result<Option<f64>, SlideError> {
    let found = if let Some(v) = aperio_field(description, "MPP") {
        Some((
            v.parse::<f64>().unwrap_or(f64::NAN),
            "the Aperio description's MPP",
        ))
    } else if description.contains("<OME") {
        ome_physical_size(description).map(|v| (v, "the OME-XML PhysicalSizeX"))
    } else {
        match base.resolution {
            Some((r, 3)) => Some((1e4 / r, "XResolution (pixels per centimetre)")),
            Some((r, 2)) => Some((25_400.0 / r, "XResolution (pixels per inch)")),
            _ => None,
        }
    };
    match found {
        None => Ok(None),
        Some((mpp, _)) if mpp.is_finite() && mpp >= PLAUSIBLE_MPP.0 && mpp <= PLAUSIBLE_MPP.1 => {
            Ok(Some(mpp))
        }
        // A TIFF writer's default resolution (72 dpi = 353 µm/px) says nothing about a slide.
        Some((_, source)) if source.starts_with("XResolution") => Ok(None),
        Some((mpp, source)) => Err(SlideError::PixelSize {
            path: path.to_path_buf(),
            message: format!(
                "{source} gives {mpp} µm per pixel, outside the plausible {}–{} µm; \
                 give the right value with --mpp",
                PLAUSIBLE_MPP.0, PLAUSIBLE_MPP.1
            ),
        }),
    }
}

/// The value of `key` in an Aperio description (`…|MPP = 0.2520|AppMag = 40|…`).
pub fn aperio_field<'a>(description: &'a str, key: &str) -> Option<&'a str> {
    description.split('|').skip(1).find_map(|field| {
        let (k, v) = field.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// `PhysicalSizeX` of the first OME `Pixels` element, in µm.
fn ome_physical_size(xml: &str) -> Option<f64> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let pixels = doc.descendants().find(|n| n.has_tag_name("Pixels"))?;
    let v: f64 = pixels.attribute("PhysicalSizeX")?.parse().ok()?;
    let scale = match pixels.attribute("PhysicalSizeXUnit").unwrap_or("µm") {
        "µm" | "um" | "micron" => 1.0,
        "nm" => 1e-3,
        "mm" => 1e3,
        _ => f64::NAN,
    };
    Some(v * scale)
}

/// Decodes one JPEG tile to RGB the way libtiff does for TIFF: the JPEG's components are
/// taken without colour conversion, then converted from YCbCr only when the TIFF says
/// `photometric` 6 (JFIF equations); RGB (2) is used as stored and grey (1) replicated. The
/// header's size is checked against `max` before the pixels are decoded.
fn decode_jpeg(
    stream: Vec<u8>,
    photometric: u16,
    max: (u32, u32),
) -> Result<(u32, u32, Vec<u8>), String> {
    use zune_core::{bytestream::ZCursor, options::DecoderOptions};
    let mut decoder = zune_jpeg::JpegDecoder::new(ZCursor::new(stream));
    decoder
        .decode_headers()
        .map_err(|e| format!("JPEG: {e:?}"))?;
    let (w, h) = decoder.dimensions().ok_or("JPEG: no frame header")?;
    if w > max.0 as usize || h > max.1 as usize {
        return Err(format!(
            "JPEG tile declares {w}x{h}, the level's tiles are {}x{}",
            max.0, max.1
        ));
    }
    let input = decoder.input_colorspace().ok_or("JPEG: no colour space")?;
    decoder.set_options(DecoderOptions::default().jpeg_set_out_colorspace(input));
    let raw = decoder.decode().map_err(|e| format!("JPEG: {e:?}"))?;
    let channels = input.num_components();
    if raw.len() < w * h * channels {
        return Err(format!("JPEG: {} bytes for {w}x{h}x{channels}", raw.len()));
    }
    let rgb: Vec<u8> = match (channels, photometric) {
        (1, _) => raw[..w * h].iter().flat_map(|&g| [g, g, g]).collect(),
        (3, 6) => raw[..w * h * 3]
            .chunks_exact(3)
            .flat_map(|p| {
                let (y, cb, cr) = (p[0] as f32, p[1] as f32 - 128.0, p[2] as f32 - 128.0);
                [
                    y + 1.402 * cr,
                    y - 0.344_136 * cb - 0.714_136 * cr,
                    y + 1.772 * cb,
                ]
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
            })
            .collect(),
        (3, _) => raw[..w * h * 3].to_vec(),
        (n, _) => return Err(format!("JPEG with {n} components")),
    };
    Ok((w as u32, h as u32, rgb))
}
