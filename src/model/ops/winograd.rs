//! 3×3 convolution (stride 1, "same" padding) by Winograd's minimal filtering
//! F(2×2, 3×3) (Lavin & Gray, *Fast algorithms for convolutional neural networks*, CVPR
//! 2016, Sec. 4): every 2×2 block of outputs is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for the 4×4
//! input tile `d` under it, so the products over channels become 16 independent matrix
//! products with 2.25× fewer multiply-adds than the direct convolution. The transforms are
//! a few additions per tile, done on the host; the products run on the filter's device.
//! The result equals the direct convolution up to float rounding (tests: ≤ 1e-4
//! relative). Used at inference by the mask head
//! ([`crate::model::heads::MaskHead::forward_batched`]).

use burn::tensor::{Tensor, TensorData};

/// The filter transform `U = G g Gᵀ` of 3×3 weights, once per layer, laid out for
/// channels-last products.
///
/// # Shapes
/// `weight: [O, C, 3, 3]` → `[16, C, O]`, index `4·i + j` for tile position `(i, j)`.
pub fn winograd_filter(weight: Tensor<4>) -> Tensor<3> {
    let [o, c, kh, kw] = weight.dims();
    assert_eq!([kh, kw], [3, 3], "Winograd F(2×2, 3×3) needs 3×3 kernels");
    // G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]], applied along one kernel axis.
    let along = |g: [Tensor<4>; 3]| -> [Tensor<4>; 4] {
        let [g0, g1, g2] = g;
        let half_sum = (g0.clone() + g2.clone()) * 0.5;
        let half_mid = g1 * 0.5;
        [
            g0,
            half_sum.clone() + half_mid.clone(),
            half_sum - half_mid,
            g2,
        ]
    };
    let rows = along([0, 1, 2].map(|r| weight.clone().slice([0..o, 0..c, r..r + 1, 0..3])));
    let mut taps = Vec::with_capacity(16);
    for row in rows {
        let cols = along([0, 1, 2].map(|q| row.clone().slice([0..o, 0..c, 0..1, q..q + 1])));
        taps.extend(cols.into_iter().map(|t| t.reshape([1, o, c])));
    }
    Tensor::cat(taps, 0).swap_dims(1, 2)
}

/// `out = a − b`, element-wise over channels.
#[inline]
fn sub(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x - y;
    }
}

/// `out = a + b`, element-wise over channels.
#[inline]
fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// `Bᵀ d B` of one 4×4 tile of channel vectors, `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0],
/// [0, −1, 1, 0], [0, 1, 0, −1]]`: `d[4a + b]` is the input pixel at tile row `a`, column
/// `b`; `v` gets the 16 transformed vectors, `t` is scratch of the same size.
fn input_tile(d: &[&[f32]; 16], t: &mut [f32], v: &mut [f32], c: usize) {
    // Along rows: t[4i + b] for the rows of Bᵀ.
    for b in 0..4 {
        let (d0, d1, d2, d3) = (d[b], d[4 + b], d[8 + b], d[12 + b]);
        sub(&mut t[b * c..(b + 1) * c], d0, d2);
        add(&mut t[(4 + b) * c..(5 + b) * c], d1, d2);
        sub(&mut t[(8 + b) * c..(9 + b) * c], d2, d1);
        sub(&mut t[(12 + b) * c..(13 + b) * c], d1, d3);
    }
    // Along columns, within each row i.
    for i in 0..4 {
        let r = |j: usize| &t[(4 * i + j) * c..(4 * i + j + 1) * c];
        let row = &mut v[4 * i * c..(4 * i + 4) * c];
        let (v0, rest) = row.split_at_mut(c);
        let (v1, rest) = rest.split_at_mut(c);
        let (v2, v3) = rest.split_at_mut(c);
        sub(v0, r(0), r(2));
        add(v1, r(1), r(2));
        sub(v2, r(2), r(1));
        sub(v3, r(1), r(3));
    }
}

/// Tiles per batched product of [`conv3x3_winograd`] (whole rows of tiles, at least one):
/// 392 = 8 mask-head regions of 7×7 tiles, where the buffers (6.4 MB at 128 channels)
/// still fit the caches well; 16 regions were 2× slower per region on the project's machine.
pub const WINOGRAD_TILES: usize = 392;

