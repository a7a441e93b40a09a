//! Backends against each other: every learnable module of nucseg (ResNet, FPN, RPN head,
//! box head, mask head, DCGMM's U-Net), RoIAlign, and one full Mask R-CNN forward of the
//! shipped model run on Flex (the CPU reference) and on wgpu with the same weights and
//! inputs. Each module, fed the reference's inputs, agrees to 1e-3 (max absolute
//! difference); the whole network's pyramid to 1e-3 of its range, and its detections in
//! number, score (1e-3), box (1e-2 px) and mask pixels (1e-3 of them).
//!
//! Opt-in: it needs the `wgpu` feature and a Vulkan (or Metal / DX12) adapter. Without a GPU,
//! Mesa's software Vulkan (lavapipe, Debian's `mesa-vulkan-drivers`) serves;
//! `scripts/backend_parity.sh` installs it and runs this test, and on a GPU machine
//! `scripts/gpu_check.sh` runs it on the real adapter. See docs/reliability.md.
#![cfg(feature = "wgpu")]

use nucseg::burn::module::Module;
use nucseg::burn::tensor::{Device, DeviceKind, Distribution, Tensor};
use nucseg::data::read_rgb;
use nucseg::model::MaskRcnnConfig;
use nucseg::stain::UNetConfig;
use nucseg::{Instance, Instances};

/// The detections, best score first.
fn by_score(i: &Instances) -> Vec<&Instance> {
    let mut v: Vec<_> = i.items.iter().collect();
    v.sort_by(|x, y| y.score.total_cmp(&x.score));
    v
}

/// What the test asserts, per output.
const TOLERANCE: f32 = 1e-3;

fn devices() -> (Device, Device) {
    (Device::flex(), Device::wgpu(DeviceKind::DefaultDevice))
}

/// Max |a − b| over the elements (b brought to a's device), and max |a|; printed, and
/// asserted within [`TOLERANCE`] (absolute), or within [`TOLERANCE`] of max |a| when
/// `relative` (outputs of a whole network, where rounding differences of ~25 layers add up).
fn compare<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>, relative: bool) -> f32 {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let b = b.to_device(&a.device());
    let scale = a.clone().abs().max().into_scalar::<f32>();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    println!(
        "{what:<28} max |Δ| = {diff:.3e}   (max |x| = {scale:.3e}, relative {:.1e})",
        diff / scale.max(f32::MIN_POSITIVE)
    );
    let bound = if relative {
        TOLERANCE * scale
    } else {
        TOLERANCE
    };
    assert!(
        diff.is_finite() && diff <= bound,
        "{what}: Flex and wgpu differ by {diff} (bound {bound})"
    );
    diff
}

