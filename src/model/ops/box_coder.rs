//! The box coder of R-CNN (Girshick et al. 2014, Appendix C; Faster R-CNN eq. 2): a
//! target box is encoded relative to a reference box (anchor or proposal) as
//! `(dx, dy, dw, dh) = (wx (x* − x)/w, wy (y* − y)/h, ww ln(w*/w), wh ln(h*/h))` with
//! centres `(x, y)` and sizes `(w, h)`. Invariant (detectron2):
//! `decode(encode(target, reference), reference) == target`.

use burn::tensor::Tensor;

use super::box_ops::BoxXyxy;

/// Largest `dw`, `dh` applied when decoding, `ln(1000 / 16)` as in Detectron: keeps `exp`
/// from overflowing on wild early predictions.
pub const BBOX_XFORM_CLIP: f32 = 4.135_166_6; // ln(1000/16)

/// Encodes and decodes box regression targets with per-coordinate weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxCoder {
    /// `(wx, wy, ww, wh)`: `(1, 1, 1, 1)` for the RPN, `(10, 10, 5, 5)` for the box head.
    pub weights: [f32; 4],
    /// Clamp on `dw`, `dh` before `exp` when decoding.
    pub clip: f32,
}

impl BoxCoder {
    /// A coder with the given weights and the standard clamp.
    pub fn new(weights: [f32; 4]) -> Self {
        BoxCoder {
            weights,
            clip: BBOX_XFORM_CLIP,
        }
    }

    /// Deltas that move `reference` onto `target`.
    pub fn encode(&self, target: &BoxXyxy, reference: &BoxXyxy) -> [f32; 4] {
        let [wx, wy, ww, wh] = self.weights;
        let (rw, rh) = (reference[2] - reference[0], reference[3] - reference[1]);
        let (rx, ry) = (reference[0] + 0.5 * rw, reference[1] + 0.5 * rh);
        let (tw, th) = (target[2] - target[0], target[3] - target[1]);
        let (tx, ty) = (target[0] + 0.5 * tw, target[1] + 0.5 * th);
        [
            wx * (tx - rx) / rw,
            wy * (ty - ry) / rh,
            ww * (tw / rw).ln(),
            wh * (th / rh).ln(),
        ]
    }

    /// Applies `deltas` to `reference`.
    pub fn decode(&self, deltas: &[f32; 4], reference: &BoxXyxy) -> BoxXyxy {
        let [wx, wy, ww, wh] = self.weights;
        let (rw, rh) = (reference[2] - reference[0], reference[3] - reference[1]);
        let (rx, ry) = (reference[0] + 0.5 * rw, reference[1] + 0.5 * rh);
        let (dx, dy) = (deltas[0] / wx, deltas[1] / wy);
        let dw = (deltas[2] / ww).min(self.clip);
        let dh = (deltas[3] / wh).min(self.clip);
        let (cx, cy) = (dx * rw + rx, dy * rh + ry);
        let (w, h) = (dw.exp() * rw, dh.exp() * rh);
        [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]
    }

    /// [`decode`](Self::decode) on the device.
    ///
    /// # Shapes
    /// `deltas: [N, 4]`, `reference: [N, 4]` → `[N, 4]`.
    pub fn decode_tensor(&self, deltas: Tensor<2>, reference: Tensor<2>) -> Tensor<2> {
        let [n, _] = deltas.dims();
        let col = |t: &Tensor<2>, k: usize| t.clone().slice([0..n, k..k + 1]);
        let [wx, wy, ww, wh] = self.weights;
        let rw = col(&reference, 2) - col(&reference, 0);
        let rh = col(&reference, 3) - col(&reference, 1);
        let rx = col(&reference, 0) + rw.clone() * 0.5;
        let ry = col(&reference, 1) + rh.clone() * 0.5;
        let cx = col(&deltas, 0) / wx * rw.clone() + rx;
        let cy = col(&deltas, 1) / wy * rh.clone() + ry;
        let w = (col(&deltas, 2) / ww).clamp_max(self.clip).exp() * rw;
        let h = (col(&deltas, 3) / wh).clamp_max(self.clip).exp() * rh;
        Tensor::cat(
            vec![
                cx.clone() - w.clone() * 0.5,
                cy.clone() - h.clone() * 0.5,
                cx + w * 0.5,
                cy + h * 0.5,
            ],
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_computed_deltas() {
        let c = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
        // Reference centred at (5, 5), 10×10; target centred at (6, 5), 20×10.
        let d = c.encode(&[-4.0, 0.0, 16.0, 10.0], &[0.0, 0.0, 10.0, 10.0]);
        assert!((d[0] - 1.0).abs() < 1e-6 && d[1].abs() < 1e-6);
        assert!((d[2] - 5.0 * 2f32.ln()).abs() < 1e-5 && d[3].abs() < 1e-6);
        // Huge dw is clamped: the box grows by at most 1000/16.
        let b = c.decode(&[0.0, 0.0, 1e4, 0.0], &[0.0, 0.0, 16.0, 16.0]);
        assert!((b[2] - b[0] - 1000.0).abs() < 0.1, "{b:?}");
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            (x, y, w, h) in (-50.0f32..50.0, -50.0f32..50.0, 1.0f32..40.0, 1.0f32..40.0),
            (tx, ty, tw, th) in (-50.0f32..50.0, -50.0f32..50.0, 1.0f32..40.0, 1.0f32..40.0),
            weights in prop::sample::select(vec![[1.0f32, 1.0, 1.0, 1.0], [10.0, 10.0, 5.0, 5.0]]),
        ) {
            let c = BoxCoder::new(weights);
            let (r, t) = ([x, y, x + w, y + h], [tx, ty, tx + tw, ty + th]);
            let back = c.decode(&c.encode(&t, &r), &r);
            for k in 0..4 {
                prop_assert!((back[k] - t[k]).abs() < 1e-3, "{:?} vs {:?}", back, t);
            }
        }
    }

    #[test]
    fn tensor_decode_matches_host() {
        let device = burn::tensor::Device::flex();
        let c = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
        let refs = [[0.0f32, 0.0, 10.0, 10.0], [5.0, 7.0, 30.0, 12.0]];
        let deltas = [[1.0f32, -2.0, 0.3, -0.4], [0.0, 0.5, 30.0, 0.0]];
        let t = |v: &[[f32; 4]]| {
            Tensor::<2>::from_data(
                burn::tensor::TensorData::new(
                    v.iter().flatten().copied().collect::<Vec<f32>>(),
                    [v.len(), 4],
                ),
                &device,
            )
        };
        let got: Vec<f32> = c
            .decode_tensor(t(&deltas), t(&refs))
            .try_into_vec_as::<f32>()
            .unwrap();
        for i in 0..2 {
            let want = c.decode(&deltas[i], &refs[i]);
            for k in 0..4 {
                assert!((got[i * 4 + k] - want[k]).abs() < 1e-3, "{got:?}");
            }
        }
    }
}
