//! RoIAlign (Mask R-CNN, He et al. 2017, Sec. 3): bilinear sampling of a fixed grid inside
//! each region of interest, averaged per bin, with no quantization of box coordinates; and
//! its multi-scale form (FPN, Lin et al. 2017, eq. 1) that reads each box from the pyramid
//! level matching its size.
//!
//! Burn has no RoIAlign op; this one is built from Burn tensor ops, so it runs on every
//! backend and is differentiable with respect to the features: by default as two small
//! matrix products per box (bilinear sampling is separable), or with
//! [`Tensor::grid_sample_2d`] ([`RoiAlignMethod`]). It reproduces
//! torchvision's `roi_align` (`aligned = true`: the half-pixel offset of Detectron2, which
//! makes a box `[x1, y1, x2, y2]` in continuous coordinates sample exactly its pixels).
//! Inference, which needs no gradient, uses a third form with the same values:
//! [`RoiAlign::forward_host`] on a channels-last host copy of the pyramid
//! ([`HostPyramid`]), 7× faster for thousands of proposals on the CPU.

use burn::{
    config::Config,
    tensor::{
        module::avg_pool2d,
        ops::{AvgPoolOptions, GridSampleOptions, GridSamplePaddingMode, InterpolateMode},
        Int, Tensor, TensorData,
    },
};

use super::box_ops::BoxXyxy;
use crate::model::ModelError;

/// Settings of [`RoiAlign`]; the defaults are Mask R-CNN's box branch (7×7). Use
/// `with_output_size([14, 14])` for the mask branch.
#[derive(Config, Debug, PartialEq)]
pub struct RoiAlignConfig {
    /// Output `[height, width]` per box.
    #[config(default = "[7, 7]")]
    pub output_size: [usize; 2],
    /// Sampling points per bin along each axis (torchvision's `sampling_ratio`).
    #[config(default = 2)]
    pub sampling_ratio: usize,
    /// Half-pixel offset (Detectron2's `aligned = True`).
    #[config(default = true)]
    pub aligned: bool,
    /// FPN eq. (1): a box of side `canonical_scale` maps to `canonical_level`.
    #[config(default = 224.0)]
    pub canonical_scale: f32,
    /// FPN eq. (1)'s `k0`.
    #[config(default = 4)]
    pub canonical_level: usize,
    /// Finest pyramid level used (P2).
    #[config(default = 2)]
    pub min_level: usize,
    /// Coarsest pyramid level used (P5).
    #[config(default = 5)]
    pub max_level: usize,
    /// How the bilinear samples are computed (both give the same values).
    #[config(default = "RoiAlignMethod::Separable")]
    pub method: RoiAlignMethod,
}

/// Two exact implementations of the same RoIAlign.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum RoiAlignMethod {
    /// Bilinear sampling factorizes into a row interpolation and a column interpolation:
    /// each box's output is `Wy · F_window · Wxᵀ`, two small matrix products on the feature
    /// window under the box (gathered with `select`). Differentiation goes through
    /// `matmul` and `select`, so it is cheap on every backend (7× faster than
    /// `GridSample` for training on the CPU, see `benches/roi_align.rs`).
    Separable,
    /// One `grid_sample_2d` over all sampling points (Burn's own bilinear sampler). On an
    /// autodiff device Burn evaluates it through a generic decomposition, which is slow.
    GridSample,
}

/// Multi-scale RoIAlign over pyramid levels `min_level..=max_level` (strides `2^level`).
/// It has no parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RoiAlign {
    /// Its settings.
    pub config: RoiAlignConfig,
}

impl RoiAlignConfig {
    /// Builds the op; sizes must be non-zero and levels ordered.
    pub fn init(&self) -> Result<RoiAlign, ModelError> {
        if self.output_size.contains(&0) || self.sampling_ratio == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "RoIAlign output size {:?} and sampling ratio {} must be positive",
                self.output_size, self.sampling_ratio
            )));
        }
        if self.min_level > self.max_level {
            return Err(ModelError::InvalidConfig(format!(
                "RoIAlign levels {}..={} are empty",
                self.min_level, self.max_level
            )));
        }
        Ok(RoiAlign {
            config: self.clone(),
        })
    }
}

