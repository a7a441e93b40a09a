//! Instance label maps: one `u32` per pixel, `0` background, any other value one nucleus.

use std::path::Path;

use image::DynamicImage;
use ndarray::{Array2, ArrayView2};

use super::{
    components::{connected_components, Connectivity},
    image_io::{check_pixels, decode, max_pixels},
    write_atomically, DataError,
};

/// An instance label map: `width × height` ids in row-major order; `0` is background,
/// every other value one nucleus. Ids need not be contiguous.
#[derive(Clone, PartialEq, Eq)]
pub struct LabelMap {
    width: u32,
    height: u32,
    labels: Vec<u32>,
}

impl std::fmt::Debug for LabelMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LabelMap({}x{}, {} instances)",
            self.width,
            self.height,
            self.count()
        )
    }
}

/// Per-instance geometry, as returned by [`LabelMap::stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceStats {
    /// The instance id.
    pub id: u32,
    /// Pixel count.
    pub area: u64,
    /// Bounding box `[x0, y0, x1, y1]`, `x1` and `y1` exclusive.
    pub bbox: [u32; 4],
    /// Centroid `(x, y)` in pixel-centre coordinates (pixel `(0, 0)` has centre `(0, 0)`).
    pub centroid: (f64, f64),
}

impl LabelMap {
    /// An all-background map.
    pub fn new(width: u32, height: u32) -> Self {
        LabelMap {
            width,
            height,
            labels: vec![0; width as usize * height as usize],
        }
    }

    /// Wraps a row-major buffer; its length must be `width * height`.
    pub fn from_vec(width: u32, height: u32, labels: Vec<u32>) -> Result<Self, DataError> {
        if labels.len() != width as usize * height as usize {
            return Err(DataError::BufferSize {
                width,
                height,
                len: labels.len(),
            });
        }
        Ok(LabelMap {
            width,
            height,
            labels,
        })
    }

    /// Builds a map from a function of `(x, y)`.
    pub fn from_fn(width: u32, height: u32, mut f: impl FnMut(u32, u32) -> u32) -> Self {
        let mut labels = Vec::with_capacity(width as usize * height as usize);
        for y in 0..height {
            for x in 0..width {
                labels.push(f(x, y));
            }
        }
        LabelMap {
            width,
            height,
            labels,
        }
    }

    /// From an `ndarray` array of shape `[height, width]`.
    pub fn from_array(array: Array2<u32>) -> Self {
        let (h, w) = array.dim();
        let labels = if array.is_standard_layout() {
            array.into_raw_vec_and_offset().0
        } else {
            array.iter().copied().collect()
        };
        LabelMap {
            width: w as u32,
            height: h as u32,
            labels,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The id at `(x, y)`. Panics when out of bounds, like slice indexing.
    #[inline]
    pub fn get(&self, x: u32, y: u32) -> u32 {
        self.labels[self.index(x, y)]
    }

    /// Sets the id at `(x, y)`.
    #[inline]
    pub fn set(&mut self, x: u32, y: u32, id: u32) {
        let i = self.index(x, y);
        self.labels[i] = id;
    }

    #[inline]
    fn index(&self, x: u32, y: u32) -> usize {
        assert!(
            x < self.width && y < self.height,
            "({x}, {y}) outside {}x{}",
            self.width,
            self.height
        );
        y as usize * self.width as usize + x as usize
    }

    /// The row-major ids.
    pub fn as_slice(&self) -> &[u32] {
        &self.labels
    }

    /// The row-major ids, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u32] {
        &mut self.labels
    }

    /// The row-major buffer.
    pub fn into_vec(self) -> Vec<u32> {
        self.labels
    }

    /// A `[height, width]` `ndarray` view.
    pub fn view(&self) -> ArrayView2<'_, u32> {
        ArrayView2::from_shape((self.height as usize, self.width as usize), &self.labels)
            .expect("buffer length is width * height")
    }

    /// The distinct non-zero ids, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.labels.iter().copied().filter(|&v| v != 0).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Number of instances (distinct non-zero ids).
    pub fn count(&self) -> usize {
        self.ids().len()
    }

    /// Largest id (0 for an empty map).
    pub fn max_id(&self) -> u32 {
        self.labels.iter().copied().max().unwrap_or(0)
    }

