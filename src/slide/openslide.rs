//! Vendor formats (Hamamatsu NDPI, MIRAX, Leica SCN, Ventana, Philips TIFF, JPEG 2000 SVS,
//! …) through the OpenSlide C library, behind the `openslide` feature (Debian:
//! `libopenslide-dev`); the default build needs no C library. The binding is the handful
//! of functions of `openslide.h` this reader calls, declared here.

use std::{
    ffi::{c_char, CStr, CString},
    path::{Path, PathBuf},
};

use image::RgbImage;

use super::{SlideError, SlideLevel, SlideReader, PLAUSIBLE_MPP};

#[repr(C)]
struct OpenSlideT {
    _private: [u8; 0],
}

#[link(name = "openslide")]
extern "C" {
    fn openslide_open(filename: *const c_char) -> *mut OpenSlideT;
    fn openslide_close(osr: *mut OpenSlideT);
    fn openslide_get_error(osr: *mut OpenSlideT) -> *const c_char;
    fn openslide_get_level_count(osr: *mut OpenSlideT) -> i32;
    fn openslide_get_level_dimensions(osr: *mut OpenSlideT, level: i32, w: *mut i64, h: *mut i64);
    fn openslide_get_level_downsample(osr: *mut OpenSlideT, level: i32) -> f64;
    fn openslide_get_property_value(osr: *mut OpenSlideT, name: *const c_char) -> *const c_char;
    fn openslide_read_region(
        osr: *mut OpenSlideT,
        dest: *mut u32,
        x: i64,
        y: i64,
        level: i32,
        w: i64,
        h: i64,
    );
}

/// A slide opened by OpenSlide. OpenSlide's functions are thread-safe except closing,
/// which only `Drop` does.
#[derive(Debug)]
pub struct OpenSlideReader {
    osr: *mut OpenSlideT,
    path: PathBuf,
    levels: Vec<SlideLevel>,
    mpp: Option<f64>,
    vendor: String,
}

// SAFETY: OpenSlide documents every function but `openslide_close` as thread-safe, and
// the handle is closed once, in `Drop`, when no other reference exists.
unsafe impl Send for OpenSlideReader {}
unsafe impl Sync for OpenSlideReader {}

impl Drop for OpenSlideReader {
    fn drop(&mut self) {
        // SAFETY: `osr` came from `openslide_open`, is non-null and is closed only here.
        unsafe { openslide_close(self.osr) }
    }
}

impl OpenSlideReader {
    /// Opens `path` with OpenSlide.
    ///
    /// # Errors
    /// A format OpenSlide does not recognize, a file it cannot read, an implausible
    /// `openslide.mpp-x`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SlideError> {
        let path = path.as_ref().to_path_buf();
        let fail = |message: String| SlideError::Format {
            path: path.clone(),
            message,
        };
        let name = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| fail("a NUL in the path".into()))?;
        // SAFETY: `name` is a valid C string for the duration of the call.
        let osr = unsafe { openslide_open(name.as_ptr()) };
        if osr.is_null() {
            return Err(fail("OpenSlide does not recognize the format".into()));
        }
        let mut reader = OpenSlideReader {
            osr,
            path: path.clone(),
            levels: Vec::new(),
            mpp: None,
            vendor: String::new(),
        };
        reader.check().map_err(fail)?;
        // SAFETY: a valid handle; out-pointers point to locals.
        let count = unsafe { openslide_get_level_count(osr) };
        let (mut w0, mut h0) = (0i64, 0i64);
        for level in 0..count.max(0) {
            let (mut w, mut h) = (0i64, 0i64);
            unsafe { openslide_get_level_dimensions(osr, level, &mut w, &mut h) };
            let downsample = unsafe { openslide_get_level_downsample(osr, level) };
            if level == 0 {
                (w0, h0) = (w, h);
            }
            if w <= 0 || h <= 0 || w > u32::MAX as i64 || h > u32::MAX as i64 {
                return Err(fail(format!("level {level} is {w}x{h}")));
            }
            reader.levels.push(SlideLevel {
                width: w as u32,
                height: h as u32,
                downsample,
                chunk_width: 512,
                chunk_height: 512,
            });
        }
        reader.check().map_err(fail)?;
        if reader.levels.is_empty() || w0 <= 0 || h0 <= 0 {
            return Err(fail("no level".into()));
        }
        reader.vendor = reader.property("openslide.vendor").unwrap_or_default();
        reader.mpp = match reader.property("openslide.mpp-x") {
            None => None,
            Some(v) => match v.parse::<f64>() {
                Ok(m) if m.is_finite() && m >= PLAUSIBLE_MPP.0 && m <= PLAUSIBLE_MPP.1 => Some(m),
                _ => {
                    return Err(SlideError::PixelSize {
                        path,
                        message: format!(
                            "OpenSlide's openslide.mpp-x is {v}, not a plausible pixel size; \
                             give the right value with --mpp"
                        ),
                    })
                }
            },
        };
        Ok(reader)
    }

    /// OpenSlide's vendor name (`aperio`, `hamamatsu`, `generic-tiff`, …).
    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// A property of the slide (`openslide.mpp-x`, `aperio.AppMag`, …).
    pub fn property(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        // SAFETY: valid handle and C string; the returned string is owned by OpenSlide and
        // copied before the handle can close.
        let value = unsafe { openslide_get_property_value(self.osr, name.as_ptr()) };
        (!value.is_null()).then(|| {
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned()
        })
    }

    /// OpenSlide's sticky error, if one happened.
    fn check(&self) -> Result<(), String> {
        // SAFETY: valid handle; the message is copied at once.
        let error = unsafe { openslide_get_error(self.osr) };
        if error.is_null() {
            Ok(())
        } else {
            Err(format!(
                "OpenSlide: {}",
                unsafe { CStr::from_ptr(error) }.to_string_lossy()
            ))
        }
    }
}

impl SlideReader for OpenSlideReader {
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
        "openslide"
    }

    fn read_region(
        &self,
        level: usize,
        x: i64,
        y: i64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, SlideError> {
        let l = super::reader::check_region(self, level, x, y, width, height)?;
        let mut argb = vec![0u32; width as usize * height as usize];
        // OpenSlide takes the top-left corner in level-0 coordinates.
        let (x0, y0) = (
            (x as f64 * l.downsample).round() as i64,
            (y as f64 * l.downsample).round() as i64,
        );
        // SAFETY: `argb` holds exactly `width × height` pixels, as the call writes.
        unsafe {
            openslide_read_region(
                self.osr,
                argb.as_mut_ptr(),
                x0,
                y0,
                level as i32,
                width as i64,
                height as i64,
            )
        };
        self.check().map_err(|message| SlideError::Tile {
            path: self.path.clone(),
            level,
            tile: 0,
            message,
        })?;
        // Premultiplied ARGB over white: transparent pixels (outside the scanned area) are glass.
        let rgb = argb
            .iter()
            .flat_map(|&p| {
                let a = (p >> 24) as u8;
                [16, 8, 0].map(|s| ((p >> s) as u8).saturating_add(255 - a))
            })
            .collect();
        Ok(RgbImage::from_raw(width, height, rgb).expect("width × height × 3 bytes"))
    }
}
