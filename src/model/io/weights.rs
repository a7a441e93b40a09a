//! Loading torchvision-style pretrained weights from safetensors files.
//!
//! A PyTorch checkpoint is converted once, outside nucseg, with
//! `safetensors.torch.save_file(model.state_dict(), "resnet50.safetensors")`; its keys
//! are torchvision's `state_dict` names. [`load_safetensors`] maps them onto a Burn
//! module by a list of regex remaps and reports what matched.
//!
//! # Parameter paths
//!
//! The backbone's fields carry torchvision's names, so with enum variant names skipped
//! (as [`load_safetensors`] does) a [`ResNet`](crate::model::backbone::ResNet) has exactly the keys of
//! torchvision's `resnet*` body:
//!
//! | torchvision key | Burn path (variants skipped) | Burn path (as `collect(None, None, false)` lists it) |
//! |---|---|---|
//! | `conv1.weight` | `conv1.weight` | `conv1.weight` |
//! | `bn1.weight` / `bias` / `running_mean` / `running_var` | same | `bn1.FrozenBatchNorm.weight` ... |
//! | `layer1.0.conv1.weight` | same | `layer1.0.Basic.conv1.weight` (`Bottleneck` for depth ≥ 50) |
//! | `layer2.0.downsample.0.weight` | same | `layer2.0.Basic.downsample.0.weight` |
//! | `layer2.0.downsample.1.running_var` | same | `layer2.0.Basic.downsample.1.FrozenBatchNorm.running_var` |
//! | `bn1.weight` (a group-norm network) | `bn1.gamma` (found via the adapter) | `bn1.GroupNorm.gamma` |
//!
//! An [`Fpn`](crate::model::backbone::Fpn) has `inner_blocks.{i}.weight|bias` and
//! `layer_blocks.{i}.weight|bias` (torchvision ≤ 0.12 layout; newer torchvision inserts a
//! `.0.` before the parameter name, which [`fpn_remaps`] removes).
//!
//! # Remap tables
//!
//! A remap is a `(regex, replacement)` pair applied to the file's keys with
//! `Regex::replace_all`; every pattern is tried in order on the result of the previous
//! ones, so anchor patterns with `^` and use `${1}` for groups. The table builders below
//! take source and destination prefixes so that the lead's full-model table is a
//! concatenation, e.g. `maskrcnn_backbone_remaps("backbone.body.", "backbone.fpn.")`
//! followed by RPN and RoI-head remaps.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyError, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::DType;

use crate::model::{MaskRcnn, ModelError, TensorShapeMismatch};

/// No remapping: the file's keys are the module's paths.
pub const NO_REMAPS: &[(&str, &str)] = &[];

/// Whether an unused file key is known to be irrelevant to nucseg's modules and is only
/// counted, never reported as unexpected: BatchNorm's `num_batches_tracked` counters and
/// the ImageNet classifier `fc.weight` / `fc.bias` of a torchvision ResNet checkpoint.
pub fn is_ignored_key(key: &str) -> bool {
    key == "num_batches_tracked"
        || key.ends_with(".num_batches_tracked")
        || key == "fc.weight"
        || key == "fc.bias"
}

/// What [`load_safetensors`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model parameter paths loaded from the file.
    pub applied: Vec<String>,
    /// Model parameter paths the file did not provide (left at their initial values).
    pub missing: Vec<String>,
    /// File keys (as stored in the file) that no parameter took and that are not ignorable.
    pub unexpected: Vec<String>,
    /// File keys that no parameter took and that [`is_ignored_key`] accepts.
    pub ignored: Vec<String>,
}

impl LoadReport {
    /// Whether every parameter was loaded and every file key was used or ignorable.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tensors loaded, {} missing, {} unexpected, {} ignored",
            self.applied.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.ignored.len()
        )?;
        if !self.missing.is_empty() {
            write!(f, "\n  missing: {}", self.missing.join(", "))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "\n  unexpected: {}", self.unexpected.join(", "))?;
        }
        Ok(())
    }
}