/// Sample positions of one box on a feature map: for bin `(i, j)` and sample `(sy, sx)`,
/// the coordinates in feature pixels (centre of pixel `k` at `k`).
fn sample_coords(b: &BoxXyxy, scale: f32, c: &RoiAlignConfig) -> (Vec<f32>, Vec<f32>) {
    let offset = if c.aligned { 0.5 } else { 0.0 };
    let (x0, y0) = (b[0] * scale - offset, b[1] * scale - offset);
    let (mut w, mut h) = ((b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
    if !c.aligned {
        w = w.max(1.0);
        h = h.max(1.0);
    }
    let [ph, pw] = c.output_size;
    let s = c.sampling_ratio;
    let (bw, bh) = (w / pw as f32, h / ph as f32);
    let xs = (0..pw * s)
        .map(|k| x0 + (k / s) as f32 * bw + ((k % s) as f32 + 0.5) * bw / s as f32)
        .collect();
    let ys = (0..ph * s)
        .map(|k| y0 + (k / s) as f32 * bh + ((k % s) as f32 + 0.5) * bh / s as f32)
        .collect();
    (xs, ys)
}

impl RoiAlign {
    /// The pyramid level of a box (FPN eq. 1): `floor(k0 + log2(√area / 224))`, clamped to
    /// `min_level..=max_level`.
    pub fn level_of(&self, b: &BoxXyxy) -> usize {
        let c = &self.config;
        let side = ((b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)).sqrt();
        let k =
            (c.canonical_level as f32 + (side / c.canonical_scale + 1e-8).log2() + 1e-6).floor();
        (k.max(c.min_level as f32) as usize).clamp(c.min_level, c.max_level)
    }

    /// RoIAlign of boxes on one feature map.
    ///
    /// # Shapes
    /// `features: [N, C, H, W]`; `boxes[b]` are the boxes of image `b` (`boxes.len() == N`),
    /// in image pixels; `spatial_scale` = feature size / image size (e.g. 1/4 for P2).
    /// Returns `[K, C, out_h, out_w]`, K = total number of boxes, in image order.
    pub fn forward_level(
        &self,
        features: Tensor<4>,
        boxes: &[Vec<BoxXyxy>],
        spatial_scale: f32,
    ) -> Tensor<4> {
        match self.config.method {
            RoiAlignMethod::Separable => {
                self.forward_level_separable(features, boxes, spatial_scale)
            }
            RoiAlignMethod::GridSample => {
                self.forward_level_grid_sample(features, boxes, spatial_scale)
            }
        }
    }

    fn forward_level_separable(
        &self,
        features: Tensor<4>,
        boxes: &[Vec<BoxXyxy>],
        spatial_scale: f32,
    ) -> Tensor<4> {
        let [n, c, h, w] = features.dims();
        assert_eq!(boxes.len(), n, "one box list per image");
        let [ph, pw] = self.config.output_size;
        let device = features.device();
        let mut outputs = Vec::new();
        for (b, image_boxes) in boxes.iter().enumerate() {
            if image_boxes.is_empty() {
                continue;
            }
            let flat = features
                .clone()
                .slice([b..b + 1, 0..c, 0..h, 0..w])
                .reshape([c, h * w]);
            let weights: Vec<(AxisWeights, AxisWeights)> = image_boxes
                .iter()
                .map(|bx| {
                    let (xs, ys) = sample_coords(bx, spatial_scale, &self.config);
                    (axis_weights(&ys, h, ph), axis_weights(&xs, w, pw))
                })
                .collect();
            // Chunks of boxes sharing one window size, bounded in memory.
            let mut start = 0;
            while start < weights.len() {
                let mut end = start;
                let (mut wy, mut wx) = (1, 1);
                while end < weights.len() {
                    let (ny, nx) = (wy.max(weights[end].0.len), wx.max(weights[end].1.len));
                    if end > start && (end + 1 - start) * c * ny * nx > (1 << 24) {
                        break;
                    }
                    (wy, wx) = (ny, nx);
                    end += 1;
                }
                let k = end - start;
                let mut idx = Vec::with_capacity(k * wy * wx);
                let mut my = vec![0.0f32; k * ph * wy];
                let mut mx = vec![0.0f32; k * wx * pw];
                for (r, (ay, ax)) in weights[start..end].iter().enumerate() {
                    let y0 = ay.origin.min(h - wy);
                    let x0 = ax.origin.min(w - wx);
                    for yy in 0..wy {
                        for xx in 0..wx {
                            idx.push(((y0 + yy) * w + x0 + xx) as i64);
                        }
                    }
                    for &(p, row, v) in &ay.taps {
                        my[(r * ph + p) * wy + (row - y0)] += v;
                    }
                    for &(p, col, v) in &ax.taps {
                        mx[(r * wx + (col - x0)) * pw + p] += v;
                    }
                }
                let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [k * wy * wx]), &device);
                let window = flat
                    .clone()
                    .select(1, idx)
                    .reshape([c, k, wy, wx])
                    .swap_dims(0, 1); // [k, C, wy, wx]
                let my = Tensor::<4>::from_data(TensorData::new(my, [k, 1, ph, wy]), &device);
                let mx = Tensor::<4>::from_data(TensorData::new(mx, [k, 1, wx, pw]), &device);
                outputs.push(my.matmul(window.matmul(mx))); // [k, C, ph, pw]
                start = end;
            }
        }
        if outputs.is_empty() {
            return Tensor::<4>::empty([0, c, ph, pw], &device);
        }
        Tensor::cat(outputs, 0)
    }

    fn forward_level_grid_sample(
        &self,
        features: Tensor<4>,
        boxes: &[Vec<BoxXyxy>],
        spatial_scale: f32,
    ) -> Tensor<4> {
        let [n, c, h, w] = features.dims();
        assert_eq!(boxes.len(), n, "one box list per image");
        let [ph, pw] = self.config.output_size;
        let s = self.config.sampling_ratio;
        let device = features.device();
        let mut outputs = Vec::new();
        for (b, image_boxes) in boxes.iter().enumerate() {
            let k = image_boxes.len();
            if k == 0 {
                continue;
            }
            // grid: [1, K·ph·s, pw·s, 2], normalized so that grid_sample (align_corners =
            // false) reads feature pixel p at g = (2p + 1) / size − 1.
            let mut grid = Vec::with_capacity(k * ph * s * pw * s * 2);
            let mut valid = Vec::with_capacity(k * ph * s * pw * s);
            let mut any_invalid = false;
            for bx in image_boxes {
                let (xs, ys) = sample_coords(bx, spatial_scale, &self.config);
                for &y in &ys {
                    for &x in &xs {
                        grid.push((2.0 * x + 1.0) / w as f32 - 1.0);
                        grid.push((2.0 * y + 1.0) / h as f32 - 1.0);
                        // torchvision: samples beyond one pixel outside the map read 0.
                        let ok = y >= -1.0 && y <= h as f32 && x >= -1.0 && x <= w as f32;
                        any_invalid |= !ok;
                        valid.push(if ok { 1.0f32 } else { 0.0 });
                    }
                }
            }
            let grid =
                Tensor::<4>::from_data(TensorData::new(grid, [1, k * ph * s, pw * s, 2]), &device);
            let image = features.clone().slice([b..b + 1, 0..c, 0..h, 0..w]);
            // Border padding = torchvision's clamping of samples in (-1, 0) and (size-1, size).
            let mut sampled = image.grid_sample_2d(
                grid,
                GridSampleOptions::new(InterpolateMode::Bilinear)
                    .with_padding_mode(GridSamplePaddingMode::Border)
                    .with_align_corners(false),
            ); // [1, C, K·ph·s, pw·s]
            if any_invalid {
                let mask = Tensor::<4>::from_data(
                    TensorData::new(valid, [1, 1, k * ph * s, pw * s]),
                    &device,
                );
                sampled = sampled * mask;
            }
            let pooled = avg_pool2d(sampled, AvgPoolOptions::new([s, s])); // [1, C, K·ph, pw]
            outputs.push(pooled.reshape([c, k, ph, pw]).swap_dims(0, 1));
        }
        if outputs.is_empty() {
            return Tensor::<4>::empty([0, c, ph, pw], &device);
        }
        Tensor::cat(outputs, 0)
    }

    /// Multi-scale RoIAlign: each box is read from the level [`level_of`](Self::level_of)
    /// assigns it.
    ///
    /// # Shapes
    /// `features[l]` is level `min_level + l`, `[N, C, H_l, W_l]` with stride `2^level`
    /// (extra coarser maps such as P6 are ignored); `boxes[b]` are image `b`'s boxes.
    /// Returns `[K, C, out_h, out_w]` in the order of the boxes (image by image).
    pub fn forward(&self, features: &[Tensor<4>], boxes: &[Vec<BoxXyxy>]) -> Tensor<4> {
        let c = &self.config;
        let n_levels = c.max_level - c.min_level + 1;
        assert!(
            features.len() >= n_levels,
            "need {n_levels} pyramid levels, got {}",
            features.len()
        );
        let [n, ch, _, _] = features[0].dims();
        let [ph, pw] = c.output_size;
        let device = features[0].device();
        let total: usize = boxes.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Tensor::<4>::empty([0, ch, ph, pw], &device);
        }
        // Boxes of each level, with their position in the output.
        let mut per_level: Vec<Vec<Vec<BoxXyxy>>> = vec![vec![Vec::new(); n]; n_levels];
        let mut order: Vec<Vec<usize>> = vec![Vec::new(); n_levels];
        let mut k = 0;
        for (b, image_boxes) in boxes.iter().enumerate() {
            for bx in image_boxes {
                let l = self.level_of(bx) - c.min_level;
                per_level[l][b].push(*bx);
                order[l].push(k);
                k += 1;
            }
        }
        let mut pieces = Vec::new();
        let mut positions = Vec::new();
        for (l, level_boxes) in per_level.iter().enumerate() {
            if order[l].is_empty() {
                continue;
            }
            let scale = 1.0 / (1usize << (c.min_level + l)) as f32;
            pieces.push(self.forward_level(features[l].clone(), level_boxes, scale));
            positions.extend(order[l].iter().copied());
        }
        let stacked = Tensor::cat(pieces, 0);
        if positions.iter().enumerate().all(|(i, &p)| i == p) {
            return stacked;
        }
        // Undo the grouping by level: output row positions[i] holds stacked row i.
        let mut inverse = vec![0i64; total];
        for (i, &p) in positions.iter().enumerate() {
            inverse[p] = i as i64;
        }
        let idx =
            Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(inverse, [total]), &device);
        stacked.select(0, idx)
    }
}

