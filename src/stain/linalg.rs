//! Small dense linear algebra in `f64` for the classical normalizers: 3×3 symmetric
//! eigen-decomposition (cyclic Jacobi), 3×3 inverse by cofactors, and percentiles.

/// A 3×3 matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

/// The determinant of a 3×3 matrix (cofactor expansion along the first row).
pub fn det3(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Eigen-decomposition of a symmetric 3×3 matrix by cyclic Jacobi rotations.
///
/// Returns `(values, vectors)` with the eigenvalues in **ascending** order and
/// `vectors[i]` the unit eigenvector of `values[i]` (as in `numpy.linalg.eigh`, whose
/// columns are our rows). Converges to machine precision in a handful of sweeps for any
/// symmetric input, including repeated eigenvalues, where a closed-form solution is
/// ill-conditioned.
pub fn symmetric_eigen3(a: &Mat3) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut m = *a;
    // v's columns accumulate the rotations: m = vᵀ a v.
    let mut v: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = m[0][1].powi(2) + m[0][2].powi(2) + m[1][2].powi(2);
        let scale = m[0][0].powi(2) + m[1][1].powi(2) + m[2][2].powi(2);
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if m[p][q].abs() < 1e-300 {
                continue;
            }
            // Rotation angle that zeroes m[p][q] (Golub & Van Loan, Alg. 8.4.1).
            let tau = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
            let t = tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt());
            let t = if tau == 0.0 { 1.0 } else { t };
            let c = 1.0 / (1.0 + t * t).sqrt();
            let s = t * c;
            for k in 0..3 {
                let (mkp, mkq) = (m[k][p], m[k][q]);
                m[k][p] = c * mkp - s * mkq;
                m[k][q] = s * mkp + c * mkq;
            }
            for k in 0..3 {
                let (mpk, mqk) = (m[p][k], m[q][k]);
                m[p][k] = c * mpk - s * mqk;
                m[q][k] = s * mpk + c * mqk;
            }
            for k in 0..3 {
                let (vkp, vkq) = (v[k][p], v[k][q]);
                v[k][p] = c * vkp - s * vkq;
                v[k][q] = s * vkp + c * vkq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| m[i][i].total_cmp(&m[j][j]));
    let values = order.map(|i| m[i][i]);
    let vectors = order.map(|i| [v[0][i], v[1][i], v[2][i]]);
    (values, vectors)
}

/// The `q`-th percentile (`q` in `[0, 100]`) of `values` with linear interpolation between
/// order statistics (NumPy's default `linear` method). Sorts `values` in place. `None` for
/// an empty slice.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let pos = (q.clamp(0.0, 100.0) / 100.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(values[lo] * (1.0 - frac) + values[hi] * frac)
}

/// Dot product of two 3-vectors.
pub fn dot3(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The unit vector along `a` (`a` itself when its norm is 0).
pub fn normalize3(a: [f64; 3]) -> [f64; 3] {
    let n = dot3(&a, &a).sqrt();
    if n > 0.0 {
        a.map(|x| x / n)
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_reconstructs_the_matrix() {
        let a = [[4.0, 1.0, 0.5], [1.0, 3.0, -0.2], [0.5, -0.2, 1.0]];
        let (vals, vecs) = symmetric_eigen3(&a);
        assert!(vals[0] <= vals[1] && vals[1] <= vals[2]);
        for i in 0..3 {
            // A v = λ v
            for r in 0..3 {
                let av = dot3(&a[r], &vecs[i]);
                assert!((av - vals[i] * vecs[i][r]).abs() < 1e-12, "{i} {r}");
            }
            assert!((dot3(&vecs[i], &vecs[i]) - 1.0).abs() < 1e-12);
        }
        // Trace and determinant are preserved.
        assert!((vals.iter().sum::<f64>() - 8.0).abs() < 1e-12);
        assert!((vals.iter().product::<f64>() - det3(&a)).abs() < 1e-10);
    }

    #[test]
    fn eigen_of_repeated_values_and_diagonal() {
        let (vals, _) = symmetric_eigen3(&[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0]]);
        assert_eq!(vals, [2.0, 2.0, 5.0]);
        let (vals, vecs) = symmetric_eigen3(&[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]);
        assert!(vals[0].abs() < 1e-12 && vals[1].abs() < 1e-12 && (vals[2] - 3.0).abs() < 1e-12);
        let s = 1.0 / 3f64.sqrt();
        assert!((dot3(&vecs[2], &[s, s, s]).abs() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile(&mut v, 100.0), Some(4.0));
        // numpy.percentile([1,2,3,4], 50) == 2.5, (…, 99) == 3.97
        assert_eq!(percentile(&mut v, 50.0), Some(2.5));
        assert!((percentile(&mut v, 99.0).unwrap() - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}