/// Loads a torchvision-style safetensors file into `module`.
///
/// Keys are first rewritten by `remaps` (see the [module docs](crate::model::io)), then matched against
/// the module's parameter paths with enum variant names skipped. PyTorch layouts are
/// converted (`PyTorchToBurnAdapter`: `Linear` weights transposed, `weight`/`bias` of Burn's
/// norm layers found under `gamma`/`beta`) and f16 / bf16 / f64 tensors are cast to f32.
///
/// With `strict`, any model parameter the file lacks and any file key that is neither used
/// nor ignorable ([`is_ignored_key`]) is an error listing all of them; otherwise they are
/// listed in the returned [`LoadReport`] and missing parameters keep their initial values.
///
/// # Errors
/// - [`ModelError::WeightFile`]: the file is missing, unreadable or not safetensors (names
///   the path);
/// - [`ModelError::BadRemap`]: a remap pattern is not a valid regex;
/// - [`ModelError::RemapCollision`]: the remaps give two file keys the same name;
/// - [`ModelError::ShapeMismatch`]: tensors whose shapes differ from their parameters' (each
///   with both keys and both shapes), in either mode;
/// - [`ModelError::KeyMismatch`]: strict mode, missing or unexpected keys;
/// - [`ModelError::WeightLoad`]: a tensor of the wrong kind (e.g. integer) or unreadable data.
pub fn load_safetensors<M, R, T>(
    mut module: M,
    path: &Path,
    remaps: &[(R, T)],
    strict: bool,
) -> Result<(M, LoadReport), ModelError>
where
    M: Module,
    R: AsRef<str>,
    T: AsRef<str>,
{
    let file_error = |reason: String| ModelError::WeightFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut remapper = KeyRemapper::new();
    for (pattern, replacement) in remaps {
        remapper = remapper
            .add_pattern(pattern.as_ref(), replacement.as_ref())
            .map_err(|e| ModelError::BadRemap {
                pattern: pattern.as_ref().to_string(),
                reason: e.to_string(),
            })?;
    }

    // The file's own keys, to report unused keys under the names the user sees in the file.
    let mut store = SafetensorsStore::from_file(path);
    let original_keys = store.keys().map_err(|e| file_error(e.to_string()))?;
    let renamed_to_original = renamed_keys(&remapper, &original_keys)?;

    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32));
    let mut store = store
        .remap(remapper)
        .with_from_adapter(adapter)
        .skip_enum_variants(true)
        .allow_partial(true)
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| file_error(e.to_string()))?;

    let mut mismatches = Vec::new();
    let mut load_errors = Vec::new();
    for error in &result.errors {
        match error {
            ApplyError::ShapeMismatch {
                path: key,
                expected,
                found,
            } => mismatches.push(TensorShapeMismatch {
                file_key: original_key(&renamed_to_original, key),
                key: key.clone(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            }),
            other => load_errors.push(other.to_string()),
        }
    }
    if !mismatches.is_empty() {
        mismatches.sort_by(|a, b| a.key.cmp(&b.key));
        return Err(ModelError::ShapeMismatch {
            path: path.to_path_buf(),
            mismatches,
        });
    }
    if !load_errors.is_empty() {
        return Err(ModelError::WeightLoad {
            path: path.to_path_buf(),
            reason: load_errors.join("; "),
        });
    }

    let (mut ignored, mut unexpected): (Vec<String>, Vec<String>) = result
        .unused
        .iter()
        .map(|k| {
            renamed_to_original
                .get(k)
                .cloned()
                .unwrap_or_else(|| k.clone())
        })
        .partition(|k| is_ignored_key(k));
    ignored.sort();
    unexpected.sort();
    let report = LoadReport {
        applied: result.applied,
        missing: result.missing.into_iter().map(|(p, _)| p).collect(),
        unexpected,
        ignored,
    };
    if strict && !report.is_complete() {
        return Err(ModelError::KeyMismatch {
            path: PathBuf::from(path),
            missing: report.missing,
            unexpected: report.unexpected,
        });
    }
    Ok((module, report))
}