/// Feature maps read to the host once, channels last, for [`RoiAlign::forward_host`]: the
/// inference form of RoIAlign, where no gradient is needed. Reading the pyramid costs one
/// copy of P2–P5; after it every box is a few vectorized multiply-adds over its channels
/// instead of a gather and two tiny matrix products per box and channel on the device.
#[derive(Debug, Clone)]
pub struct HostPyramid {
    /// `[N, H, W, C]` per level, finest first.
    levels: Vec<HostLevel>,
    device: burn::tensor::Device,
}

#[derive(Debug, Clone)]
struct HostLevel {
    dims: [usize; 4],
    data: Vec<f32>,
}

impl HostPyramid {
    /// Reads `features` (`[N, C, H_l, W_l]` per level, finest first) to the host.
    pub fn read(features: &[Tensor<4>]) -> Self {
        let device = features
            .first()
            .map(|f| f.device())
            .unwrap_or_else(burn::tensor::Device::flex);
        let levels = features
            .iter()
            .map(|f| {
                let [n, c, h, w] = f.dims();
                let data = f
                    .clone()
                    .permute([0, 2, 3, 1])
                    .try_into_vec_as::<f32>()
                    .expect("feature maps are readable");
                HostLevel {
                    dims: [n, h, w, c],
                    data,
                }
            })
            .collect();
        HostPyramid { levels, device }
    }
}

