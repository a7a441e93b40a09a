//! Balanced sampling of foreground and background examples for a loss (Faster R-CNN,
//! Sec. 3.1.3: 256 anchors per image, up to half positive; Fast R-CNN, Sec. 2.3: 512 RoIs,
//! 25 % positive).

use rand::{seq::SliceRandom, Rng};

use super::matcher::Match;

/// Draws up to `batch_size_per_image` examples, at most `positive_fraction` of them
/// foreground, filling the rest with background. Ignored examples are never drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalancedSampler {
    /// Examples per image.
    pub batch_size_per_image: usize,
    /// Largest share of foreground.
    pub positive_fraction: f32,
}

impl BalancedSampler {
    /// Returns `(positive indices, negative indices)`, each in random order.
    pub fn sample(&self, matches: &[Match], rng: &mut impl Rng) -> (Vec<usize>, Vec<usize>) {
        let mut pos: Vec<usize> = (0..matches.len())
            .filter(|&i| matches!(matches[i], Match::Gt(_)))
            .collect();
        let mut neg: Vec<usize> = (0..matches.len())
            .filter(|&i| matches[i] == Match::Negative)
            .collect();
        let max_pos = (self.batch_size_per_image as f32 * self.positive_fraction) as usize;
        let n_pos = pos.len().min(max_pos);
        let n_neg = neg.len().min(self.batch_size_per_image - n_pos);
        pos.shuffle(rng);
        neg.shuffle(rng);
        pos.truncate(n_pos);
        neg.truncate(n_neg);
        (pos, neg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn respects_fraction_and_fills_with_negatives() {
        let mut matches = vec![Match::Negative; 1000];
        for m in matches.iter_mut().take(300) {
            *m = Match::Gt(0);
        }
        matches[999] = Match::Ignore;
        let s = BalancedSampler {
            batch_size_per_image: 256,
            positive_fraction: 0.5,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (p, n) = s.sample(&matches, &mut rng);
        assert_eq!((p.len(), n.len()), (128, 128));
        assert!(p.iter().all(|&i| i < 300) && n.iter().all(|&i| (300..999).contains(&i)));
        // Few positives: the rest is negatives.
        let few: Vec<Match> = (0..50)
            .map(|i| if i < 3 { Match::Gt(0) } else { Match::Negative })
            .collect();
        let (p, n) = s.sample(&few, &mut rng);
        assert_eq!((p.len(), n.len()), (3, 47));
        // Same seed, same draw.
        let a = s.sample(&matches, &mut rand::rngs::StdRng::seed_from_u64(7));
        let b = s.sample(&matches, &mut rand::rngs::StdRng::seed_from_u64(7));
        assert_eq!(a, b);
    }
}