/// Renamed key → original key, applying the remapper's patterns as burn-store does
/// (`KeyRemapper::remap`: every matching pattern in order, `replace_all`).
///
/// Two file keys renamed to the same key are an error: one of them would be dropped
/// silently.
fn renamed_keys(
    remapper: &KeyRemapper,
    keys: &[String],
) -> Result<HashMap<String, String>, ModelError> {
    let patterns = remapper.to_regex_pairs();
    let mut renamed_to_original = HashMap::with_capacity(keys.len());
    for original in keys {
        let renamed = patterns
            .iter()
            .fold(original.clone(), |key, (pattern, replacement)| {
                pattern.replace_all(&key, replacement.as_str()).into_owned()
            });
        if let Some(first) = renamed_to_original.insert(renamed.clone(), original.clone()) {
            return Err(ModelError::RemapCollision {
                key: renamed,
                first,
                second: original.clone(),
            });
        }
    }
    Ok(renamed_to_original)
}

/// The file key that feeds a model path: the path itself after remapping, or for Burn's
/// norm layers its PyTorch alternative name (`gamma` ← `weight`, `beta` ← `bias`).
fn original_key(renamed_to_original: &HashMap<String, String>, model_path: &str) -> String {
    let alternative = model_path
        .strip_suffix(".gamma")
        .map(|p| format!("{p}.weight"))
        .or_else(|| {
            model_path
                .strip_suffix(".beta")
                .map(|p| format!("{p}.bias"))
        });
    std::iter::once(model_path.to_string())
        .chain(alternative)
        .find_map(|k| renamed_to_original.get(&k).cloned())
        .unwrap_or_else(|| model_path.to_string())
}