impl RoiAlign {
    /// Multi-scale RoIAlign on the host, for inference: the same values as
    /// [`forward`](Self::forward) (up to float summation order), computed box by box in
    /// parallel, with no gradient.
    ///
    /// # Shapes
    /// `pyramid` holds levels `min_level..=max_level` (more are ignored), `boxes[b]` are image
    /// `b`'s boxes. Returns `[K, C, out_h, out_w]` in the order of the boxes, on the device
    /// the pyramid was read from.
    pub fn forward_host(&self, pyramid: &HostPyramid, boxes: &[Vec<BoxXyxy>]) -> Tensor<4> {
        use rayon::prelude::*;
        let cfg = &self.config;
        let n_levels = cfg.max_level - cfg.min_level + 1;
        assert!(
            pyramid.levels.len() >= n_levels,
            "need {n_levels} pyramid levels, got {}",
            pyramid.levels.len()
        );
        let [n, _, _, ch] = pyramid.levels[0].dims;
        assert_eq!(boxes.len(), n, "one box list per image");
        let [ph, pw] = cfg.output_size;
        let flat: Vec<(usize, BoxXyxy)> = boxes
            .iter()
            .enumerate()
            .flat_map(|(b, bs)| bs.iter().map(move |bx| (b, *bx)))
            .collect();
        let per_box = ch * ph * pw;
        let mut out = vec![0.0f32; flat.len() * per_box];
        out.par_chunks_mut(per_box.max(1))
            .zip(flat.par_iter())
            .for_each_init(Vec::new, |scratch, (dst, &(b, bx))| {
                let l = self.level_of(&bx) - cfg.min_level;
                let level = &pyramid.levels[l];
                let scale = 1.0 / (1usize << (cfg.min_level + l)) as f32;
                align_box_channels_last(level, b, &bx, scale, cfg, scratch, dst);
            });
        Tensor::<4>::from_data(
            TensorData::new(out, [flat.len(), ch, ph, pw]),
            &pyramid.device,
        )
    }
}

