//! Shapes, strides and parameter counts of the ResNet body and the FPN.

use nucseg::burn::tensor::{Device, Distribution, Tensor};
use nucseg::model::backbone::FpnConfig;
use nucseg::model::backbone::{ResNet, ResNetConfig};
use nucseg::model::io::parameter_paths;

/// Learnable parameters as torchvision counts them (`sum(p.numel() for p in
/// model.parameters())`): frozen-BN running statistics are buffers there, not parameters.
fn torchvision_param_count(model: &ResNet) -> usize {
    parameter_paths(model)
        .into_iter()
        .filter(|(p, _)| !p.ends_with("running_mean") && !p.ends_with("running_var"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// The same count from the architecture (He et al. 2016, Table 1; bias-free convolutions,
/// two affine parameters per norm channel, projection shortcut where the shape changes).
fn expected_param_count(depth: usize, width: usize) -> usize {
    let (blocks, expansion) = match depth {
        18 => ([2, 2, 2, 2], 1),
        34 => ([3, 4, 6, 3], 1),
        50 => ([3, 4, 6, 3], 4),
        101 => ([3, 4, 23, 3], 4),
        _ => unreachable!(),
    };
    let mut n = 3 * width * 49 + 2 * width;
    let mut c_in = width;
    for (stage, &count) in blocks.iter().enumerate() {
        let p = width << stage;
        for i in 0..count {
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            n += if expansion == 1 {
                c_in * p * 9 + 2 * p + p * p * 9 + 2 * p
            } else {
                c_in * p + 2 * p + p * p * 9 + 2 * p + p * 4 * p + 2 * 4 * p
            };
            if stride != 1 || c_in != p * expansion {
                n += c_in * p * expansion + 2 * p * expansion;
            }
            c_in = p * expansion;
        }
    }
    n
}

#[test]
fn parameter_counts_equal_torchvision() {
    let device = Device::flex();
    // torchvision resnet18 / 34 / 50: 11,689,512 / 21,797,672 / 25,557,032 parameters with
    // the fc classifier (512·1000 + 1000 or 2048·1000 + 1000), here without it.
    for (depth, without_fc) in [(18, 11_176_512), (34, 21_284_672), (50, 23_508_032)] {
        let model = ResNetConfig::new(depth).init(&device).unwrap();
        assert_eq!(
            expected_param_count(depth, 64),
            without_fc,
            "formula, depth {depth}"
        );
        assert_eq!(
            torchvision_param_count(&model),
            without_fc,
            "model, depth {depth}"
        );
    }
    // torchvision resnet101: 44,549,160 with fc; checked on the formula and a tiny model
    assert_eq!(expected_param_count(101, 64), 44_549_160 - 2_049_000);
}

fn check_strides(model: &ResNet, size: usize, depth: usize) {
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let feats = model.forward(x);
    let ch = model.out_channels();
    for (i, f) in feats.iter().enumerate() {
        let stride = 4 << i;
        assert_eq!(
            f.dims(),
            [1, ch[i], size / stride, size / stride],
            "C{} of ResNet-{depth}",
            i + 2
        );
    }
}

#[test]
fn every_depth_has_strides_4_to_32() {
    let device = Device::flex();
    for (depth, channels) in [
        (18, [4, 8, 16, 32]),
        (34, [4, 8, 16, 32]),
        (50, [16, 32, 64, 128]),
    ] {
        let model = ResNetConfig::new(depth)
            .with_width(4)
            .init(&device)
            .unwrap();
        assert_eq!(model.out_channels(), channels);
        assert_eq!(
            torchvision_param_count(&model),
            expected_param_count(depth, 4),
            "depth {depth}"
        );
        check_strides(&model, 64, depth);
    }
    let r101 = ResNetConfig::new(101).with_width(4).init(&device).unwrap();
    assert_eq!(r101.layer3.len(), 23);
    assert_eq!(torchvision_param_count(&r101), expected_param_count(101, 4));
    check_strides(&r101, 32, 101);
}

#[test]
fn odd_sizes_flow_through_resnet_and_fpn() {
    let device = Device::flex();
    let body = ResNetConfig::new(18).with_width(8).init(&device).unwrap();
    let fpn = FpnConfig::new(body.out_channels())
        .with_out_channels(16)
        .init(&device);
    assert_eq!(fpn.out_channels(), 16);
    let x = Tensor::<4>::random([2, 3, 50, 70], Distribution::Normal(0.0, 1.0), &device);
    let c = body.forward(x);
    // every stride-2 layer rounds up: 50 → 25 → 13 → 7 → 4 → 2, 70 → 35 → 18 → 9 → 5 → 3
    let sizes = [(13, 18), (7, 9), (4, 5), (2, 3)];
    for (i, (f, (h, w))) in c.iter().zip(sizes).enumerate() {
        assert_eq!(f.dims(), [2, body.out_channels()[i], h, w], "C{}", i + 2);
    }
    let p = fpn.forward(c);
    for (i, (h, w)) in sizes.into_iter().chain([(1, 2)]).enumerate() {
        assert_eq!(p[i].dims(), [2, 16, h, w], "P{}", i + 2);
        let v: Vec<f32> = p[i].clone().try_into_vec_as().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "P{} has non-finite values",
            i + 2
        );
    }
}
