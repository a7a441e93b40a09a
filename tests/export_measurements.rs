//! Per-nucleus measurements against hand-computed values, and their CSV form.

use image::{Rgb, RgbImage};
use nucseg::{
    colour::{deconvolve, RUIFROK_HED},
    data::LabelMap,
    export::{measure_nuclei, measurements_csv, NucleusMeasurements},
    Instance, InstanceMask, Instances, Nuclei,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

fn measure_one(width: u32, height: u32, pixels: Vec<(u32, u32)>) -> NucleusMeasurements {
    let image = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut list = Instances::new(width, height);
    list.items
        .push(Instance::from_mask(InstanceMask::from_pixels(pixels)));
    let rows = measure_nuclei(&image, &Nuclei::from_instances(&list)).unwrap();
    assert_eq!(rows.len(), 1);
    rows.into_iter().next().unwrap()
}

#[test]
fn rectangle_axes_eccentricity_solidity() {
    // 9 x 3 pixels at (2, 5): x in 2..11, y in 5..8.
    let px: Vec<(u32, u32)> = (5..8).flat_map(|y| (2..11).map(move |x| (x, y))).collect();
    let m = measure_one(16, 12, px);
    assert_eq!(m.id, 1);
    assert_eq!(m.area, 27);
    assert_eq!((m.centroid_x, m.centroid_y), (6.0, 6.0));
    // Variances (w² − 1)/12: 80/12 along x, 8/12 along y; axes 4√λ.
    assert!(close(
        m.major_axis_length,
        4.0 * (80.0f64 / 12.0).sqrt(),
        1e-9
    )); // 10.328
    assert!(close(
        m.minor_axis_length,
        4.0 * (8.0f64 / 12.0).sqrt(),
        1e-9
    )); // 3.266
    assert!(close(m.eccentricity, 0.9f64.sqrt(), 1e-9)); // √(1 − 0.1)
    assert_eq!(m.solidity, 1.0);
    // Crofton, 4 directions: (w + h − 1)·π(1 + √2)/4 + π/4 = 11 · 1.896 + 0.785.
    let pi = std::f64::consts::PI;
    assert!(close(
        m.perimeter,
        11.0 * pi * (1.0 + 2f64.sqrt()) / 4.0 + pi / 4.0,
        1e-9
    )); // 21.643
    assert!(close(
        m.equivalent_diameter,
        (108.0 / std::f64::consts::PI).sqrt(),
        1e-12
    ));
    assert_eq!((m.mean_r, m.mean_g, m.mean_b), (255.0, 255.0, 255.0));
    assert_eq!(m.mean_haematoxylin, 0.0, "white has no stain");
    assert_eq!(m.score, 1.0);
}

#[test]
fn l_shape_hand_computed() {
    // #..
    // #..
    // ###   at (3, 3)
    let m = measure_one(8, 8, vec![(3, 3), (3, 4), (3, 5), (4, 5), (5, 5)]);
    assert_eq!(m.area, 5);
    assert!(close(m.centroid_x, 3.6, 1e-12) && close(m.centroid_y, 4.4, 1e-12));
    // Hull of the corners: (0,0) (1,0) (3,2) (3,3) (0,3) relative, area 7.
    assert!(close(m.solidity, 5.0 / 7.0, 1e-12));
    // Covariance [[0.64, 0.36], [0.36, 0.64]]: λ = 1.0 and 0.28.
    assert!(close(m.major_axis_length, 4.0, 1e-9));
    assert!(close(m.minor_axis_length, 4.0 * 0.28f64.sqrt(), 1e-9));
    assert!(close(m.eccentricity, 0.72f64.sqrt(), 1e-9));
    // The sixteen 2 x 2 windows touching it, coded TL·8 + BL·4 + TR·2 + BR·1, row by row:
    // 1 4 0 0 / 3 12 0 0 / 3 13 5 4 / 2 10 10 8, weighing 2(π/4)(1 + 1/√2) for 1 and 5,
    // 2·π/(2√2) for the 3s, 2·π/4 for 12 and 8, π/2 for 13, 3·π/(4√2) for 2 and the 10s.
    let pi = std::f64::consts::PI;
    let expected = 3.0 * pi / 2.0 + 9.0 * pi / (4.0 * 2f64.sqrt()); // 9.711
    assert!(close(m.perimeter, expected, 1e-9), "{}", m.perimeter);
}

#[test]
fn large_disk_is_round_and_its_perimeter_is_close_to_two_pi_r() {
    use nucseg::export::skimage_perimeter;
    for r in [6.0f64, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 45.0, 80.0] {
        let c = r.ceil() as i64 + 2;
        let size = 2 * c as u32 + 1;
        let px: Vec<(u32, u32)> = (0..size)
            .flat_map(|y| (0..size).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let (dx, dy) = (x as f64 - c as f64, y as f64 - c as f64);
                dx * dx + dy * dy <= r * r
            })
            .collect();
        let mask = InstanceMask::from_pixels(px.iter().copied());
        let m = measure_one(size, size, px);
        let two_pi_r = 2.0 * std::f64::consts::PI * r;
        let rel = m.perimeter / two_pi_r - 1.0;
        let sk = skimage_perimeter(mask.width, mask.height, &mask.data) / two_pi_r - 1.0;
        eprintln!(
            "r {r}: Crofton {:.2} ({rel:+.4}), skimage perimeter ({sk:+.4}) vs 2πr {two_pi_r:.2}; solidity {:.4}",
            m.perimeter, m.solidity
        );
        assert!(
            m.eccentricity < 0.01,
            "r {r}: eccentricity {}",
            m.eccentricity
        );
        assert_eq!((m.centroid_x, m.centroid_y), (c as f64, c as f64));
        // A constant absolute excess (≈ 2 px, the digitized disk's outer staircase): under
        // 5 % at nucleus sizes, under 2 % from r = 20, under 1 % from r = 30.
        let tol = if r >= 30.0 {
            0.01
        } else if r >= 20.0 {
            0.02
        } else {
            0.05
        };
        assert!(
            rel.abs() < tol,
            "r {r}: perimeter {} ({rel:+.4})",
            m.perimeter
        );
        if r >= 20.0 {
            assert!(
                (0.03..0.07).contains(&sk),
                "r {r}: skimage's perimeter is {sk:+.4} off"
            );
            assert!(close(m.major_axis_length, 2.0 * r, 0.02 * r), "{m:?}");
            assert!(close(m.equivalent_diameter, 2.0 * r, 0.01 * r), "{m:?}");
            // The staircase counts as concavity against the hull of the pixel corners:
            // about (r / (r + 0.5))².
            let expected = (r / (r + 0.5)).powi(2);
            assert!(
                close(m.solidity, expected, 0.01),
                "r {r}: solidity {}",
                m.solidity
            );
        }
    }
}