/// RoIAlign of one box on image `b` of a channels-last level, written `[C, ph, pw]` into
/// `dst`: first along x for every row the box's y taps touch (`scratch`, `[rows, pw, C]`),
/// then along y.
fn align_box_channels_last(
    level: &HostLevel,
    b: usize,
    bx: &BoxXyxy,
    scale: f32,
    cfg: &RoiAlignConfig,
    scratch: &mut Vec<f32>,
    dst: &mut [f32],
) {
    let [_, h, w, ch] = level.dims;
    let [ph, pw] = cfg.output_size;
    let (xs, ys) = sample_coords(bx, scale, cfg);
    let (ay, ax) = (axis_weights(&ys, h, ph), axis_weights(&xs, w, pw));
    let image = &level.data[b * h * w * ch..(b + 1) * h * w * ch];
    let rows = ay.len;
    scratch.clear();
    scratch.resize(rows * pw * ch, 0.0);
    if !ay.taps.is_empty() {
        // origin + rows ≤ h: the window covers exactly the pixels the taps touch.
        for r in 0..rows {
            let y = ay.origin + r;
            for &(q, x, vx) in &ax.taps {
                let src = &image[(y * w + x) * ch..(y * w + x + 1) * ch];
                let acc = &mut scratch[(r * pw + q) * ch..(r * pw + q + 1) * ch];
                for (a, s) in acc.iter_mut().zip(src) {
                    *a += vx * s;
                }
            }
        }
    }
    let mut cl = vec![0.0f32; ph * pw * ch];
    for &(p, y, vy) in &ay.taps {
        let r = y - ay.origin;
        for q in 0..pw {
            let src = &scratch[(r * pw + q) * ch..(r * pw + q + 1) * ch];
            let acc = &mut cl[(p * pw + q) * ch..(p * pw + q + 1) * ch];
            for (a, s) in acc.iter_mut().zip(src) {
                *a += vy * s;
            }
        }
    }
    for (pq, v) in cl.chunks_exact(ch).enumerate() {
        for (c, &x) in v.iter().enumerate() {
            dst[c * ph * pw + pq] = x;
        }
    }
}

