//! Weight averaging: the element-wise mean of several trained networks of one architecture,
//! as stochastic weight averaging (Izmailov et al., *Averaging weights leads to wider optima
//! and better generalization*, 2018) averages the end points of learning-rate cycles. The
//! networks here use group norm (or frozen batch norm), so no normalization statistics
//! need recomputing after the average.

use burn::{
    module::{Module, ModuleMapper, ModuleVisitor, Param},
    tensor::Tensor,
};

use crate::model::{MaskRcnn, ModelError};

/// The element-wise mean of `models`' float parameters, in a network built like the
/// first (its configuration, and its integer and boolean parameters, if any).
///
/// Errors if `models` is empty or if a model's configuration or parameter shapes differ
/// from the first's (the error names the model by its position, counting from 1).
pub fn average_weights(models: &[MaskRcnn]) -> Result<MaskRcnn, ModelError> {
    let (first, rest) = models
        .split_first()
        .ok_or_else(|| ModelError::InvalidConfig("no models to average".into()))?;
    let reference = config_fields(first)?;
    let mut sums = collect_float_parameters(first);
    for (i, model) in rest.iter().enumerate() {
        let mismatch = |reason: String| ModelError::AverageMismatch {
            index: i + 2,
            reason,
        };
        let fields = config_fields(model)?;
        let differing: Vec<&str> = reference
            .iter()
            .chain(fields.iter())
            .map(|(k, _)| k.as_str())
            .filter(|k| reference.get(*k) != fields.get(*k))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !differing.is_empty() {
            return Err(mismatch(format!(
                "has another configuration ({})",
                differing.join(", ")
            )));
        }
        let params = collect_float_parameters(model);
        if params.len() != sums.len() {
            return Err(mismatch(format!(
                "has {} float parameters, the first {}",
                params.len(),
                sums.len()
            )));
        }
        for (j, (sum, p)) in sums.iter_mut().zip(params).enumerate() {
            if sum.dims() != p.dims() {
                return Err(mismatch(format!(
                    "has {} values in parameter {} where the first has {}",
                    p.dims()[0],
                    j + 1,
                    sum.dims()[0]
                )));
            }
            *sum = sum.clone() + p;
        }
    }
    let scale = 1.0 / models.len() as f64;
    let mut mapper = Replace {
        values: sums.into_iter().map(|s| s.mul_scalar(scale)).collect(),
        next: 0,
    };
    Ok(first.clone().map(&mut mapper))
}

/// The configuration's top-level fields (as its JSON form has them).
fn config_fields(
    model: &MaskRcnn,
) -> Result<serde_json::Map<String, serde_json::Value>, ModelError> {
    match serde_json::to_value(&model.config) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ModelError::InvalidConfig(
            "the model configuration is not a JSON object".into(),
        )),
        Err(e) => Err(ModelError::InvalidConfig(e.to_string())),
    }
}

/// Every float parameter, flattened, in the module's visiting order.
fn collect_float_parameters(model: &MaskRcnn) -> Vec<Tensor<1>> {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let n = value.shape().num_elements();
            self.0.push(value.reshape([n]));
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// Replaces the float parameters, in visiting order, by `values` (reshaped to each
/// parameter's shape); ids stay.
struct Replace {
    values: Vec<Tensor<1>>,
    next: usize,
}

impl ModuleMapper for Replace {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = self.values[self.next].clone();
        self.next += 1;
        param.map(|old| value.reshape(old.shape()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Device;
    use crate::model::MaskRcnnConfig;

    /// Every float parameter's values, concatenated in visiting order.
    fn values(model: &MaskRcnn) -> Vec<f32> {
        collect_float_parameters(model)
            .into_iter()
            .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    /// `model` with every float parameter `x` replaced by `a·x + b`.
    fn affine(model: &MaskRcnn, a: f64, b: f64) -> MaskRcnn {
        let sums = collect_float_parameters(model);
        let mut mapper = Replace {
            values: sums
                .into_iter()
                .map(|s| s.mul_scalar(a).add_scalar(b))
                .collect(),
            next: 0,
        };
        model.clone().map(&mut mapper)
    }

    #[test]
    fn the_average_is_the_element_wise_mean() {
        let device = Device::flex();
        let a = MaskRcnnConfig::tiny().init(&device).unwrap();
        let b = affine(&a, 3.0, 1.0);
        let c = affine(&a, -1.0, 0.5);
        let (va, vb, vc) = (values(&a), values(&b), values(&c));
        assert!(va.len() > 1000, "{} values", va.len());
        let mean = values(&average_weights(&[a.clone(), b.clone(), c.clone()]).unwrap());
        assert_eq!(mean.len(), va.len());
        for i in 0..va.len() {
            let want = (va[i] + vb[i] + vc[i]) / 3.0; // = a·1 + 0.5
            assert!(
                (mean[i] - want).abs() < 1e-5,
                "value {i}: {} vs {want}",
                mean[i]
            );
        }
        // A network averaged with itself, or alone, is unchanged.
        assert_eq!(
            values(&average_weights(&[a.clone(), a.clone()]).unwrap()),
            va
        );
        assert_eq!(
            values(&average_weights(std::slice::from_ref(&a)).unwrap()),
            va
        );
    }

    #[test]
    fn models_of_other_architectures_are_refused_by_position() {
        let device = Device::flex();
        let a = MaskRcnnConfig::tiny().init(&device).unwrap();
        let dense = MaskRcnnConfig::tiny().with_dense().init(&device).unwrap();
        let err = average_weights(&[a.clone(), a.clone(), dense]).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ModelError::AverageMismatch { index: 3, .. }),
            "{text}"
        );
        assert!(text.contains("dense_head"), "{text}");
        assert!(matches!(
            average_weights(&[]),
            Err(ModelError::InvalidConfig(_))
        ));
    }
}