    /// Number of foreground pixels.
    pub fn foreground_area(&self) -> u64 {
        self.labels.iter().filter(|&&v| v != 0).count() as u64
    }

    /// The same instances with ids `1..=N`, numbered in increasing order of the old ids.
    pub fn relabeled(&self) -> LabelMap {
        let ids = self.ids();
        let labels = self
            .labels
            .iter()
            .map(|&v| {
                if v == 0 {
                    0
                } else {
                    ids.binary_search(&v).expect("id present") as u32 + 1
                }
            })
            .collect();
        LabelMap {
            width: self.width,
            height: self.height,
            labels,
        }
    }

    /// Area, bounding box and centroid of each instance, ascending by id.
    pub fn stats(&self) -> Vec<InstanceStats> {
        let ids = self.ids();
        let mut acc: Vec<(u64, [u32; 4], f64, f64)> =
            vec![(0, [u32::MAX, u32::MAX, 0, 0], 0.0, 0.0); ids.len()];
        let w = self.width as usize;
        for (i, &v) in self.labels.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let k = ids.binary_search(&v).expect("id present");
            let (x, y) = ((i % w) as u32, (i / w) as u32);
            let a = &mut acc[k];
            a.0 += 1;
            a.1[0] = a.1[0].min(x);
            a.1[1] = a.1[1].min(y);
            a.1[2] = a.1[2].max(x + 1);
            a.1[3] = a.1[3].max(y + 1);
            a.2 += x as f64;
            a.3 += y as f64;
        }
        ids.iter()
            .zip(acc)
            .map(|(&id, (area, bbox, sx, sy))| InstanceStats {
                id,
                area,
                bbox,
                centroid: (sx / area as f64, sy / area as f64),
            })
            .collect()
    }

    /// The sub-map `[x, x + width) × [y, y + height)`, clipped to the map.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> LabelMap {
        let x1 = (x.saturating_add(width)).min(self.width);
        let y1 = (y.saturating_add(height)).min(self.height);
        let (x0, y0) = (x.min(x1), y.min(y1));
        LabelMap::from_fn(x1 - x0, y1 - y0, |cx, cy| self.get(x0 + cx, y0 + cy))
    }
}

/// How to interpret a mask file read by [`read_instance_mask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskKind {
    /// Every distinct non-zero value is one instance.
    Instance,
    /// Any non-zero pixel is foreground; instances are its 8-connected components.
    Binary,
    /// Binary when the file has a single non-zero value (e.g. Naylor's 255 masks),
    /// instance otherwise.
    #[default]
    Auto,
}

/// Reads an instance label map: 8- or 16-bit greyscale PNG / TIFF, or 32-bit TIFF, within
/// the pixel budget ([`max_pixels`](crate::data::max_pixels)).
pub fn read_label_map(path: impl AsRef<Path>) -> Result<LabelMap, DataError> {
    let path = path.as_ref();
    if is_tiff(path) {
        return read_tiff_label_map(path);
    }
    let not_label = |message: String| DataError::NotALabelMap {
        path: path.to_path_buf(),
        message,
    };
    let image = decode(path)?;
    let (w, h) = (image.width(), image.height());
    let labels: Vec<u32> = match image {
        DynamicImage::ImageLuma8(img) => img.into_raw().into_iter().map(u32::from).collect(),
        DynamicImage::ImageLuma16(img) => img.into_raw().into_iter().map(u32::from).collect(),
        other => {
            return Err(not_label(format!(
                "pixel format {:?}; expected a single-channel 8-, 16- or 32-bit image",
                other.color()
            )))
        }
    };
    LabelMap::from_vec(w, h, labels)
}

/// Reads a nuclei mask as instances: a label map, or a binary mask split into 8-connected
/// components, as `kind` says. Naylor et al.'s masks (255 = nucleus) need `Binary` or `Auto`.
pub fn read_instance_mask(path: impl AsRef<Path>, kind: MaskKind) -> Result<LabelMap, DataError> {
    let map = read_label_map(path)?;
    let binary = match kind {
        MaskKind::Instance => false,
        MaskKind::Binary => true,
        MaskKind::Auto => {
            let mut first = 0u32;
            map.as_slice().iter().all(|&v| {
                if v == 0 {
                    return true;
                }
                if first == 0 {
                    first = v;
                }
                v == first
            })
        }
    };
    if binary {
        let fg: Vec<bool> = map.as_slice().iter().map(|&v| v != 0).collect();
        Ok(connected_components(
            map.width(),
            map.height(),
            &fg,
            Connectivity::Eight,
        ))
    } else {
        Ok(map)
    }
}