/// torchvision's bilinear taps along one axis for a sample at `coord` on a map of `size`
/// pixels: `None` beyond one pixel outside the map (the sample reads 0), else the two
/// neighbouring pixels with their weights (coordinates in `(-1, 0)` clamp to 0, the last
/// pixel repeats).
fn taps(coord: f32, size: usize) -> Option<[(usize, f32); 2]> {
    if coord < -1.0 || coord > size as f32 {
        return None;
    }
    let mut c = coord.max(0.0);
    let mut lo = c as usize;
    let hi;
    if lo >= size - 1 {
        lo = size - 1;
        hi = lo;
        c = lo as f32;
    } else {
        hi = lo + 1;
    }
    let frac = c - lo as f32;
    Some([(lo, 1.0 - frac), (hi, frac)])
}

/// The interpolation weights of one box along one axis: for output bin `p`, pixel `index`,
/// weight `v` (already averaged over the bin's samples), and the first pixel touched.
struct AxisWeights {
    taps: Vec<(usize, usize, f32)>,
    origin: usize,
    len: usize,
}

fn axis_weights(coords: &[f32], size: usize, bins: usize) -> AxisWeights {
    let s = coords.len() / bins;
    let mut taps_out = Vec::with_capacity(coords.len() * 2);
    let (mut lo, mut hi) = (usize::MAX, 0);
    for (k, &coord) in coords.iter().enumerate() {
        if let Some(t) = taps(coord, size) {
            for (i, v) in t {
                taps_out.push((k / s, i, v / s as f32));
                lo = lo.min(i);
                hi = hi.max(i);
            }
        }
    }
    if lo == usize::MAX {
        return AxisWeights {
            taps: taps_out,
            origin: 0,
            len: 1,
        };
    }
    AxisWeights {
        taps: taps_out,
        origin: lo,
        len: hi - lo + 1,
    }
}

