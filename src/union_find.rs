//! Disjoint sets (union–find with path halving), as connected components, the metrics'
//! overlap clusters and the stitcher's joined pieces use them. Every set is represented by
//! its smallest element, so results do not depend on the order of the unions.

/// Disjoint sets over `0..len`.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    /// `n` singletons `{0}, {1}, …, {n - 1}`.
    pub(crate) fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    /// Adds a singleton and returns its element.
    pub(crate) fn push(&mut self) -> usize {
        self.parent.push(self.parent.len());
        self.parent.len() - 1
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.parent.len()
    }

    /// The smallest element of `a`'s set.
    pub(crate) fn find(&mut self, mut a: usize) -> usize {
        while self.parent[a] != a {
            self.parent[a] = self.parent[self.parent[a]];
            a = self.parent[a];
        }
        a
    }

    /// Joins the sets of `a` and `b`; returns the smallest element of the union.
    pub(crate) fn union(&mut self, a: usize, b: usize) -> usize {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        self.parent[hi] = lo;
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_named_by_their_smallest_element() {
        let mut u = UnionFind::new(6);
        assert_eq!(u.union(4, 2), 2);
        assert_eq!(u.union(5, 4), 2);
        assert_eq!(u.union(3, 1), 1);
        assert_eq!(u.union(2, 3), 1);
        let roots: Vec<usize> = (0..6).map(|i| u.find(i)).collect();
        assert_eq!(roots, [0, 1, 1, 1, 1, 1]);
        let p = u.push();
        assert_eq!((p, u.find(p), u.len()), (6, 6, 7));
    }
}
