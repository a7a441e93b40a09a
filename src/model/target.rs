//! Ground truth in the form the Mask R-CNN losses read.

use super::ops::BoxXyxy;
use crate::{
    data::LabelMap,
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

    /// Number of nuclei.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }
}
