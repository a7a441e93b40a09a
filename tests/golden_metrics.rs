//! Metrics against the golden values of an independent implementation
//! (`shared/metrics-golden/reference.py`, numpy/scipy) on real MoNuSeg ground truth with
//! perturbed predictions.

mod common;

use nucseg::{data::read_label_map, metrics::ImageMetrics};

#[test]
fn every_golden_case_matches_to_1e_9() {
    let dir = common::shared().join("metrics-golden");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(expected.len() >= 30, "{} cases", expected.len());
    let mut checked = 0;
    for (case, values) in &expected {
        let truth = read_label_map(dir.join(format!("{case}_true.png"))).unwrap();
        let pred = read_label_map(dir.join(format!("{case}_pred.png"))).unwrap();
        let got = ImageMetrics::compute(&truth, &pred).unwrap().to_json();
        for (name, want) in values.as_object().unwrap() {
            let have = got
                .get(name)
                .unwrap_or_else(|| panic!("{case}: metric {name} missing"));
            let (w, h) = (want.as_f64().unwrap(), have.as_f64().unwrap());
            assert!((w - h).abs() <= 1e-9, "{case}: {name} = {h}, expected {w}");
            checked += 1;
        }
    }
    assert!(checked >= 30 * 21, "{checked} values checked");
}
