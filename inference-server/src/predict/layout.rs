//! The model's side of `predict`: the one `[-1, F]` input that rows fill
//! (its width, datatype and the feature names of the model card), and the
//! classifier's label output that gets class names.

use crate::model::ModelCard;
use crate::tensor::{DataType, Tensor, TensorData, TensorSpec};

/// The one `[-1, F]` numeric input that rows fill, and the names a row may
/// use for its columns.
#[derive(Debug, Clone)]
pub struct Layout {
    pub input: TensorSpec,
    pub width: usize,
    /// Feature names from the model card, one per column (may be empty).
    pub features: Vec<String>,
}

impl Layout {
    pub fn new(inputs: &[TensorSpec], card: &ModelCard) -> Result<Layout, String> {
        let describe = || {
            inputs
                .iter()
                .map(|s| format!("{} {} {:?}", s.name, s.datatype, s.shape))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let [input] = inputs else {
            return Err(format!(
                "predict scores models with one input of shape [-1, F]; this model has: {}",
                describe()
            ));
        };
        let width = match input.shape.as_slice() {
            [b, f] if *b < 0 && *f > 0 => *f as usize,
            _ => {
                return Err(format!(
                    "predict scores models with one input of shape [-1, F]; this model has: {}",
                    describe()
                ));
            }
        };
        if input.datatype == DataType::Bytes {
            return Err(format!(
                "input '{}' is BYTES; predict reads numbers",
                input.name
            ));
        }
        let features = if card.feature_names.len() == width {
            card.feature_names.clone()
        } else {
            Vec::new()
        };
        Ok(Layout {
            input: input.clone(),
            width,
            features,
        })
    }

    /// Checks that `x` fits the input's datatype.
    pub fn check(&self, x: f64) -> Result<(), String> {
        let dt = self.input.datatype;
        if !x.is_finite() {
            return Err(format!("{x} is not a finite number"));
        }
        let range = crate::match_datatype!(dt, {
            bool T => Some((0.0, 1.0)),
            int T => Some((T::MIN as f64, T::MAX as f64)),
            half T => None,
            float T => None,
            bytes T => unreachable!("refused by Layout::new"),
        });
        match range {
            Some((lo, hi)) if x.fract() != 0.0 || x < lo || x > hi => {
                Err(format!("{x} is not a valid {dt} value"))
            }
            _ => Ok(()),
        }
    }

    /// The batch's values as the input's datatype (already checked).
    pub fn tensor(&self, values: &[f64]) -> Result<Tensor, String> {
        let data: TensorData = crate::match_datatype!(self.input.datatype, {
            bool T => values.iter().map(|&x| x != 0.0).collect::<Vec<T>>().into(),
            int T => values.iter().map(|&x| x as T).collect::<Vec<T>>().into(),
            half T => values.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>().into(),
            float T => values.iter().map(|&x| x as T).collect::<Vec<T>>().into(),
            bytes T => unreachable!("refused by Layout::new"),
        });
        let rows = values.len() / self.width;
        Tensor::new(self.input.name.clone(), vec![rows, self.width], data)
            .map_err(|e| e.to_string())
    }
}

/// The classifier's label output and its class names, when the card has them.
pub struct LabelClasses {
    pub output: String,
    pub classes: Vec<String>,
}

pub fn label_output(outputs: &[TensorSpec], card: &ModelCard) -> Option<LabelClasses> {
    if card.class_labels.is_empty() {
        return None;
    }
    outputs
        .iter()
        .find(|o| {
            o.name == "label"
                && matches!(
                    o.datatype,
                    DataType::Int64 | DataType::Int32 | DataType::Uint64 | DataType::Uint32
                )
        })
        .map(|o| LabelClasses {
            output: o.name.clone(),
            classes: card.class_labels.clone(),
        })
}

impl LabelClasses {
    /// The class name of the label at `index` of `label`'s data, if the card has one.
    pub fn class_of(&self, label: &TensorData, index: usize) -> Option<&str> {
        // Generic over every integer type: the 8- and 16-bit ones cannot fail.
        #[allow(clippy::unnecessary_fallible_conversions)]
        let class = crate::match_data!(label, {
            bool v => None,
            int v => usize::try_from(v[index]).ok(),
            half v => None,
            float v => None,
            bytes v => None,
        });
        class.and_then(|i| self.classes.get(i)).map(String::as_str)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The iris layout: one FP32 input of four named features.
    pub(crate) fn iris_layout() -> Layout {
        let card = ModelCard {
            feature_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            ..Default::default()
        };
        let spec = TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 4],
        };
        Layout::new(&[spec], &card).unwrap()
    }

    #[test]
    fn integer_inputs_refuse_fractions_and_out_of_range_values() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Uint8,
            shape: vec![-1, 1],
        };
        let layout = Layout::new(&[spec], &ModelCard::default()).unwrap();
        assert!(layout.check(3.0).is_ok());
        assert!(layout.check(3.5).is_err());
        assert!(layout.check(256.0).is_err());
        assert!(layout.check(f64::NAN).is_err());
    }

    #[test]
    fn float_layouts_build_tensors_of_the_input_datatype() {
        let layout = iris_layout();
        let t = layout
            .tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
            .unwrap();
        assert_eq!(t.shape(), [2, 4]);
        assert_eq!(
            t.data(),
            &TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
        );
    }

    #[test]
    fn models_without_one_matrix_input_are_refused() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 3, 3],
        };
        let err = Layout::new(&[spec], &ModelCard::default()).unwrap_err();
        assert!(err.contains("one input of shape [-1, F]"), "{err}");
    }
}
