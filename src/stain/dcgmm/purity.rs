//! Whether DCGMM's clusters mean something: how strongly one cluster claims a set of
//! pixels, e.g. the nuclei of a ground-truth mask.

/// How strongly one cluster claims a set of pixels (e.g. the nuclei of a ground-truth
/// mask): the check that DCGMM's clusters mean something.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterPurity {
    /// The cluster with the largest mean `γ` over the masked pixels.
    pub cluster: usize,
    /// Mean `γ` of that cluster over the masked pixels (1 = every masked pixel fully in it).
    pub inside: f64,
    /// Mean `γ` of that cluster over the other pixels.
    pub outside: f64,
    /// Fraction of masked pixels whose most likely cluster is `cluster`.
    pub argmax_inside: f64,
}

impl ClusterPurity {
    /// Purity of planar assignments `gamma` (`K · n` values) on the pixels where `mask` is
    /// true (`n` values). `None` if the mask is empty or full.
    pub fn of(gamma: &[f32], k: usize, mask: &[bool]) -> Option<ClusterPurity> {
        let n = mask.len();
        assert_eq!(
            gamma.len(),
            k * n,
            "γ must hold K planes of the mask's size"
        );
        let inside_count = mask.iter().filter(|&&m| m).count();
        if inside_count == 0 || inside_count == n {
            return None;
        }
        let mean = |j: usize, want: bool| {
            let s: f64 = (0..n)
                .filter(|&i| mask[i] == want)
                .map(|i| gamma[j * n + i] as f64)
                .sum();
            s / if want { inside_count } else { n - inside_count } as f64
        };
        let cluster = (0..k)
            .max_by(|&a, &b| mean(a, true).total_cmp(&mean(b, true)))
            .expect("k ≥ 1");
        let argmax = (0..n)
            .filter(|&i| mask[i])
            .filter(|&i| (0..k).all(|j| gamma[j * n + i] <= gamma[cluster * n + i]))
            .count();
        Some(ClusterPurity {
            cluster,
            inside: mean(cluster, true),
            outside: mean(cluster, false),
            argmax_inside: argmax as f64 / inside_count as f64,
        })
    }
}