#[test]
fn one_pixel_nucleus() {
    let m = measure_one(3, 3, vec![(1, 2)]);
    assert_eq!((m.area, m.centroid_x, m.centroid_y), (1, 1.0, 2.0));
    assert!(close(m.perimeter, 2.6815, 1e-4), "{}", m.perimeter);
    assert_eq!(
        (m.major_axis_length, m.minor_axis_length, m.eccentricity),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(m.solidity, 1.0);
}

#[test]
fn colours_and_haematoxylin_follow_the_pixels_under_the_mask() {
    // Columns 0..4 purple (haematoxylin-like), 4..8 white; the nucleus covers x 2..6 on
    // row 1 only, so half purple and half white.
    let purple = Rgb([90, 40, 140]);
    let image = RgbImage::from_fn(8, 3, |x, _| if x < 4 { purple } else { Rgb([255; 3]) });
    let labels = LabelMap::from_fn(8, 3, |x, y| u32::from(y == 1 && (2..6).contains(&x)) * 5);
    let rows = measure_nuclei(&image, &Nuclei::from_label_map(labels)).unwrap();
    let m = &rows[0];
    assert_eq!(m.id, 5, "label-map ids are kept");
    assert_eq!(
        (m.mean_r, m.mean_g, m.mean_b),
        (
            (90.0 + 255.0) / 2.0,
            (40.0 + 255.0) / 2.0,
            (140.0 + 255.0) / 2.0
        )
    );
    // White deconvolves to 0: the mean is half the purple pixel's concentration.
    let one = RgbImage::from_pixel(1, 1, purple);
    let [h, _, _] = deconvolve(&one, &RUIFROK_HED);
    assert!(
        h[[0, 0]] > 0.3,
        "purple is haematoxylin-rich: {}",
        h[[0, 0]]
    );
    assert!(close(m.mean_haematoxylin, h[[0, 0]] as f64 / 2.0, 1e-6));
}

#[test]
fn ids_follow_the_label_map_order_and_the_csv_has_them() {
    let image = RgbImage::from_pixel(12, 4, Rgb([200, 150, 220]));
    let mut list = Instances::new(12, 4);
    let block = |x0: u32, n: u32| InstanceMask::from_pixels((x0..x0 + n).map(|x| (x, 1)));
    for (x0, n, score) in [(0, 2, 0.3), (3, 3, 0.9), (7, 4, 0.6)] {
        list.items.push(Instance {
            score,
            ..Instance::from_mask(block(x0, n))
        });
    }
    let nuclei = Nuclei::from_instances(&list);
    let rows = measure_nuclei(&image, &nuclei).unwrap();
    let labels = list.to_label_map();
    let got: Vec<(u32, u64, f64)> = rows.iter().map(|r| (r.id, r.area, r.score)).collect();
    assert_eq!(
        got,
        vec![
            (1, 3, 0.9f32 as f64),
            (2, 4, 0.6f32 as f64),
            (3, 2, 0.3f32 as f64)
        ]
    );
    for r in &rows {
        let at = labels.get(r.centroid_x.round() as u32, r.centroid_y.round() as u32);
        assert_eq!(at, r.id, "row {} sits on its id in to_label_map()", r.id);
    }

    let csv = measurements_csv(&rows);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,centroid_x,centroid_y,area,perimeter,equivalent_diameter,major_axis_length,\
         minor_axis_length,eccentricity,solidity,mean_r,mean_g,mean_b,mean_haematoxylin,score"
    );
    assert_eq!(lines.len(), 4);
    // A 3-pixel bar: centroid (4, 1), perimeter 3·1.896 + 0.785 = 6.474, √(12/π) = 1.954,
    // 4√(8/12) = 3.266, eccentricity 1.
    let expected = format!(
        "1,4.000,1.000,3,6.474,1.954,3.266,0.000,1.0000,1.0000,200.00,150.00,220.00,{:.4},0.9000",
        rows[0].mean_haematoxylin
    );
    assert_eq!(lines[1], expected);
    for (line, r) in lines[1..].iter().zip(&rows) {
        let cols: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(cols.len(), 15);
        assert_eq!(cols[0] as u32, r.id);
        assert!(close(cols[1], r.centroid_x, 5e-4) && close(cols[4], r.perimeter, 5e-4));
    }
    assert_eq!(measurements_csv(&[]).lines().count(), 1, "header only");
}

#[test]
fn size_mismatch_is_an_error_not_a_panic() {
    let image = RgbImage::new(4, 4);
    let nuclei = Nuclei::from_label_map(LabelMap::new(5, 4));
    let err = measure_nuclei(&image, &nuclei).unwrap_err();
    assert!(err.to_string().contains("5x4"), "{err}");
}
