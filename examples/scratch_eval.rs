use nucseg::burn::tensor::Device;
use nucseg::data::*;
use nucseg::metrics::*;
use nucseg::stain::*;
fn main() {
    let ckpt = std::env::args().nth(1).unwrap();
    let device = Device::flex();
    let model = nucseg::model::load_model(std::path::Path::new(&ckpt), &device).unwrap();
    let norm =
        FittedClassical::load(std::path::Path::new("/work/runs/mr1/normalizer.json")).unwrap();
    let ds = MonusegDataset::open("../shared/data/monuseg-kumar").unwrap();
    let mut ms = vec![];
    for s in ds.split(KumarSplit::Test).unwrap().iter().take(3) {
        let smp = s.load().unwrap();
        let img = norm.transform(&smp.image).unwrap();
        let t = std::time::Instant::now();
        let mut found = model.predict(&[&img]).pop().unwrap();
        let secs = t.elapsed().as_secs_f64();
        let n_all = found.len();
        found.items.retain(|i| i.score >= 0.5);
        let m = ImageMetrics::compute(smp.labels.as_ref().unwrap(), &found.to_label_map()).unwrap();
        println!(
            "{}: {n_all} dets, {} ≥0.5; AJI {:.3} PQ {:.3} F1 {:.3} Dice {:.3} ({secs:.1}s)",
            s.id,
            found.len(),
            m.aji,
            m.pq.pq,
            m.f1_iou50.f1,
            m.dice
        );
        ms.push(m);
    }
    let sum = DatasetSummary::new(&ms);
    println!("mean AJI {:.3} PQ {:.3}", sum.mean.aji, sum.mean.pq_pq);
}
