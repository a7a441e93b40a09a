//! Maximum-weight one-to-one matching (linear assignment) on a sparse bipartite graph.

use crate::union_find::UnionFind;

/// The one-to-one matching of rows to columns that maximizes the summed weight of the
/// given edges `(row, col, weight)`; returns the matched edges of positive weight.
///
/// Equivalent to `scipy.optimize.linear_sum_assignment` on the dense matrix of weights
/// (zero where there is no edge), but solved separately on each connected component of the
/// graph: nuclei overlap only their neighbours, so components are small and the cost is
/// near-linear in the number of edges instead of cubic in the number of nuclei.
pub fn max_weight_matching(
    n_rows: usize,
    n_cols: usize,
    edges: &[(u32, u32, f64)],
) -> Vec<(u32, u32, f64)> {
    let edges: Vec<(u32, u32, f64)> = edges.iter().copied().filter(|e| e.2 > 0.0).collect();
    // Union–find over rows (0..n_rows) and columns (n_rows..).
    let mut sets = UnionFind::new(n_rows + n_cols);
    for &(r, c, _) in &edges {
        sets.union(r as usize, n_rows + c as usize);
    }
    // Group edges by component root.
    let mut by_root: std::collections::BTreeMap<usize, Vec<(u32, u32, f64)>> = Default::default();
    for &e in &edges {
        let root = sets.find(e.0 as usize);
        by_root.entry(root).or_default().push(e);
    }
    let mut matched = Vec::new();
    for (_, comp) in by_root {
        if comp.len() == 1 {
            matched.push(comp[0]);
            continue;
        }
        let mut rows: Vec<u32> = comp.iter().map(|e| e.0).collect();
        let mut cols: Vec<u32> = comp.iter().map(|e| e.1).collect();
        rows.sort_unstable();
        rows.dedup();
        cols.sort_unstable();
        cols.dedup();
        let transpose = rows.len() > cols.len();
        let (n, m) = if transpose {
            (cols.len(), rows.len())
        } else {
            (rows.len(), cols.len())
        };
        let mut weight = vec![0.0f64; n * m];
        for &(r, c, w) in &comp {
            let ri = rows.binary_search(&r).expect("row listed");
            let ci = cols.binary_search(&c).expect("col listed");
            let (i, j) = if transpose { (ci, ri) } else { (ri, ci) };
            weight[i * m + j] = w;
        }
        for (i, j) in hungarian_max(n, m, &weight) {
            let w = weight[i * m + j];
            if w > 0.0 {
                let (ri, ci) = if transpose { (j, i) } else { (i, j) };
                matched.push((rows[ri], cols[ci], w));
            }
        }
    }
    matched.sort_by_key(|e| (e.0, e.1));
    matched
}

/// Dense Hungarian algorithm (Kuhn–Munkres with potentials, O(n² m)) maximizing the summed
/// weight of an `n × m` row-major matrix, `n <= m`. Returns `(row, col)` for every row.
fn hungarian_max(n: usize, m: usize, weight: &[f64]) -> Vec<(usize, usize)> {
    debug_assert!(n <= m);
    let cost = |i: usize, j: usize| -weight[(i - 1) * m + (j - 1)];
    let (mut u, mut v) = (vec![0.0f64; n + 1], vec![0.0f64; m + 1]);
    let mut p = vec![0usize; m + 1]; // p[j]: row matched to column j (1-based, 0 = none)
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    (1..=m)
        .filter(|&j| p[j] != 0)
        .map(|j| (p[j] - 1, j - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Exhaustive maximum over all partial injections (small sizes only).
    fn brute_force(n: usize, m: usize, w: &[f64]) -> f64 {
        fn rec(i: usize, n: usize, m: usize, w: &[f64], used: &mut Vec<bool>) -> f64 {
            if i == n {
                return 0.0;
            }
            let mut best = rec(i + 1, n, m, w, used);
            for j in 0..m {
                if !used[j] && w[i * m + j] > 0.0 {
                    used[j] = true;
                    best = best.max(w[i * m + j] + rec(i + 1, n, m, w, used));
                    used[j] = false;
                }
            }
            best
        }
        rec(0, n, m, w, &mut vec![false; m])
    }

    #[test]
    fn prefers_total_weight_over_greedy() {
        // Greedy would take (0,0)=0.9 then nothing for row 1; optimal is 0.8 + 0.8.
        let edges = [(0, 0, 0.9), (0, 1, 0.8), (1, 0, 0.8)];
        let m = max_weight_matching(2, 2, &edges);
        assert_eq!(m, vec![(0, 1, 0.8), (1, 0, 0.8)]);
    }

    proptest! {
        #[test]
        fn matches_brute_force(n in 1usize..6, m in 1usize..6, seed in any::<u64>()) {
            let mut state = seed | 1;
            let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state };
            let mut w = vec![0.0; n * m];
            let mut edges = Vec::new();
            for i in 0..n {
                for j in 0..m {
                    if next() % 3 != 0 {
                        let v = (next() % 1000) as f64 / 1000.0;
                        w[i * m + j] = v;
                        edges.push((i as u32, j as u32, v));
                    }
                }
            }
            let matched = max_weight_matching(n, m, &edges);
            let total: f64 = matched.iter().map(|e| e.2).sum();
            prop_assert!((total - brute_force(n, m, &w)).abs() < 1e-9);
            let mut rows: Vec<u32> = matched.iter().map(|e| e.0).collect();
            let mut cols: Vec<u32> = matched.iter().map(|e| e.1).collect();
            rows.dedup(); cols.sort(); cols.dedup();
            prop_assert_eq!(rows.len(), matched.len());
            prop_assert_eq!(cols.len(), matched.len());
        }
    }
}
