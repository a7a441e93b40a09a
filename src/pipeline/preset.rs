//! The paper's four setups (Jung et al. 2019, Sec. 3.3 and Table 2) as a type.

use std::str::FromStr;

use super::PipelineConfig;
use crate::postprocess::TtaSet;

/// One of the paper's four setups: normalization on or off × multiple inference (TTA) on or
/// off. Parses from (and prints as) the paper's names, case-insensitively.
///
/// | preset | normalization | multiple inference (TTA) |
/// | --- | --- | --- |
/// | `NucSeg` | yes | yes |
/// | `NucSeg-P` | yes | no |
/// | `NucSeg-N` | no | yes |
/// | `NucSeg-NP` | no | no |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Preset {
    /// Normalization and multiple inference: the paper's full method.
    #[default]
    NucSeg,
    /// Normalization, no multiple inference.
    NucSegP,
    /// Multiple inference, no normalization.
    NucSegN,
    /// Neither.
    NucSegNp,
}

impl Preset {
    /// The four setups, in the paper's order.
    pub const ALL: [Preset; 4] = [
        Preset::NucSeg,
        Preset::NucSegP,
        Preset::NucSegN,
        Preset::NucSegNp,
    ];

    /// The paper's name: `NucSeg`, `NucSeg-P`, `NucSeg-N` or `NucSeg-NP`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::NucSeg => "NucSeg",
            Preset::NucSegP => "NucSeg-P",
            Preset::NucSegN => "NucSeg-N",
            Preset::NucSegNp => "NucSeg-NP",
        }
    }

    /// Whether the setup normalizes stains.
    pub fn normalizes(self) -> bool {
        matches!(self, Preset::NucSeg | Preset::NucSegP)
    }

    /// Whether the setup runs multiple inference (the paper's seven views).
    pub fn augments(self) -> bool {
        matches!(self, Preset::NucSeg | Preset::NucSegN)
    }

    /// The pipeline settings of this setup (everything else at its default: 1024-px tiles
    /// at stride 768, scores ≥ 0.7 kept; the paper tiled 500-px tiles at stride 250, which
    /// `with_tiling(TilerConfig::new())` restores).
    pub fn config(self) -> PipelineConfig {
        let set = if self.augments() {
            TtaSet::Paper
        } else {
            TtaSet::None
        };
        let defaults = PipelineConfig::new();
        let tta = defaults.tta.clone().with_set(set);
        defaults.with_normalize(self.normalizes()).with_tta(tta)
    }
}

impl From<Preset> for PipelineConfig {
    fn from(preset: Preset) -> Self {
        preset.config()
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the four presets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset `{0}`: expected NucSeg, NucSeg-P, NucSeg-N or NucSeg-NP")]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    /// Parses a paper name, any case, surrounding spaces ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownPreset(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_print_and_switch_normalization_and_tta() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(" nucseg-np ".parse::<Preset>().unwrap(), Preset::NucSegNp);
        let c = Preset::NucSeg.config();
        assert!(c.normalize && c.tta.set == TtaSet::Paper);
        // The pipeline's merge, not the bare TtaConfig's: overlaps go to the clean-up.
        assert!(c.tta.keep_overlaps && c.overlaps.absorb_share == Some(0.2));
        let c = PipelineConfig::from(Preset::NucSegNp);
        assert!(!c.normalize && c.tta.set == TtaSet::None);
        let c = Preset::NucSegN.config();
        assert!(!c.normalize && c.tta.set == TtaSet::Paper);
        let err = "NucSeg-X".parse::<Preset>().unwrap_err();
        assert!(err.to_string().contains("NucSeg-X"), "{err}");
    }
}