/// RoIAlign of one box on a single-channel host plane (`plane[y * width + x]`), exactly as
/// torchvision computes it (per-sample bilinear interpolation, zero beyond one pixel outside
/// the map). Used for mask targets and as the reference the tensor version is tested
/// against.
pub fn roi_align_plane(
    plane: &[f32],
    (height, width): (usize, usize),
    b: &BoxXyxy,
    spatial_scale: f32,
    config: &RoiAlignConfig,
) -> Vec<f32> {
    let (xs, ys) = sample_coords(b, spatial_scale, config);
    let [ph, pw] = config.output_size;
    let s = config.sampling_ratio;
    let at = |y: usize, x: usize| plane[y * width + x];
    let bilinear = |y: f32, x: f32| -> f32 {
        let (Some(ty), Some(tx)) = (taps(y, height), taps(x, width)) else {
            return 0.0;
        };
        ty.iter()
            .flat_map(|&(i, wy)| tx.iter().map(move |&(j, wx)| wy * wx * at(i, j)))
            .sum()
    };
    let mut out = vec![0.0f32; ph * pw];
    for i in 0..ph {
        for j in 0..pw {
            let mut acc = 0.0;
            for sy in 0..s {
                for sx in 0..s {
                    acc += bilinear(ys[i * s + sy], xs[j * s + sx]);
                }
            }
            out[i * pw + j] = acc / (s * s) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn features(device: &Device, n: usize, c: usize, h: usize, w: usize) -> (Tensor<4>, Vec<f32>) {
        device.seed(3);
        let t = Tensor::<4>::random([n, c, h, w], Distribution::Uniform(-1.0, 1.0), device);
        let v = t.clone().try_into_vec_as::<f32>().unwrap();
        (t, v)
    }

    #[test]
    fn matches_per_sample_reference_including_borders() {
        let device = Device::flex();
        let (n, c, h, w) = (2, 3, 11, 13);
        let (feat, host) = features(&device, n, c, h, w);
        let boxes = vec![
            vec![
                [0.0, 0.0, 52.0, 44.0],
                [3.3, 5.1, 17.9, 9.4],
                [40.0, 30.0, 52.0, 44.0],
            ],
            vec![
                [-6.0, -7.0, 10.0, 8.0],
                [45.5, 38.2, 60.0, 50.0],
                [20.0, 20.0, 20.5, 21.0],
            ],
        ];
        for aligned in [true, false] {
            let cfg = RoiAlignConfig::new()
                .with_output_size([5, 4])
                .with_aligned(aligned);
            let op = cfg.init().unwrap();
            let out = op.forward_level(feat.clone(), &boxes, 0.25);
            assert_eq!(out.dims(), [6, c, 5, 4]);
            let got = out.try_into_vec_as::<f32>().unwrap();
            // The host form on the same map (read as P2 of a one-level pyramid).
            let one_level = RoiAlignConfig::new()
                .with_output_size([5, 4])
                .with_aligned(aligned)
                .with_max_level(2)
                .init()
                .unwrap();
            let on_host = one_level
                .forward_host(&HostPyramid::read(std::slice::from_ref(&feat)), &boxes)
                .try_into_vec_as::<f32>()
                .unwrap();
            assert_eq!(on_host.len(), got.len());
            for (x, y) in on_host.iter().zip(&got) {
                assert!((x - y).abs() < 1e-5, "aligned={aligned}: host {x} vs {y}");
            }
            let mut k = 0;
            for (b, bs) in boxes.iter().enumerate() {
                for bx in bs {
                    for ch in 0..c {
                        let plane = &host[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
                        let want = roi_align_plane(plane, (h, w), bx, 0.25, &cfg);
                        let have = &got[(k * c + ch) * 20..(k * c + ch + 1) * 20];
                        for (x, y) in have.iter().zip(&want) {
                            assert!(
                                (x - y).abs() < 1e-5,
                                "aligned={aligned} box {bx:?}: {have:?} vs {want:?}"
                            );
                        }
                    }
                    k += 1;
                }
            }
        }
    }

    #[test]
    fn box_covering_constant_map_returns_the_constant() {
        // aligned = true: a box over exactly the pixels of a constant region reads it back.
        let device = Device::flex();
        let t = Tensor::<4>::ones([1, 1, 8, 8], &device) * 2.5;
        let op = RoiAlignConfig::new().init().unwrap();
        let out = op.forward_level(t, &[vec![[0.0, 0.0, 8.0, 8.0]]], 1.0);
        for v in out.try_into_vec_as::<f32>().unwrap() {
            assert!((v - 2.5).abs() < 1e-6);
        }
    }

    #[test]
    fn levels_follow_fpn_equation_one() {
        let op = RoiAlignConfig::new().init().unwrap();
        let sq = |s: f32| [0.0, 0.0, s, s];
        assert_eq!(op.level_of(&sq(224.0)), 4);
        assert_eq!(op.level_of(&sq(112.0)), 3);
        assert_eq!(op.level_of(&sq(447.0)), 4);
        assert_eq!(op.level_of(&sq(448.0)), 5);
        assert_eq!(op.level_of(&sq(16.0)), 2, "nuclei read P2");
        assert_eq!(op.level_of(&sq(5000.0)), 5);
        assert_eq!(op.level_of(&[3.0, 3.0, 3.0, 3.0]), 2, "degenerate box");
    }

    #[test]
    fn multi_scale_keeps_box_order() {
        let device = Device::flex();
        let op = RoiAlignConfig::new()
            .with_output_size([2, 2])
            .init()
            .unwrap();
        // Levels with constant values 2, 3, 4, 5: the output reveals the level read.
        let levels: Vec<Tensor<4>> = (2..=5)
            .map(|l| Tensor::<4>::ones([1, 1, 256 >> l, 256 >> l], &device) * l as f32)
            .collect();
        let boxes = vec![vec![
            [0.0, 0.0, 250.0, 250.0],
            [0.0, 0.0, 20.0, 20.0],
            [0.0, 0.0, 120.0, 120.0],
        ]];
        let out = op
            .forward(&levels, &boxes)
            .try_into_vec_as::<f32>()
            .unwrap();
        let firsts: Vec<f32> = out.chunks(4).map(|c| c[0]).collect();
        assert_eq!(firsts, vec![4.0, 2.0, 3.0]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for method in [RoiAlignMethod::Separable, RoiAlignMethod::GridSample] {
            gradient_check(method);
        }
    }

    fn gradient_check(method: RoiAlignMethod) {
        let device = Device::flex().autodiff();
        let (h, w) = (6, 7);
        let (_, host) = features(&Device::flex(), 1, 1, h, w);
        let op = RoiAlignConfig::new()
            .with_output_size([3, 3])
            .with_method(method)
            .init()
            .unwrap();
        let boxes = vec![vec![[0.7, 1.2, 5.9, 4.4], [-1.0, 2.0, 3.0, 7.5]]];
        let weights: Vec<f32> = (0..18).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let objective = |values: &[f32], dev: &Device| {
            let f = Tensor::<4>::from_data(TensorData::new(values.to_vec(), [1, 1, h, w]), dev);
            let wt = Tensor::<4>::from_data(TensorData::new(weights.clone(), [2, 1, 3, 3]), dev);
            (op.forward_level(f.clone(), &boxes, 1.0) * wt).sum()
        };
        let f = Tensor::<4>::from_data(TensorData::new(host.clone(), [1, 1, h, w]), &device)
            .require_grad();
        let wt = Tensor::<4>::from_data(TensorData::new(weights.clone(), [2, 1, 3, 3]), &device);
        let loss = (op.forward_level(f.clone(), &boxes, 1.0) * wt).sum();
        let grads = loss.backward();
        let g = f.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap();
        let eps = 1e-2;
        for i in 0..h * w {
            let (mut up, mut down) = (host.clone(), host.clone());
            up[i] += eps;
            down[i] -= eps;
            let plain = Device::flex();
            let fd = (objective(&up, &plain).into_scalar::<f32>()
                - objective(&down, &plain).into_scalar::<f32>())
                / (2.0 * eps);
            assert!(
                (fd - g[i]).abs() < 2e-3,
                "{method:?} d/dx[{i}]: autodiff {} vs finite differences {fd}",
                g[i]
            );
        }
    }

    #[test]
    fn both_methods_agree_on_many_boxes_and_levels() {
        let device = Device::flex();
        device.seed(11);
        let levels: Vec<Tensor<4>> = (2..=5)
            .map(|l| {
                Tensor::<4>::random([2, 3, 256 >> l, 192 >> l], Distribution::Default, &device)
            })
            .collect();
        let boxes: Vec<Vec<BoxXyxy>> = (0..2)
            .map(|b| {
                (0..40)
                    .map(|i| {
                        let (x, y) = (
                            (i * 37 % 180) as f32 + 0.3 * b as f32,
                            (i * 53 % 240) as f32,
                        );
                        let s = [6.0, 13.5, 30.0, 80.0, 250.0][i % 5];
                        [x - 3.0, y - 2.0, x + s, y + 0.7 * s]
                    })
                    .collect()
            })
            .collect();
        let run = |m| {
            RoiAlignConfig::new()
                .with_output_size([14, 14])
                .with_method(m)
                .init()
                .unwrap()
                .forward(&levels, &boxes)
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        let (a, b) = (
            run(RoiAlignMethod::Separable),
            run(RoiAlignMethod::GridSample),
        );
        assert_eq!(a.len(), 80 * 3 * 196);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        // The inference form on the host gives the same values, box by box.
        let host = RoiAlignConfig::new()
            .with_output_size([14, 14])
            .init()
            .unwrap()
            .forward_host(&HostPyramid::read(&levels), &boxes);
        assert_eq!(host.dims(), [80, 3, 14, 14]);
        let host = host.try_into_vec_as::<f32>().unwrap();
        assert_eq!(host.len(), a.len());
        for (x, y) in host.iter().zip(&a) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}
