//! Loading torchvision-style safetensors files into the backbone: a tiny file written by
//! the test under torchvision's key names, then every way it can go wrong.

mod common;

use std::path::{Path, PathBuf};

use nucseg::burn::module::Module;
use nucseg::burn::tensor::{Device, Tensor, TensorData};
use nucseg::model::backbone::{BasicBlock, ResNet, ResNetConfig, ResidualBlock};
use nucseg::model::backbone::{Fpn, FpnConfig};
use nucseg::model::backbone::{Norm2d, NormKind};
use nucseg::model::io::{
    load_safetensors, maskrcnn_backbone_remaps, parameter_paths, resnet_remaps, NO_REMAPS,
};
use nucseg::model::ModelError;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Storage type of a tensor written to the test file.
#[derive(Clone, Copy)]
enum Store {
    F32,
    F64,
    Bf16,
    I64,
}

/// One tensor of the file: torchvision key, shape, values.
#[derive(Clone)]
struct Entry {
    key: String,
    shape: Vec<usize>,
    values: Vec<f32>,
    store: Store,
}

fn write_safetensors(path: &Path, entries: &[Entry]) {
    let bytes: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| match e.store {
            Store::F32 => e.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Store::F64 => e
                .values
                .iter()
                .flat_map(|&v| (v as f64).to_le_bytes())
                .collect(),
            // bf16 is the upper half of an f32 (exact for the values used here)
            Store::Bf16 => e
                .values
                .iter()
                .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                .collect(),
            Store::I64 => e
                .values
                .iter()
                .flat_map(|&v| (v as i64).to_le_bytes())
                .collect(),
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .zip(&bytes)
        .map(|(e, b)| {
            let dtype = match e.store {
                Store::F32 => Dtype::F32,
                Store::F64 => Dtype::F64,
                Store::Bf16 => Dtype::BF16,
                Store::I64 => Dtype::I64,
            };
            (
                e.key.clone(),
                TensorView::new(dtype, e.shape.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Deterministic pseudo-random values in [-0.5, 0.5), exactly representable in bf16.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) % 256) as f32 / 256.0 - 0.5
        })
        .collect()
}

/// A torchvision-style state dict for `module`: its parameter paths (which are
/// torchvision's keys) with random values, variances made positive, plus a
/// `num_batches_tracked` per batch norm.
fn state_dict<M: Module>(module: &M, prefix: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (i, (path, shape)) in parameter_paths(module).into_iter().enumerate() {
        let n = shape.iter().product();
        let mut v = values(i as u64, n);
        if path.ends_with("running_var") {
            v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
        }
        if let Some(bn) = path.strip_suffix(".running_var") {
            entries.push(Entry {
                key: format!("{prefix}{bn}.num_batches_tracked"),
                shape: vec![],
                values: vec![1234.0],
                store: Store::I64,
            });
        }
        entries.push(Entry {
            key: format!("{prefix}{path}"),
            shape,
            values: v,
            store: Store::F32,
        });
    }
    entries
}

fn tiny_resnet(device: &Device) -> ResNet {
    ResNetConfig::new(18).with_width(8).init(device).unwrap()
}

fn input(device: &Device) -> Tensor<4> {
    let v = values(99, 2 * 3 * 40 * 40);
    Tensor::from_data(TensorData::new(v, [2, 3, 40, 40]), device)
}

fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.try_into_vec_as().unwrap()
}

fn file(dir: &Path, name: &str, entries: &[Entry]) -> PathBuf {
    let path = dir.join(name);
    write_safetensors(&path, entries);
    path
}

