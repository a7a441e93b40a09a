//! Reading and writing H&E images (PNG, JPEG, TIFF), with a pixel budget checked before
//! any pixel is decoded.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, RgbImage};

use super::{write_atomically, DataError};

/// The default pixel budget of one decoded image: 2²⁸ pixels (16384 × 16384, 768 MiB as
/// 8-bit RGB). Larger files are refused before decoding, so a small file declaring a huge
/// size (a decompression bomb) cannot exhaust memory. PIL's `Image.MAX_IMAGE_PIXELS`
/// plays the same role (179 Mpx). Whole-slide images are read tile by tile, not whole.
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 28;

static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);

/// The process-wide pixel budget that [`ReadOptions::default`] and the label-map readers
/// use ([`DEFAULT_MAX_PIXELS`] unless [`set_max_pixels`] changed it).
pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(Ordering::Relaxed)
}

/// Sets the process-wide pixel budget (what a `--max-pixels` option does); values below 1
/// are taken as 1.
pub fn set_max_pixels(pixels: u64) {
    MAX_PIXELS.store(pixels.max(1), Ordering::Relaxed);
}

/// What to do with a greyscale file where an RGB H&E image is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GreyPolicy {
    /// Fail with [`DataError::Greyscale`]: a grey image is almost always the wrong file
    /// (a mask or a label map) rather than a stained slide.
    #[default]
    Reject,
    /// Copy the grey channel into R, G and B.
    Replicate,
}

/// Options for [`read_rgb_with`].
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Greyscale handling.
    pub grey: GreyPolicy,
    /// Largest image (width × height) decoded; larger files are a [`DataError::TooLarge`].
    pub max_pixels: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            grey: GreyPolicy::default(),
            max_pixels: max_pixels(),
        }
    }
}

/// What [`read_rgb_reporting`] did to turn a file into 8-bit RGB, for a note to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadReport {
    /// Bits per sample stored in the file (8, 16 or 32).
    pub file_bits: u16,
    /// For samples wider than 8 bits: the bit depth the values actually use (the smallest
    /// of 8, 10, 12, 14, 16 that holds the largest sample), which was scaled to 0–255.
    pub scaled_from_bits: Option<u8>,
    /// Pixels with alpha below full opacity, composited over a white (background) slide.
    pub translucent_pixels: u64,
    /// A greyscale file copied into R, G and B ([`GreyPolicy::Replicate`]).
    pub replicated_grey: bool,
}

impl ReadReport {
    /// Whether anything beyond a plain 8-bit RGB read happened.
    pub fn changed_anything(&self) -> bool {
        self.scaled_from_bits.is_some_and(|b| b < 16)
            || self.translucent_pixels > 0
            || self.replicated_grey
    }
}

impl fmt::Display for ReadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(bits) = self.scaled_from_bits {
            parts.push(format!(
                "{}-bit samples use {bits} bits, scaled from 0–{} to 0–255",
                self.file_bits,
                (1u32 << bits) - 1
            ));
        }
        if self.translucent_pixels > 0 {
            parts.push(format!(
                "{} transparent or translucent pixel(s) composited over white background",
                self.translucent_pixels
            ));
        }
        if self.replicated_grey {
            parts.push("greyscale copied into R, G and B".into());
        }
        if parts.is_empty() {
            parts.push("read as 8-bit RGB".into());
        }
        f.write_str(&parts.join("; "))
    }
}

/// Reads an 8-bit RGB image from a PNG, JPEG or TIFF file.
///
/// 16-bit samples are scaled by the range they use (12-bit data in a 16-bit file keeps its
/// contrast), transparent pixels become white background (alpha compositing over white),
/// float images are clamped to 0–1, and a greyscale image is an error (see
/// [`read_rgb_with`] to convert it instead). Files over the pixel budget ([`max_pixels`])
/// are refused before decoding. [`read_rgb_reporting`] also says what was converted.
pub fn read_rgb(path: impl AsRef<Path>) -> Result<RgbImage, DataError> {
    read_rgb_with(path, ReadOptions::default())
}

/// [`read_rgb`] with explicit [`ReadOptions`].
pub fn read_rgb_with(path: impl AsRef<Path>, options: ReadOptions) -> Result<RgbImage, DataError> {
    read_rgb_reporting(path, options).map(|(image, _)| image)
}

