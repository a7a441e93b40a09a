//! Loss terms of Mask R-CNN, written on Burn's tensor API.

use burn::tensor::{activation::log_sigmoid, Tensor};

/// Summed smooth-L1 (Huber) loss, Fast R-CNN eq. (3):
/// `0.5 d² / β` for `|d| < β`, `|d| − 0.5 β` otherwise. torchvision uses `β = 1/9`.
///
/// # Shapes
/// `pred`, `target`: `[K, 4]` → `[1]`.
pub fn smooth_l1_sum(pred: Tensor<2>, target: Tensor<2>, beta: f32) -> Tensor<1> {
    let d = (pred - target).abs();
    let small = d.clone().lower_elem(beta);
    let quadratic = d.clone().powi_scalar(2) * (0.5 / beta);
    let linear = d - 0.5 * beta;
    linear.mask_where(small, quadratic).sum()
}

/// Mean binary cross-entropy on logits, `−[t log σ(x) + (1 − t) log σ(−x)]`, in the
/// numerically stable form (no `log(0)`).
///
/// # Shapes
/// `logits`, `targets` (in `[0, 1]`): any equal shape → `[1]`.
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, targets: Tensor<D>) -> Tensor<1> {
    let pos = log_sigmoid(logits.clone());
    let neg = log_sigmoid(logits.neg());
    (targets.clone() * pos + (targets.neg() + 1.0) * neg)
        .mean()
        .neg()
}

/// Mean softmax cross-entropy of logits against integer class labels.
///
/// # Shapes
/// `logits: [K, C]`, `labels: [K]` → `[1]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, burn::tensor::Int>) -> Tensor<1> {
    let [k, _] = logits.dims();
    let log_p = burn::tensor::activation::log_softmax(logits, 1);
    log_p.gather(1, labels.reshape([k, 1])).mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Int};

    #[test]
    fn hand_computed_values() {
        let d = Device::flex();
        let p = Tensor::<2>::from_floats([[0.0, 0.05, 1.0, -2.0]], &d);
        let t = Tensor::<2>::zeros([1, 4], &d);
        let beta = 0.1;
        // 0 + 0.5·0.0025/0.1 + (1 − 0.05) + (2 − 0.05)
        let want = 0.0125 + 0.95 + 1.95;
        assert!((smooth_l1_sum(p, t, beta).into_scalar::<f32>() - want).abs() < 1e-5);

        let x = Tensor::<1>::from_floats([0.0, 100.0, -100.0], &d);
        let y = Tensor::<1>::from_floats([1.0, 1.0, 0.0], &d);
        // ln 2 / 3 for the first term, ~0 for the confident correct ones; no NaN at ±100.
        let v: f32 = bce_with_logits(x, y).into_scalar();
        assert!((v - std::f32::consts::LN_2 / 3.0).abs() < 1e-5, "{v}");

        let logits = Tensor::<2>::from_floats([[0.0, 0.0], [10.0, 0.0]], &d);
        let labels = Tensor::<1, Int>::from_ints([1, 0], &d);
        let v: f32 = cross_entropy(logits, labels).into_scalar();
        let want = (std::f32::consts::LN_2 + (1.0 + (-10f32).exp()).ln()) / 2.0;
        assert!((v - want).abs() < 1e-5, "{v} vs {want}");
    }
}