/// 3×3 convolution, stride 1, zero padding 1, of a channels-last batch held on the host,
/// with filters transformed by [`winograd_filter`]; `relu` applies max(0, ·) to the
/// result. The tile transforms run on the host, vectorized over channels and in parallel
/// over tiles; the 16 products over channels run as one batched matrix product on the
/// filter's device per [`WINOGRAD_TILES`] tiles.
///
/// # Shapes
/// `x: [K, H, W, C]` row-major (`K` images or regions), `filter: [16, C, O]`, `bias: [O]`
/// → `[K, H, W, O]` row-major.
pub fn conv3x3_winograd(
    x: &[f32],
    [k, h, w, c]: [usize; 4],
    filter: &Tensor<3>,
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let [_, fc, o] = filter.dims();
    assert_eq!(fc, c, "filter has {fc} input channels, the input {c}");
    assert_eq!(
        x.len(),
        k * h * w * c,
        "input of [K, H, W, C] = [{k}, {h}, {w}, {c}]"
    );
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let mut out = vec![0.0f32; k * h * w * o];
    // Rows of tiles (ki, ty), in order; a chunk of them writes a contiguous run of output
    // rows.
    let rows_per_chunk = (WINOGRAD_TILES / tw.max(1)).max(1);
    let tile_rows = k * th;
    // One chunk's products become the next chunk's tile buffer: no allocation per chunk
    // on our side (fresh multi-megabyte buffers cost page faults on every chunk).
    let mut spare = Vec::new();
    let mut first = 0;
    while first < tile_rows {
        let last = (first + rows_per_chunk).min(tile_rows);
        // Output rows (ki, y) covered: from (ki0, 2·ty0) up to (ki1, min(2·ty1 + 2, h)).
        let row_of = |tr: usize| (tr / th) * h + (2 * (tr % th)).min(h);
        let dst = &mut out[row_of(first) * w * o..row_of(last) * w * o];
        spare = winograd_chunk(x, [k, h, w, c], filter, bias, relu, first..last, dst, spare);
        first = last;
    }
    out
}