/// [`read_rgb_with`], also returning what was done to make 8-bit RGB of the file.
pub fn read_rgb_reporting(
    path: impl AsRef<Path>,
    options: ReadOptions,
) -> Result<(RgbImage, ReadReport), DataError> {
    let path = path.as_ref();
    let image = decode_within(path, options.max_pixels)?;
    let color = image.color();
    let mut report = ReadReport {
        file_bits: color.bits_per_pixel() / u16::from(color.channel_count()),
        ..ReadReport::default()
    };
    if !color.has_color() {
        match options.grey {
            GreyPolicy::Reject => {
                return Err(DataError::Greyscale {
                    path: path.to_path_buf(),
                    channels: color.channel_count(),
                })
            }
            GreyPolicy::Replicate => report.replicated_grey = true,
        }
    }
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma8(grey) => DynamicImage::ImageLuma8(grey).to_rgb8(),
        other if report.file_bits == 16 => {
            let rgba = other.to_rgba16();
            let max = rgba
                .pixels()
                .flat_map(|p| p.0[..3].iter().copied())
                .max()
                .unwrap_or(0);
            let bits = [8u8, 10, 12, 14, 16]
                .into_iter()
                .find(|&b| u32::from(max) < (1u32 << b))
                .unwrap_or(16);
            report.scaled_from_bits = Some(bits);
            let full = ((1u32 << bits) - 1) as f32;
            flatten(rgba.dimensions(), rgba.as_raw(), 65535, &mut report, |v| {
                f32::from(v) / full
            })
        }
        other => {
            let rgba = other.to_rgba8();
            flatten(rgba.dimensions(), rgba.as_raw(), 255, &mut report, |v| {
                f32::from(v) / 255.0
            })
        }
    };
    Ok((rgb, report))
}

/// Composites RGBA samples (`raw`, row-major, 4 per pixel) over white:
/// `c·α + 1·(1 − α)`, each colour sample mapped to 0–1 by `unit`; counts pixels with α
/// below `opaque`.
fn flatten<T: Copy + PartialOrd + Into<f32>>(
    (width, height): (u32, u32),
    raw: &[T],
    opaque: T,
    report: &mut ReadReport,
    unit: impl Fn(T) -> f32,
) -> RgbImage {
    let opaque_f: f32 = opaque.into();
    let mut translucent = 0;
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    for p in raw.chunks_exact(4) {
        if p[3] < opaque {
            translucent += 1;
        }
        let alpha = p[3].into() / opaque_f;
        for &c in &p[..3] {
            let v = unit(c).clamp(0.0, 1.0) * alpha + (1.0 - alpha);
            out.push((v * 255.0).round() as u8);
        }
    }
    report.translucent_pixels = translucent;
    RgbImage::from_raw(width, height, out).expect("3 samples per pixel")
}

/// Opens and decodes any image the `image` crate reads, within the process-wide pixel
/// budget, with errors naming the file.
pub(crate) fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    decode_within(path, max_pixels())
}

/// Opens `path`, reads its header, refuses it if it declares more than `max_pixels`
/// pixels, and only then decodes it (the decoder's own allocation limit set to what that
/// budget needs at 16 bytes per pixel).
pub(crate) fn decode_within(path: &Path, max_pixels: u64) -> Result<DynamicImage, DataError> {
    let mut reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    reader.no_limits();
    let image_err = |e: image::ImageError| match e {
        image::ImageError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            DataError::io(path, io)
        }
        other => DataError::decode(path, other),
    };
    let mut decoder = reader.into_decoder().map_err(image_err)?;
    let (width, height) = decoder.dimensions();
    check_pixels(path, width, height, max_pixels)?;
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(max_pixels.saturating_mul(16).saturating_add(64 << 20));
    decoder.set_limits(limits).map_err(image_err)?;
    DynamicImage::from_decoder(decoder).map_err(image_err)
}

/// [`DataError::TooLarge`] when `width × height` exceeds `max_pixels`.
pub(crate) fn check_pixels(
    path: &Path,
    width: u32,
    height: u32,
    max_pixels: u64,
) -> Result<(), DataError> {
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            max_pixels,
        });
    }
    Ok(())
}

/// Writes an RGB image as PNG, atomically (see the module docs of [`crate::data`]).
pub fn write_rgb_png(path: impl AsRef<Path>, image: &RgbImage) -> Result<(), DataError> {
    let path = path.as_ref();
    write_atomically(path, |w| {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(w)
            .write_image(
                image.as_raw(),
                image.width(),
                image.height(),
                ColorType::Rgb8.into(),
            )
            .map_err(|e| DataError::encode(path, e))
    })
}

/// The resize factors accepted before segmenting ([`resize_by`]): a quarter to four times.
pub const RESIZE_FACTORS: std::ops::RangeInclusive<f32> = 0.25..=4.0;

/// Why `factor` (named `what` in the message) is not a resize factor, if it is not one.
pub fn resize_problem(what: &str, factor: f32) -> Option<String> {
    (!(factor.is_finite() && RESIZE_FACTORS.contains(&factor))).then(|| {
        format!(
            "{what} {factor} must lie in [{}, {}]",
            RESIZE_FACTORS.start(),
            RESIZE_FACTORS.end()
        )
    })
}

