//! Reading and writing H&E images (PNG, JPEG, TIFF).

use std::path::Path;

use image::{ColorType, DynamicImage, ImageReader, RgbImage};

use super::{write_atomically, DataError};

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
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Greyscale handling.
    pub grey: GreyPolicy,
}

/// Reads an 8-bit RGB image from a PNG, JPEG or TIFF file.
///
/// RGBA drops its alpha channel, 16-bit and float images are scaled to 8 bits, and a
/// greyscale image is an error (see [`read_rgb_with`] to convert it instead). There is no
/// size limit beyond memory, so whole-slide tiles of any size load.
pub fn read_rgb(path: impl AsRef<Path>) -> Result<RgbImage, DataError> {
    read_rgb_with(path, ReadOptions::default())
}

/// [`read_rgb`] with explicit [`ReadOptions`].
pub fn read_rgb_with(path: impl AsRef<Path>, options: ReadOptions) -> Result<RgbImage, DataError> {
    let path = path.as_ref();
    let image = decode(path)?;
    let color = image.color();
    if !color.has_color() {
        match options.grey {
            GreyPolicy::Reject => {
                return Err(DataError::Greyscale {
                    path: path.to_path_buf(),
                    channels: color.channel_count(),
                })
            }
            GreyPolicy::Replicate => {
                return Ok(DynamicImage::ImageLuma8(image.to_luma8()).to_rgb8())
            }
        }
    }
    Ok(match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        // Drops alpha; scales 16-bit and float samples to 8 bits.
        other => other.to_rgb8(),
    })
}

/// Opens and decodes any image the `image` crate reads, with errors naming the file.
pub(crate) fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let mut reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    reader.no_limits();
    reader.decode().map_err(|e| match e {
        image::ImageError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            DataError::io(path, io)
        }
        other => DataError::decode(path, other),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nucseg-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn rgba_drops_alpha_and_16bit_scales() {
        let p = tmp("rgba.png");
        let rgba =
            image::RgbaImage::from_fn(3, 2, |x, y| image::Rgba([x as u8 * 10, y as u8, 7, 0]));
        rgba.save(&p).unwrap();
        let rgb = read_rgb(&p).unwrap();
        assert_eq!(rgb.get_pixel(2, 1).0, [20, 1, 7]);

        let p16 = tmp("rgb16.png");
        let img16: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
            image::ImageBuffer::from_fn(2, 1, |x, _| {
                image::Rgb([65535, 257 * 100, x as u16 * 257])
            });
        img16.save(&p16).unwrap();
        let rgb = read_rgb(&p16).unwrap();
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 100, 1]);
    }

    #[test]
    fn greyscale_is_an_error_unless_replicated() {
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
            },
        )
        .unwrap();
        assert_eq!(rgb.get_pixel(3, 0).0, [3, 3, 3]);
    }

    #[test]
    fn missing_and_truncated_files_are_errors_naming_the_file() {
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