/// Escapes the regex metacharacters of a literal key prefix.
fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for ch in literal.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Moves a torchvision ResNet body stored under `src_prefix` (`""` for an ImageNet
/// `resnet50` checkpoint, `"backbone.body."` for `maskrcnn_resnet50_fpn`) to `dst_prefix`
/// (`""` when loading into a bare [`ResNet`](crate::model::backbone::ResNet)). Only the body's
/// top-level names (`conv1`, `bn1`, `layer1`..`layer4`) move; the classifier `fc.*` stays
/// and is ignored by [`load_safetensors`].
pub fn resnet_remaps(src_prefix: &str, dst_prefix: &str) -> Vec<(String, String)> {
    if src_prefix == dst_prefix {
        return Vec::new();
    }
    vec![(
        format!(r"^{}(conv1|bn1|layer[1-4])\.", escape(src_prefix)),
        format!("{dst_prefix}${{1}}."),
    )]
}

/// Maps torchvision FPN keys under `src_prefix` (e.g. `"backbone.fpn."`) to an
/// [`Fpn`](crate::model::backbone::Fpn) under `dst_prefix`. Handles both layouts:
/// `inner_blocks.{i}.0.weight` (torchvision ≥ 0.13, `Conv2dNormActivation`) and
/// `inner_blocks.{i}.weight` (older), likewise `layer_blocks`.
pub fn fpn_remaps(src_prefix: &str, dst_prefix: &str) -> Vec<(String, String)> {
    let src = escape(src_prefix);
    let dst = format!("{dst_prefix}${{1}}_blocks.${{2}}.${{3}}");
    vec![
        (
            format!(r"^{src}(inner|layer)_blocks\.(\d+)\.0\.(weight|bias)$"),
            dst.clone(),
        ),
        (
            format!(r"^{src}(inner|layer)_blocks\.(\d+)\.(weight|bias)$"),
            dst,
        ),
    ]
}

/// The backbone part of torchvision's `maskrcnn_resnet50_fpn` (and `_v2`-style FPN keys)
/// `state_dict`: `backbone.body.*` → `body_dst` + ResNet path, `backbone.fpn.*` →
/// `fpn_dst` + FPN path. The RPN and RoI heads (`rpn.*`, `roi_heads.*`) are not mapped:
/// append their remaps for the full model.
pub fn maskrcnn_backbone_remaps(body_dst: &str, fpn_dst: &str) -> Vec<(String, String)> {
    let mut remaps = resnet_remaps("backbone.body.", body_dst);
    remaps.extend(fpn_remaps("backbone.fpn.", fpn_dst));
    remaps
}

/// Lists a module's parameter paths as [`load_safetensors`] matches them (enum variants
/// skipped), with their shapes: handy to write or check a remap table.
pub fn parameter_paths<M: Module>(module: &M) -> Vec<(String, Vec<usize>)> {
    module
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect()
}

/// The remaps from torchvision's `maskrcnn_resnet50_fpn` (v1 and v2) `state_dict` keys to
/// [`MaskRcnn`](MaskRcnn)'s parameters:
///
/// | torchvision | nucseg |
/// | --- | --- |
/// | `backbone.body.*` | `backbone.*` |
/// | `backbone.fpn.{inner,layer}_blocks.{i}[.0].*` | `fpn.{inner,layer}_blocks.{i}.*` |
/// | `rpn.head.conv[.0.0].*`, `rpn.head.{cls_logits,bbox_pred}.*` | `rpn_head.*` |
/// | `roi_heads.box_head.{fc6,fc7}.*` | `box_head.{fc6,fc7}.*` |
/// | `roi_heads.box_predictor.{cls_score,bbox_pred}.*` | `box_head.{cls_score,bbox_pred}.*` |
/// | `roi_heads.mask_head.mask_fcn{k}.*` (v1) or `roi_heads.mask_head.{k−1}.0.*` (v2) | `mask_head.mask_fcn.{k−1}.*` |
/// | `roi_heads.mask_predictor.{conv5_mask,mask_fcn_logits}.*` | `mask_head.*` |
///
/// A COCO checkpoint has 91 classes: its `cls_score`, `bbox_pred` and `mask_fcn_logits`
/// only fit a model with `num_classes = 91`; to fine-tune for nuclei, drop them with a
/// lenient load (they are then reported as shape mismatches — load with
/// [`maskrcnn_remaps_without_predictors`] instead).
pub fn maskrcnn_remaps() -> Vec<(String, String)> {
    let mut remaps = maskrcnn_backbone_remaps("backbone.", "fpn.");
    remaps.extend(head_remaps(true));
    remaps
}

/// [`maskrcnn_remaps`] without the class-specific predictors (`cls_score`, `bbox_pred`,
/// `mask_fcn_logits`), which then stay as initialized: the usual way to start a nuclei
/// model from COCO weights.
pub fn maskrcnn_remaps_without_predictors() -> Vec<(String, String)> {
    let mut remaps = maskrcnn_backbone_remaps("backbone.", "fpn.");
    remaps.extend(head_remaps(false));
    remaps
}

fn head_remaps(predictors: bool) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = vec![
        (
            r"^rpn\.head\.conv\.0\.0\.(weight|bias)$".into(),
            "rpn_head.conv.${1}".into(),
        ),
        (
            r"^rpn\.head\.(conv|cls_logits|bbox_pred)\.(weight|bias)$".into(),
            "rpn_head.${1}.${2}".into(),
        ),
        (
            r"^roi_heads\.box_head\.(fc6|fc7)\.(weight|bias)$".into(),
            "box_head.${1}.${2}".into(),
        ),
        (
            r"^roi_heads\.mask_head\.mask_fcn1\.(weight|bias)$".into(),
            "mask_head.mask_fcn.0.${1}".into(),
        ),
        (
            r"^roi_heads\.mask_head\.mask_fcn2\.(weight|bias)$".into(),
            "mask_head.mask_fcn.1.${1}".into(),
        ),
        (
            r"^roi_heads\.mask_head\.mask_fcn3\.(weight|bias)$".into(),
            "mask_head.mask_fcn.2.${1}".into(),
        ),
        (
            r"^roi_heads\.mask_head\.mask_fcn4\.(weight|bias)$".into(),
            "mask_head.mask_fcn.3.${1}".into(),
        ),
        (
            r"^roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)$".into(),
            "mask_head.mask_fcn.${1}.${2}".into(),
        ),
        (
            r"^roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)$".into(),
            "mask_head.conv5_mask.${1}".into(),
        ),
    ];
    if predictors {
        r.push((
            r"^roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)$".into(),
            "box_head.${1}.${2}".into(),
        ));
        r.push((
            r"^roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)$".into(),
            "mask_head.mask_fcn_logits.${1}".into(),
        ));
    }
    r
}