/// `image` resized by `factor` (sides rounded, at least 1 px): Catmull–Rom when enlarging,
/// a triangle filter when shrinking.
pub fn resize_by(image: &RgbImage, factor: f32) -> RgbImage {
    use image::imageops::{resize, FilterType};
    let size = |v: u32| ((v as f32 * factor).round() as u32).max(1);
    let filter = if factor > 1.0 {
        FilterType::CatmullRom
    } else {
        FilterType::Triangle
    };
    resize(image, size(image.width()), size(image.height()), filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_composites_over_white_and_16bit_scales_by_its_range() {
        let dir = crate::test_util::temp_dir(
            "image-io-alpha-composites-over-white-and-16bit-scales-by-its-range",
        );
        let tmp = |name: &str| dir.join(name);
        let p = tmp("rgba.png");
        let rgba = image::RgbaImage::from_fn(3, 2, |x, y| {
            image::Rgba([x as u8 * 10, y as u8, 7, if x == 0 { 255 } else { 0 }])
        });
        rgba.save(&p).unwrap();
        let (rgb, report) = read_rgb_reporting(&p, ReadOptions::default()).unwrap();
        assert_eq!(
            rgb.get_pixel(0, 1).0,
            [0, 1, 7],
            "opaque pixels keep their colour"
        );
        assert_eq!(
            rgb.get_pixel(2, 1).0,
            [255, 255, 255],
            "transparent is background"
        );
        assert_eq!(report.translucent_pixels, 4);
        assert!(report.changed_anything());
        let half = tmp("half.png");
        image::RgbaImage::from_pixel(1, 1, image::Rgba([0, 100, 200, 128]))
            .save(&half)
            .unwrap();
        // c·α + 255·(1 − α) with α = 128/255.
        assert_eq!(read_rgb(&half).unwrap().get_pixel(0, 0).0, [127, 177, 227]);

        // Full 16-bit range: v / 257.
        let p16 = tmp("rgb16.png");
        let img16: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
            image::ImageBuffer::from_fn(2, 1, |x, _| {
                image::Rgb([65535, 257 * 100, x as u16 * 257])
            });
        img16.save(&p16).unwrap();
        let (rgb, report) = read_rgb_reporting(&p16, ReadOptions::default()).unwrap();
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 100, 1]);
        assert_eq!((report.file_bits, report.scaled_from_bits), (16, Some(16)));
        assert!(!report.changed_anything());

        // 12-bit data in a 16-bit file: 0–4095 maps to 0–255, not to near-black.
        let p12 = tmp("rgb12.png");
        let img12: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
            image::ImageBuffer::from_fn(2, 1, |x, _| image::Rgb([4095, 2048, x as u16 * 16]));
        img12.save(&p12).unwrap();
        let (rgb, report) = read_rgb_reporting(&p12, ReadOptions::default()).unwrap();
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 128, 1]);
        assert_eq!(report.scaled_from_bits, Some(12));
        assert!(report.to_string().contains("0–4095"), "{report}");
    }

    #[test]
    fn the_pixel_budget_is_checked_before_decoding() {
        let dir =
            crate::test_util::temp_dir("image-io-the-pixel-budget-is-checked-before-decoding");
        let tmp = |name: &str| dir.join(name);
        // A small image passes a budget of exactly its size and fails one pixel less.
        let small = tmp("small.png");
        write_rgb_png(&small, &RgbImage::new(10, 10)).unwrap();
        let with = |max_pixels| ReadOptions {
            max_pixels,
            ..ReadOptions::default()
        };
        assert!(read_rgb_with(&small, with(100)).is_ok());
        assert!(matches!(
            read_rgb_with(&small, with(99)).unwrap_err(),
            DataError::TooLarge { .. }
        ));
    }

    #[test]
    fn greyscale_is_an_error_unless_replicated() {
        let dir = crate::test_util::temp_dir("image-io-greyscale-is-an-error-unless-replicated");
        let tmp = |name: &str| dir.join(name);
        let p = tmp("grey.png");
        image::GrayImage::from_fn(4, 4, |x, _| image::Luma([x as u8]))
            .save(&p)
            .unwrap();
        let err = read_rgb(&p).unwrap_err();
        assert!(
            matches!(err, DataError::Greyscale { channels: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("grey.png"));
        let rgb = read_rgb_with(
            &p,
            ReadOptions {
                grey: GreyPolicy::Replicate,
                ..ReadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(rgb.get_pixel(3, 0).0, [3, 3, 3]);
    }

    #[test]
    fn missing_and_truncated_files_are_errors_naming_the_file() {
        let dir = crate::test_util::temp_dir(
            "image-io-missing-and-truncated-files-are-errors-naming-the-file",
        );
        let tmp = |name: &str| dir.join(name);
        let err = read_rgb(tmp("does-not-exist.png")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        assert!(err.to_string().contains("does-not-exist.png"), "{err}");

        let p = tmp("full.png");
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
        write_rgb_png(&p, &img).unwrap();
        assert_eq!(read_rgb(&p).unwrap(), img);
        let bytes = std::fs::read(&p).unwrap();
        let cut = tmp("truncated.png");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_rgb(&cut).unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("truncated.png"), "{err}");

        let junk = tmp("junk.tif");
        std::fs::write(&junk, b"this is not an image").unwrap();
        assert!(matches!(
            read_rgb(&junk).unwrap_err(),
            DataError::Decode { .. }
        ));
    }
}