/// One chunk of [`conv3x3_winograd`]: the tile rows `rows` (index `ki·th + ty`), written
/// to `dst`, the output rows they cover. `buffer` holds the transformed tiles; the
/// products are returned for reuse.
#[allow(clippy::too_many_arguments)]
fn winograd_chunk(
    x: &[f32],
    [_, h, w, c]: [usize; 4],
    filter: &Tensor<3>,
    bias: Option<&[f32]>,
    relu: bool,
    rows: std::ops::Range<usize>,
    dst: &mut [f32],
    mut buffer: Vec<f32>,
) -> Vec<f32> {
    use rayon::prelude::*;
    let [_, _, o] = filter.dims();
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let p = rows.len() * tw;
    // V: [P, 16, C], tile (tile row r, tx) at row (r − rows.start)·tw + tx.
    let zeros = vec![0.0f32; c];
    // Every element is written below.
    buffer.resize(p * 16 * c, 0.0);
    let mut v = buffer;
    v.par_chunks_mut(16 * c).enumerate().for_each_init(
        || vec![0.0f32; 16 * c],
        |t, (tile, vt)| {
            let tr = rows.start + tile / tw;
            let (ki, ty, tx) = (tr / th, tr % th, tile % tw);
            let image = &x[ki * h * w * c..(ki + 1) * h * w * c];
            let d: [&[f32]; 16] = std::array::from_fn(|ab| {
                let y = (2 * ty + ab / 4).wrapping_sub(1);
                let xx = (2 * tx + ab % 4).wrapping_sub(1);
                if y < h && xx < w {
                    &image[(y * w + xx) * c..(y * w + xx + 1) * c]
                } else {
                    &zeros[..]
                }
            });
            input_tile(&d, t, vt, c);
        },
    );
    // [16, P, C]
    let v =
        Tensor::<3>::from_data(TensorData::new(v, [p, 16, c]), &filter.device()).swap_dims(0, 1);
    // [16, P, O]
    let m = v
        .matmul(filter.clone())
        .try_into_vec_as::<f32>()
        .expect("readable");
    // Aᵀ m A per tile, Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]], written to the 2×2 outputs,
    // in parallel over output rows; the chunk's first output row is the first of tile row
    // rows.start (image ki0, tile row ty0).
    let (ki0, ty0) = (rows.start / th, rows.start % th);
    dst.par_chunks_mut(w * o).enumerate().for_each_init(
        || vec![0.0f32; 4 * o],
        |t, (i, dst_row)| {
            // Output row i of the chunk: tile row and which of its two rows.
            let y_abs = ki0 * h + 2 * ty0 + i; // row index over all images
            let (ki, y) = (y_abs / h, y_abs % h);
            let (ty, r) = (y / 2, y % 2);
            let local = (ki * th + ty) - rows.start;
            for tx in 0..tw {
                let tile = local * tw + tx;
                let m = |xi: usize| &m[(xi * p + tile) * o..(xi * p + tile + 1) * o];
                // Row r of Aᵀ over the tile's rows, for each column j.
                for j in 0..4 {
                    let tj = &mut t[j * o..(j + 1) * o];
                    let (a, b, cc, d) = (m(j), m(4 + j), m(8 + j), m(12 + j));
                    for (e, out) in tj.iter_mut().enumerate() {
                        *out = if r == 0 {
                            a[e] + b[e] + cc[e]
                        } else {
                            b[e] - cc[e] - d[e]
                        };
                    }
                }
                for s in 0..2 {
                    let xx = 2 * tx + s;
                    if xx >= w {
                        continue;
                    }
                    let px = &mut dst_row[xx * o..(xx + 1) * o];
                    for (e, out) in px.iter_mut().enumerate() {
                        let (t0, t1, t2, t3) = (t[e], t[o + e], t[2 * o + e], t[3 * o + e]);
                        let mut val = if s == 0 { t0 + t1 + t2 } else { t1 - t2 - t3 };
                        if let Some(b) = bias {
                            val += b[e];
                        }
                        *out = if relu { val.max(0.0) } else { val };
                    }
                }
            }
        },
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{module::conv2d, ops::ConvOptions, Device, Distribution};

    fn direct(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
        // conv2d takes [K, C, H, W]; the Winograd form is channels last.
        conv2d(
            x.permute([0, 3, 1, 2]),
            w,
            Some(b),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        )
        .permute([0, 2, 3, 1])
    }

    #[test]
    fn equals_the_direct_convolution_for_even_and_odd_sizes() {
        let device = Device::flex();
        device.seed(5);
        // The last two need several chunks of WINOGRAD_TILES tiles (odd heights: a chunk
        // can end inside an image).
        for (c, o, k, h, w) in [
            (3, 4, 2, 6, 6),
            (5, 3, 3, 7, 5),
            (8, 8, 4, 14, 14),
            (2, 1, 1, 1, 1),
            (4, 3, 3, 41, 60),
            (3, 2, 1, 9, 900),
        ] {
            let x = Tensor::<4>::random([k, h, w, c], Distribution::Normal(0.0, 1.0), &device);
            let wt = Tensor::<4>::random([o, c, 3, 3], Distribution::Normal(0.0, 1.0), &device);
            let b = Tensor::<1>::random([o], Distribution::Normal(0.0, 1.0), &device);
            let want = direct(x.clone(), wt.clone(), b.clone());

            let host = x.try_into_vec_as::<f32>().unwrap();
            let bias = b.try_into_vec_as::<f32>().unwrap();
            let filter = winograd_filter(wt);
            let got = conv3x3_winograd(&host, [k, h, w, c], &filter, Some(&bias), false);
            let want = want.try_into_vec_as::<f32>().unwrap();
            assert_eq!(got.len(), want.len());
            // With relu: the same values clamped at zero.
            let rectified = conv3x3_winograd(&host, [k, h, w, c], &filter, Some(&bias), true);
            for (r, g) in rectified.iter().zip(&got) {
                assert_eq!(*r, g.max(0.0));
            }
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-4 * scale, "{c}×{k}×{h}×{w}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn a_centre_tap_filter_is_the_identity() {
        // g = δ at the kernel centre: the convolution returns its input.
        let device = Device::flex();
        let mut g = vec![0.0f32; 9];
        g[4] = 1.0;
        let filter = winograd_filter(Tensor::<4>::from_data(
            TensorData::new(g, [1, 1, 3, 3]),
            &device,
        ));
        let values: Vec<f32> = (0..35).map(|i| i as f32 * 0.5 - 3.0).collect();
        let y = conv3x3_winograd(&values, [1, 5, 7, 1], &filter, None, false);
        for (a, b) in y.iter().zip(&values) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