/// Loads a torchvision Mask R-CNN checkpoint (converted to safetensors, e.g. with
/// `safetensors.torch.save_file(model.state_dict(), path)`) into `model`. See
/// [`maskrcnn_remaps`] for the key mapping and [`load_safetensors`] for `strict` and the
/// errors.
pub fn load_torchvision_maskrcnn(
    model: MaskRcnn,
    path: &Path,
    strict: bool,
) -> Result<(MaskRcnn, LoadReport), ModelError> {
    load_safetensors(model, path, &maskrcnn_remaps(), strict)
}

/// Loads an ImageNet torchvision ResNet checkpoint (e.g. `resnet50`'s, converted to
/// safetensors) into the backbone of `model`, leaving the rest as initialized: the paper's
/// starting point. The classifier `fc.*` is ignored.
pub fn load_imagenet_backbone(
    model: MaskRcnn,
    path: &Path,
) -> Result<(MaskRcnn, LoadReport), ModelError> {
    load_safetensors(model, path, &resnet_remaps("", "backbone."), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(remaps: &[(String, String)], key: &str) -> String {
        let remapper = KeyRemapper::from_patterns(remaps.to_vec()).unwrap();
        renamed_keys(&remapper, &[key.to_string()])
            .unwrap()
            .into_keys()
            .next()
            .unwrap()
    }

    #[test]
    fn maskrcnn_backbone_keys_map_onto_body_and_fpn() {
        let bare = maskrcnn_backbone_remaps("", "");
        assert_eq!(
            apply(&bare, "backbone.body.layer1.0.downsample.1.running_var"),
            "layer1.0.downsample.1.running_var"
        );
        assert_eq!(apply(&bare, "backbone.body.conv1.weight"), "conv1.weight");
        assert_eq!(
            apply(&bare, "backbone.fpn.inner_blocks.3.0.weight"),
            "inner_blocks.3.weight"
        );
        assert_eq!(
            apply(&bare, "backbone.fpn.layer_blocks.2.bias"),
            "layer_blocks.2.bias"
        );
        assert_eq!(
            apply(&bare, "rpn.head.conv.0.0.weight"),
            "rpn.head.conv.0.0.weight"
        );

        let nested = maskrcnn_backbone_remaps("backbone.body.", "backbone.fpn.");
        assert_eq!(
            apply(&nested, "backbone.fpn.inner_blocks.0.0.bias"),
            "backbone.fpn.inner_blocks.0.bias"
        );
        assert_eq!(
            apply(&nested, "backbone.body.layer4.2.conv3.weight"),
            "backbone.body.layer4.2.conv3.weight"
        );

        let imagenet = resnet_remaps("", "backbone.body.");
        assert_eq!(
            apply(&imagenet, "layer3.5.bn2.bias"),
            "backbone.body.layer3.5.bn2.bias"
        );
        assert_eq!(apply(&imagenet, "fc.weight"), "fc.weight");
    }

    #[test]
    fn colliding_remaps_are_an_error() {
        let remapper = KeyRemapper::from_patterns(vec![(r"^old\.", "")]).unwrap();
        let keys = ["old.conv1.weight".to_string(), "conv1.weight".to_string()];
        let err = renamed_keys(&remapper, &keys).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("old.conv1.weight") && msg.contains("`conv1.weight`"),
            "{msg}"
        );
    }

    #[test]
    fn ignorable_keys() {
        assert!(is_ignored_key("bn1.num_batches_tracked"));
        assert!(is_ignored_key("fc.bias"));
        assert!(!is_ignored_key("roi_heads.box_head.fc6.weight"));
        assert!(!is_ignored_key("layer1.0.conv1.weight"));
    }
}