fn is_tiff(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()),
        Some(ref e) if e == "tif" || e == "tiff"
    )
}

fn read_tiff_label_map(path: &Path) -> Result<LabelMap, DataError> {
    use tiff::decoder::{Decoder, DecodingResult};
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let tiff_err = |e: tiff::TiffError| match e {
        tiff::TiffError::IoError(io) => DataError::decode(path, io),
        other => DataError::decode(path, other),
    };
    let mut decoder = Decoder::new(std::io::BufReader::new(file)).map_err(tiff_err)?;
    let (w, h) = decoder.dimensions().map_err(tiff_err)?;
    check_pixels(path, w, h, max_pixels())?;
    // The reader's default 256 MiB buffer would refuse a 32-bit map over ~67 Mpx, such as
    // `segment`'s own output for a large tile: the pixel budget is the limit instead.
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size =
        usize::try_from(u64::from(w) * u64::from(h) * 8).unwrap_or(usize::MAX);
    let mut decoder = decoder.with_limits(limits);
    let color = decoder.colortype().map_err(tiff_err)?;
    if !matches!(color, tiff::ColorType::Gray(_)) {
        return Err(DataError::NotALabelMap {
            path: path.to_path_buf(),
            message: format!("TIFF colour type {color:?}; expected single-channel grey"),
        });
    }
    let overflow = || DataError::NotALabelMap {
        path: path.to_path_buf(),
        message: "ids do not fit 32 bits or are negative".into(),
    };
    let labels: Vec<u32> = match decoder.read_image().map_err(tiff_err)? {
        DecodingResult::U8(v) => v.into_iter().map(u32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(u32::from).collect(),
        DecodingResult::U32(v) => v,
        DecodingResult::U64(v) => v
            .into_iter()
            .map(|x| u32::try_from(x).map_err(|_| overflow()))
            .collect::<Result<_, _>>()?,
        DecodingResult::I32(v) => v
            .into_iter()
            .map(|x| u32::try_from(x).map_err(|_| overflow()))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(DataError::NotALabelMap {
                path: path.to_path_buf(),
                message: format!("sample type {}", decoding_name(&other)),
            })
        }
    };
    LabelMap::from_vec(w, h, labels)
        .map_err(|_| DataError::decode(path, "pixel count does not match the size"))
}

fn decoding_name(r: &tiff::decoder::DecodingResult) -> &'static str {
    use tiff::decoder::DecodingResult::*;
    match r {
        U8(_) => "u8",
        U16(_) => "u16",
        U32(_) => "u32",
        U64(_) => "u64",
        F16(_) => "f16",
        F32(_) => "f32",
        F64(_) => "f64",
        I8(_) => "i8",
        I16(_) => "i16",
        I32(_) => "i32",
        I64(_) => "i64",
    }
}

