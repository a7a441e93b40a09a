//! Ground truth in the form the Mask R-CNN losses read.

use ndarray::Array2;

use super::ops::BoxXyxy;
use crate::{
    data::{distance_transform, LabelMap},
    instances::{InstanceMask, Instances},
};

/// The ground-truth nuclei of one training image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingTarget {
    /// Boxes `[x1, y1, x2, y2]`: each mask's tight box in continuous coordinates
    /// (`x2 = last column + 1`).
    pub boxes: Vec<BoxXyxy>,
    /// Class of each box, `1..` (nuclei: 1).
    pub labels: Vec<u32>,
    /// Mask of each box.
    pub masks: Vec<InstanceMask>,
}

impl TrainingTarget {
    /// One target per instance of a label map, all of class 1.
    pub fn from_label_map(labels: &LabelMap) -> Self {
        Self::from_instances(&Instances::from_label_map(labels))
    }

    /// One target per instance (class and mask kept; box = the mask's tight box). Empty
    /// masks are skipped.
    pub fn from_instances(instances: &Instances) -> Self {
        let mut t = TrainingTarget::default();
        for inst in &instances.items {
            if let Some(b) = inst.mask.tight_bbox() {
                t.boxes
                    .push([b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]);
                t.labels.push(inst.class_id.max(1));
                t.masks.push(inst.mask.clone());
            }
        }
        t
    }

    /// The dense head's target (Naylor et al. 2019): each nucleus's Euclidean distance to
    /// its own edge divided by its largest, so 1 at its centre and 0 off it, averaged over
    /// `stride × stride` cells of a `width × height` input (nuclei cut by the input's edge
    /// end there).
    ///
    /// # Shapes
    /// → row-major `[height / stride, width / stride]` (sides rounded up).
    pub fn distance_map(&self, width: usize, height: usize, stride: usize) -> Vec<f32> {
        let stride = stride.max(1);
        let (gw, gh) = (width.div_ceil(stride), height.div_ceil(stride));
        let mut sums = vec![0.0f32; gw * gh];
        for mask in &self.masks {
            let (w, h) = (mask.width as usize, mask.height as usize);
            let inside = Array2::from_shape_fn((h, w), |(y, x)| mask.data[y * w + x]);
            let distance = distance_transform(&inside, true);
            let peak = distance.iter().fold(0.0f32, |a, &b| a.max(b));
            if peak <= 0.0 {
                continue;
            }
            for ((y, x), &d) in distance.indexed_iter() {
                let (px, py) = (mask.x0 as usize + x, mask.y0 as usize + y);
                if d > 0.0 && px < width && py < height {
                    sums[(py / stride) * gw + px / stride] += d / peak;
                }
            }
        }
        let cell = (stride * stride) as f32;
        sums.iter().map(|s| (s / cell).min(1.0)).collect()
    }

    /// Number of nuclei.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }
}