#[test]
fn imagenet_resnet_checkpoint_loads_and_reproduces_outputs() {
    let device = Device::flex();
    let dir = common::tmp_dir("weights-imagenet");
    let mut entries = state_dict(&tiny_resnet(&device), "");
    // the ImageNet classifier, ignored
    entries.push(Entry {
        key: "fc.weight".into(),
        shape: vec![10, 64],
        values: values(7, 640),
        store: Store::F32,
    });
    entries.push(Entry {
        key: "fc.bias".into(),
        shape: vec![10],
        values: values(8, 10),
        store: Store::F32,
    });
    // half- and double-precision tensors are cast to f32
    entries
        .iter_mut()
        .find(|e| e.key == "conv1.weight")
        .unwrap()
        .store = Store::F64;
    entries
        .iter_mut()
        .find(|e| e.key == "layer2.0.downsample.0.weight")
        .unwrap()
        .store = Store::Bf16;
    let path = file(&dir, "resnet18.safetensors", &entries);

    let (a, report) = load_safetensors(tiny_resnet(&device), &path, NO_REMAPS, true).unwrap();
    let (b, _) = load_safetensors(tiny_resnet(&device), &path, NO_REMAPS, true).unwrap();
    let n_params = parameter_paths(&a).len();
    assert_eq!(report.applied.len(), n_params, "{report}");
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    // 20 batch norms' counters + fc.weight + fc.bias
    assert_eq!(report.ignored.len(), 22, "{:?}", report.ignored);
    assert!(report.ignored.contains(&"fc.weight".to_string()));

    // values land where torchvision's keys say
    let want = entries
        .iter()
        .find(|e| e.key == "layer2.0.downsample.1.running_var")
        .unwrap();
    let block = first_block(&a, 2);
    let Some((_, Norm2d::FrozenBatchNorm(bn))) = &block.downsample else {
        panic!("layer2.0 has a frozen-BN downsample")
    };
    let got: Vec<f32> = bn.running_var.val().try_into_vec_as().unwrap();
    assert_eq!(got, want.values);
    let conv1: Vec<f32> = a.conv1.weight.val().try_into_vec_as().unwrap();
    let want_conv1 = &entries
        .iter()
        .find(|e| e.key == "conv1.weight")
        .unwrap()
        .values;
    assert_eq!(&conv1, want_conv1);
    assert_eq!(
        a.conv1.weight.val().dtype(),
        nucseg::burn::tensor::DType::F32
    );

    // two fresh models loaded from the file compute the same features; an unloaded one not
    let x = input(&device);
    let fa = a.forward(x.clone());
    let fb = b.forward(x.clone());
    let fresh = tiny_resnet(&device).forward(x);
    for i in 0..4 {
        assert_eq!(to_vec(fa[i].clone()), to_vec(fb[i].clone()), "C{}", i + 2);
    }
    assert_ne!(to_vec(fa[3].clone()), to_vec(fresh[3].clone()));
}

/// The first block of `layer{stage}` of a ResNet-18.
fn first_block(model: &ResNet, stage: usize) -> &BasicBlock {
    let layer = match stage {
        1 => &model.layer1,
        2 => &model.layer2,
        3 => &model.layer3,
        _ => &model.layer4,
    };
    match &layer[0] {
        ResidualBlock::Basic(b) => b,
        _ => panic!("ResNet-18 has basic blocks"),
    }
}

#[test]
fn maskrcnn_backbone_keys_load_into_resnet_and_fpn() {
    let device = Device::flex();
    let dir = common::tmp_dir("weights-maskrcnn");
    let body = tiny_resnet(&device);
    let fpn = FpnConfig::new(body.out_channels())
        .with_out_channels(16)
        .init(&device);
    let mut entries = state_dict(&body, "backbone.body.");
    // newer torchvision: `inner_blocks.{i}.0.weight`
    for mut e in state_dict(&fpn, "") {
        let (blocks, rest) = e.key.split_at(e.key.find('.').unwrap() + 1);
        let (i, param) = rest.split_once('.').unwrap();
        e.key = format!("backbone.fpn.{blocks}{i}.0.{param}");
        entries.push(e);
    }
    entries.push(Entry {
        key: "rpn.head.conv.0.0.weight".into(),
        shape: vec![16, 16, 3, 3],
        values: values(5, 16 * 16 * 9),
        store: Store::F32,
    });
    let path = file(&dir, "maskrcnn.safetensors", &entries);
    let remaps = maskrcnn_backbone_remaps("", "");

    let (body, report) = load_safetensors(body, &path, &remaps, false).unwrap();
    assert!(report.missing.is_empty(), "{report}");
    assert_eq!(report.applied.len(), parameter_paths(&body).len());
    // the FPN and RPN keys are not the body's: listed under their names in the file
    assert!(report
        .unexpected
        .contains(&"backbone.fpn.layer_blocks.3.0.bias".to_string()));
    assert!(report
        .unexpected
        .contains(&"rpn.head.conv.0.0.weight".to_string()));
    assert_eq!(report.unexpected.len(), 16 + 1, "{:?}", report.unexpected);
    // strict loading of the body alone refuses the extra keys
    let err = load_safetensors(tiny_resnet(&device), &path, &remaps, true).unwrap_err();
    assert!(
        matches!(&err, ModelError::KeyMismatch { unexpected, missing, .. }
            if missing.is_empty() && unexpected.len() == 17),
        "{err}"
    );

    let (fpn, report): (Fpn, _) = load_safetensors(fpn, &path, &remaps, false).unwrap();
    assert_eq!(report.applied.len(), 16, "{report}");
    assert!(report.missing.is_empty());
    let want = &entries
        .iter()
        .find(|e| e.key == "backbone.fpn.inner_blocks.2.0.weight")
        .unwrap()
        .values;
    let got: Vec<f32> = fpn.inner_blocks[2].weight.val().try_into_vec_as().unwrap();
    assert_eq!(&got, want);
}