/// [`compare`] with the absolute bound: one module, fed the reference's inputs.
fn check<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>) -> f32 {
    compare(what, a, b, false)
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn every_learnable_module_and_roi_align_agree_between_flex_and_wgpu() {
    let (cpu, gpu) = devices();
    cpu.seed(11);
    // The cpu-small preset's architecture (the shipped model's), with random weights.
    let model = MaskRcnnConfig::preset("cpu-small")
        .unwrap()
        .init(&cpu)
        .unwrap();
    let on_gpu = model.clone().to_device(&gpu);

    let x = random([1, 3, 128, 160], &cpu);
    let c = model.backbone.forward(x.clone());
    let c_gpu = on_gpu.backbone.forward(x.to_device(&gpu));
    for (l, (a, b)) in c.iter().zip(c_gpu).enumerate() {
        check(&format!("ResNet C{}", l + 2), a.clone(), b);
    }

    // Each module gets the reference's inputs, so differences do not accumulate.
    let p = model.fpn.forward(c.clone());
    let p_gpu = on_gpu.fpn.forward(c.map(|t| t.to_device(&gpu)));
    for (l, (a, b)) in p.iter().zip(p_gpu).enumerate() {
        check(&format!("FPN P{}", l + 2), a.clone(), b);
    }

    let p_on_gpu: Vec<Tensor<4>> = p.iter().map(|t| t.clone().to_device(&gpu)).collect();
    let rpn = model.rpn_head.forward(&p);
    let rpn_gpu = on_gpu.rpn_head.forward(&p_on_gpu);
    check("RPN objectness", rpn.objectness, rpn_gpu.objectness);
    check("RPN deltas", rpn.deltas, rpn_gpu.deltas);

    let boxes = vec![vec![
        [3.2, 4.7, 40.1, 35.9],
        [60.0, 10.5, 90.25, 70.0],
        [100.3, 80.1, 158.0, 127.5],
        [0.0, 0.0, 160.0, 128.0],
        [20.0, 90.0, 28.5, 97.0],
    ]];
    let roi = model.box_roi_align.forward(&p[..4], &boxes);
    let roi_gpu = on_gpu.box_roi_align.forward(&p_on_gpu[..4], &boxes);
    check("RoIAlign (box, 7x7)", roi.clone(), roi_gpu);
    let mask_roi = model.mask_roi_align.forward(&p[..4], &boxes);
    let mask_roi_gpu = on_gpu.mask_roi_align.forward(&p_on_gpu[..4], &boxes);
    check("RoIAlign (mask, 14x14)", mask_roi.clone(), mask_roi_gpu);

    let (logits, deltas) = model.box_head.forward(roi.clone());
    let (logits_gpu, deltas_gpu) = on_gpu.box_head.forward(roi.to_device(&gpu));
    check("box head logits", logits, logits_gpu);
    check("box head deltas", deltas, deltas_gpu);

    let masks = model.mask_head.forward(mask_roi.clone());
    let masks_gpu = on_gpu.mask_head.forward(mask_roi.to_device(&gpu));
    check("mask head logits", masks, masks_gpu);

    let unet = UNetConfig::new().init(&cpu).unwrap();
    let unet_gpu = unet.clone().to_device(&gpu);
    let u = random([1, 1, 64, 96], &cpu);
    check(
        "DCGMM U-Net",
        unet.forward(u.clone()),
        unet_gpu.forward(u.to_device(&gpu)),
    );
}

#[test]
fn the_shipped_model_detects_the_same_nuclei_on_flex_and_wgpu() {
    let (cpu, gpu) = devices();
    let model = nucseg::pretrained::default_model(&cpu).unwrap().model;
    let on_gpu = model.clone().to_device(&gpu);
    let sample = read_rgb(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/sample/TCGA-21-5784-01Z-00-DX1_crop.png"),
    )
    .unwrap();
    let tile = image::imageops::crop_imm(&sample, 0, 0, 256, 256).to_image();

    // The pyramid of the real tile, then the detections.
    let (x, _) = model.preprocess(&[&tile], &cpu);
    let p = model.features(x.clone());
    let p_gpu = on_gpu.features(x.to_device(&gpu));
    for (l, (a, b)) in p.iter().zip(p_gpu).enumerate() {
        compare(&format!("shipped model P{}", l + 2), a.clone(), b, true);
    }
    let a = &model.predict(std::slice::from_ref(&tile))[0];
    let b = &on_gpu.predict(std::slice::from_ref(&tile))[0];
    println!("detections: Flex {}, wgpu {}", a.len(), b.len());
    assert!(a.len() > 20, "the sample tile has nuclei: {}", a.len());
    assert_eq!(a.len(), b.len(), "detection counts differ");
    let (mut score, mut corner, mut pixels, mut differing) = (0f32, 0f32, 0usize, 0usize);
    for (x, y) in by_score(a).into_iter().zip(by_score(b)) {
        score = score.max((x.score - y.score).abs());
        for k in 0..4 {
            corner = corner.max((x.bbox[k] - y.bbox[k]).abs());
        }
        let both = x.mask.intersection(&y.mask);
        pixels += x.mask.area() as usize;
        differing += (x.mask.area() + y.mask.area() - 2 * both) as usize;
    }
    println!(
        "scores max |Δ| = {score:.3e}; box corners max |Δ| = {corner:.3e} px; mask pixels differing {differing} of {pixels}"
    );
    assert!(score <= TOLERANCE, "scores differ by {score}");
    assert!(corner <= 1e-2, "box corners differ by {corner} px");
    assert!(
        differing as f64 <= 1e-3 * pixels as f64,
        "{differing} of {pixels} mask pixels differ"
    );
}