/// Writes a label map, atomically: `.png` as 16-bit greyscale (an error if an id exceeds
/// 65535), `.tif` / `.tiff` as 32-bit greyscale (Deflate-compressed). Both read back
/// losslessly with [`read_label_map`].
pub fn write_label_map(path: impl AsRef<Path>, map: &LabelMap) -> Result<(), DataError> {
    let path = path.as_ref();
    let (w, h) = map.dimensions();
    if is_tiff(path) {
        return write_atomically(path, |out| {
            use tiff::encoder::{colortype::Gray32, Compression, DeflateLevel, TiffEncoder};
            TiffEncoder::new(out)
                .map_err(|e| DataError::encode(path, e))?
                .with_compression(Compression::Deflate(DeflateLevel::Balanced))
                .write_image::<Gray32>(w, h, map.as_slice())
                .map_err(|e| DataError::encode(path, e))
        });
    }
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(DataError::encode(
            path,
            "label maps are written as .png (16-bit) or .tif (32-bit)",
        ));
    }
    let max_id = map.max_id();
    if max_id > u16::MAX as u32 {
        return Err(DataError::TooManyInstances {
            path: path.to_path_buf(),
            max_id,
            count: map.count(),
        });
    }
    let raw: Vec<u16> = map.as_slice().iter().map(|&v| v as u16).collect();
    let bytes: Vec<u8> = raw.iter().flat_map(|v| v.to_ne_bytes()).collect();
    write_atomically(path, |out| {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(out)
            .write_image(&bytes, w, h, image::ExtendedColorType::L16)
            .map_err(|e| DataError::encode(path, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LabelMap {
        LabelMap::from_fn(37, 23, |x, y| {
            if (x / 5 + y / 4) % 3 == 0 {
                0
            } else {
                x * 100_000 + y * 7 + 1
            }
        })
    }

    #[test]
    fn png16_round_trip_and_overflow_error() {
        let dir = crate::test_util::temp_dir("label-map-png16-round-trip-and-overflow-error");
        let tmp = |name: &str| dir.join(name);
        let small = LabelMap::from_fn(17, 9, |x, y| (x * 3 + y * 991) % 65536);
        let p = tmp("lm.png");
        write_label_map(&p, &small).unwrap();
        assert_eq!(read_label_map(&p).unwrap(), small);

        let big = sample();
        let err = write_label_map(tmp("big.png"), &big).unwrap_err();
        assert!(matches!(err, DataError::TooManyInstances { .. }), "{err}");
        assert!(err.to_string().contains("big.png"));
        assert!(!tmp("big.png").exists(), "nothing written on error");
    }

    #[test]
    fn tiff32_round_trip() {
        let dir = crate::test_util::temp_dir("label-map-tiff32-round-trip");
        let tmp = |name: &str| dir.join(name);
        let map = LabelMap::from_fn(
            40,
            30,
            |x, y| if x > y { 0 } else { 70_000 + x * 100_000 + y },
        );
        let p = tmp("lm.tif");
        write_label_map(&p, &map).unwrap();
        assert_eq!(read_label_map(&p).unwrap(), map);
    }

    #[test]
    fn rgb_label_map_is_rejected() {
        let dir = crate::test_util::temp_dir("label-map-rgb-label-map-is-rejected");
        let tmp = |name: &str| dir.join(name);
        let p = tmp("rgb.png");
        image::RgbImage::new(3, 3).save(&p).unwrap();
        let err = read_label_map(&p).unwrap_err();
        assert!(matches!(err, DataError::NotALabelMap { .. }), "{err}");
    }

    #[test]
    fn relabel_stats_and_crop() {
        let map = LabelMap::from_vec(4, 2, vec![0, 9, 9, 0, 5, 0, 9, 0]).unwrap();
        assert_eq!(map.ids(), vec![5, 9]);
        let r = map.relabeled();
        assert_eq!(r.as_slice(), &[0, 2, 2, 0, 1, 0, 2, 0]);
        let stats = map.stats();
        assert_eq!(stats[1].id, 9);
        assert_eq!(stats[1].area, 3);
        assert_eq!(stats[1].bbox, [1, 0, 3, 2]);
        assert_eq!(stats[1].centroid, (5.0 / 3.0, 1.0 / 3.0));
        assert_eq!(map.crop(1, 0, 2, 5).as_slice(), &[9, 9, 0, 9]);
        assert_eq!(map.view()[[1, 2]], 9);
        assert_eq!(LabelMap::from_array(map.view().to_owned()), map);
    }

    #[test]
    fn binary_mask_splits_into_components() {
        let dir = crate::test_util::temp_dir("label-map-binary-mask-splits-into-components");
        let tmp = |name: &str| dir.join(name);
        let p = tmp("binary.png");
        let mask = image::GrayImage::from_fn(10, 4, |x, y| {
            image::Luma([
                if (x < 3 && y < 2) || (x > 5 && y > 1) || (x == 4 && y == 3) {
                    255
                } else {
                    0
                },
            ])
        });
        mask.save(&p).unwrap();
        let auto = read_instance_mask(&p, MaskKind::Auto).unwrap();
        assert_eq!(auto.count(), 3);
        let as_is = read_instance_mask(&p, MaskKind::Instance).unwrap();
        assert_eq!(as_is.count(), 1);
    }

    #[test]
    fn wrong_buffer_size_is_an_error() {
        assert!(matches!(
            LabelMap::from_vec(3, 3, vec![0; 8]),
            Err(DataError::BufferSize { len: 8, .. })
        ));
    }
}