#[test]
fn missing_and_unexpected_keys_are_listed() {
    let device = Device::flex();
    let dir = common::tmp_dir("weights-keys");
    let mut entries = state_dict(&tiny_resnet(&device), "");
    entries.retain(|e| e.key != "layer3.1.conv2.weight");
    entries.push(Entry {
        key: "layer5.0.conv1.weight".into(),
        shape: vec![2],
        values: vec![1.0, 2.0],
        store: Store::F32,
    });
    let path = file(&dir, "partial.safetensors", &entries);

    let err = load_safetensors(tiny_resnet(&device), &path, NO_REMAPS, true).unwrap_err();
    match &err {
        ModelError::KeyMismatch {
            missing,
            unexpected,
            path: p,
        } => {
            assert_eq!(missing, &["layer3.1.conv2.weight"]);
            assert_eq!(unexpected, &["layer5.0.conv1.weight"]);
            assert_eq!(p, &path);
        }
        other => panic!("expected KeyMismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("layer3.1.conv2.weight") && msg.contains("layer5.0.conv1.weight"),
        "{msg}"
    );

    // lenient: loads the rest and reports the same keys
    let (model, report) = load_safetensors(tiny_resnet(&device), &path, NO_REMAPS, false).unwrap();
    assert_eq!(report.missing, ["layer3.1.conv2.weight"]);
    assert_eq!(report.unexpected, ["layer5.0.conv1.weight"]);
    assert!(!report.is_complete());
    assert_eq!(report.applied.len(), parameter_paths(&model).len() - 1);
}

#[test]
fn shape_mismatch_names_both_keys_and_shapes() {
    let device = Device::flex();
    let dir = common::tmp_dir("weights-shape");
    let mut entries = state_dict(&tiny_resnet(&device), "backbone.body.");
    let e = entries
        .iter_mut()
        .find(|e| e.key == "backbone.body.layer1.0.conv1.weight")
        .unwrap();
    e.shape = vec![8, 8, 1, 1];
    e.values.truncate(64);
    let path = file(&dir, "shape.safetensors", &entries);
    let remaps = resnet_remaps("backbone.body.", "");
    for strict in [true, false] {
        let err = load_safetensors(tiny_resnet(&device), &path, &remaps, strict).unwrap_err();
        match &err {
            ModelError::ShapeMismatch { mismatches, .. } => {
                assert_eq!(mismatches.len(), 1);
                let m = &mismatches[0];
                assert_eq!(m.key, "layer1.0.conv1.weight");
                assert_eq!(m.file_key, "backbone.body.layer1.0.conv1.weight");
                assert_eq!(m.expected, [8, 8, 3, 3]);
                assert_eq!(m.found, [8, 8, 1, 1]);
            }
            other => panic!("expected ShapeMismatch, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("[8, 8, 3, 3]") && msg.contains("[8, 8, 1, 1]"),
            "{msg}"
        );
    }
}

#[test]
fn unreadable_files_and_bad_remaps_are_errors() {
    let device = Device::flex();
    let dir = common::tmp_dir("weights-files");
    let missing = dir.join("no-such-file.safetensors");
    let err = load_safetensors(tiny_resnet(&device), &missing, NO_REMAPS, false).unwrap_err();
    assert!(matches!(err, ModelError::WeightFile { .. }), "{err}");
    assert!(
        err.to_string().contains("no-such-file.safetensors"),
        "{err}"
    );

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file").unwrap();
    let err = load_safetensors(tiny_resnet(&device), &garbage, NO_REMAPS, false).unwrap_err();
    assert!(err.to_string().contains("garbage.safetensors"), "{err}");

    let path = file(
        &dir,
        "ok.safetensors",
        &state_dict(&tiny_resnet(&device), ""),
    );
    let err = load_safetensors(tiny_resnet(&device), &path, &[("layer(", "x")], false).unwrap_err();
    assert!(matches!(err, ModelError::BadRemap { .. }), "{err}");
    // the crate-wide error wraps it
    let wrapped: nucseg::Error = err.into();
    assert!(wrapped.to_string().contains("layer("), "{wrapped}");
}

#[test]
fn group_norm_weight_and_bias_load_into_gamma_and_beta() {
    let device = Device::flex();
    let dir = common::tmp_dir("weights-gn");
    let gn = || {
        ResNetConfig::new(18)
            .with_width(8)
            .with_norm(NormKind::GroupNorm { groups: 4 })
            .init(&device)
            .unwrap()
    };
    // a PyTorch GN network names the affine parameters weight / bias
    let entries: Vec<Entry> = state_dict(&gn(), "")
        .into_iter()
        .map(|mut e| {
            e.key = e.key.replace(".gamma", ".weight").replace(".beta", ".bias");
            e
        })
        .collect();
    assert!(entries.iter().any(|e| e.key == "bn1.weight"));
    let path = file(&dir, "gn.safetensors", &entries);
    let (model, report) = load_safetensors(gn(), &path, NO_REMAPS, true).unwrap();
    assert!(report.is_complete(), "{report}");
    let Norm2d::GroupNorm(bn1) = &model.bn1 else {
        panic!("group norm stem")
    };
    let got: Vec<f32> = bn1.gamma.as_ref().unwrap().val().try_into_vec_as().unwrap();
    let want = &entries
        .iter()
        .find(|e| e.key == "bn1.weight")
        .unwrap()
        .values;
    assert_eq!(&got, want);
}
