//! A model as it comes from a source, before a runtime loads it: its bytes
//! and its card, and [`ModelCard::check`], which refuses a card that does not
//! fit the model's inputs.

use serde::{Deserialize, Serialize};

use crate::tensor::{ModelSignature, TensorSpec};

/// The bytes of an ONNX model plus what is known about it.
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    /// Name to serve the model under when none is configured: the file stem
    /// (`iris` for `iris.onnx`) or the builtin name.
    pub default_name: String,
    /// Where the model came from, for logs and the model's metadata.
    pub origin: String,
    /// The ONNX protobuf.
    pub onnx: Vec<u8>,
    /// Optional human-facing description (`<stem>.card.json` beside the model).
    pub card: Option<ModelCard>,
}

/// Human-facing facts about a model that the ONNX file does not carry:
/// feature names for the web form and class labels for the answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ModelCard {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// One name per feature of a `[-1, F]` input, in column order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_names: Vec<String>,
    /// One label per class index of a classifier's `label` output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_labels: Vec<String>,
    /// Example input row, used to pre-fill the web form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub example: Vec<f64>,
    /// The training data's distribution, for drift (docs/models.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// The one input is a greyscale picture: the web page offers a drawing
    /// pad and an upload instead of one field per feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInput>,
}

/// The card's `image`: the model's one input is a `height` x `width`
/// greyscale picture, flattened row-major in a `[-1, height*width]` input
/// (scikit-learn's digits: 8 x 8, values 0..16) or as `[-1, 1, H, W]` /
/// `[-1, H, W]`. A pixel's value runs from `background` (no ink) to `ink`
/// (full ink), so a model trained on dark ink on white says
/// `"background": 255, "ink": 0`. Unknown fields (`channels`: colour is not
/// supported) are refused when the card is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// Rows of pixels.
    pub height: u32,
    /// Pixels per row.
    pub width: u32,
    /// The value of a pixel with no ink (default 0).
    #[serde(default)]
    pub background: f64,
    /// The value of a fully inked pixel (default 1; 16 for scikit-learn's digits).
    #[serde(default = "full_ink")]
    pub ink: f64,
}

fn full_ink() -> f64 {
    1.0
}

impl ModelCard {
    /// Whether the card fits the model: today its `image`, whose pixels must
    /// be the one floating-point input's features. The message names the
    /// card field and is shown to the user as the reason the model is refused.
    pub fn check(&self, signature: &ModelSignature) -> Result<(), String> {
        match &self.image {
            Some(image) => image.check(signature),
            None => Ok(()),
        }
    }
}

impl ImageInput {
    fn check(&self, signature: &ModelSignature) -> Result<(), String> {
        let (h, w) = (i64::from(self.height), i64::from(self.width));
        if h == 0 || w == 0 {
            return Err(format!(
                "card field `image`: height and width must be at least 1 (got {h} x {w})"
            ));
        }
        if !self.background.is_finite() || !self.ink.is_finite() || self.background == self.ink {
            return Err(format!(
                "card field `image`: `background` ({}) and `ink` ({}) must be two different numbers",
                self.background, self.ink
            ));
        }
        let [input] = signature.inputs.as_slice() else {
            return Err(format!(
                "card field `image`: the model must have one input, it has {}",
                signature.inputs.len()
            ));
        };
        if !input.datatype.as_str().starts_with("FP") {
            return Err(format!(
                "card field `image`: input '{}' is {}, the pixels of an image must be floating point",
                input.name, input.datatype
            ));
        }
        let fits = match input.shape.as_slice() {
            [_, f] => *f == h * w,
            [_, ih, iw] => (*ih, *iw) == (h, w),
            [_, 1, ih, iw] => (*ih, *iw) == (h, w),
            _ => false,
        };
        if fits {
            return Ok(());
        }
        Err(format!(
            "card field `image`: {h} x {w} = {} pixels does not fit input '{}' of shape {} \
             (an image is [-1, height*width], [-1, height, width] or [-1, 1, height, width])",
            h * w,
            input.name,
            shape_text(input)
        ))
    }
}

fn shape_text(input: &TensorSpec) -> String {
    let dims: Vec<String> = input.shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// A training sample's distribution: per feature (in column order) bin
/// edges and the share of rows in each bin, and the class prior.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub features: Vec<FeatureBaseline>,
    /// The training share of each class index (classifiers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<f64>,
    /// Rows in the training sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// One feature of a [`Baseline`]: `edges` are k ascending interior cut
/// points, `proportions` the k+1 shares below the first edge, between
/// edges, and at or above the last (a value `x` is in bin "number of edges
/// `<= x`").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureBaseline {
    pub name: String,
    pub edges: Vec<f64>,
    pub proportions: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType;

    fn signature(datatype: DataType, shape: &[i64]) -> ModelSignature {
        ModelSignature {
            inputs: vec![TensorSpec {
                name: "input".into(),
                datatype,
                shape: shape.to_vec(),
            }],
            outputs: vec![],
        }
    }

    fn card(json: &str) -> ModelCard {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_image_card_defaults_to_values_from_0_to_1() {
        let c = card(r#"{"image": {"height": 8, "width": 8}}"#);
        let image = c.image.unwrap();
        assert_eq!((image.background, image.ink), (0.0, 1.0));
    }

    #[test]
    fn a_flattened_image_must_have_height_times_width_features() {
        let digits = card(r#"{"image": {"height": 8, "width": 8, "ink": 16}}"#);
        assert_eq!(digits.check(&signature(DataType::Fp32, &[-1, 64])), Ok(()));
        let err = digits
            .check(&signature(DataType::Fp32, &[-1, 63]))
            .unwrap_err();
        assert!(
            err.starts_with("card field `image`: 8 x 8 = 64 pixels"),
            "{err}"
        );
        assert!(err.contains("input 'input' of shape [-1, 63]"), "{err}");
    }

    #[test]
    fn an_image_card_may_describe_a_picture_shaped_input() {
        let c = card(r#"{"image": {"height": 8, "width": 6}}"#);
        assert_eq!(c.check(&signature(DataType::Fp32, &[-1, 1, 8, 6])), Ok(()));
        assert_eq!(c.check(&signature(DataType::Fp64, &[-1, 8, 6])), Ok(()));
        // Height and width swapped is not the same picture.
        assert!(c.check(&signature(DataType::Fp32, &[-1, 1, 6, 8])).is_err());
        assert!(c.check(&signature(DataType::Fp32, &[-1, 3, 8, 6])).is_err());
    }

    #[test]
    fn an_image_needs_one_floating_point_input() {
        let c = card(r#"{"image": {"height": 2, "width": 2}}"#);
        let err = c.check(&signature(DataType::Int64, &[-1, 4])).unwrap_err();
        assert!(err.contains("input 'input' is INT64"), "{err}");
        let mut two = signature(DataType::Fp32, &[-1, 4]);
        two.inputs.push(two.inputs[0].clone());
        assert!(c.check(&two).unwrap_err().contains("one input, it has 2"));
    }

    #[test]
    fn an_image_needs_a_size_and_two_different_values() {
        let fp = signature(DataType::Fp32, &[-1, 0]);
        let empty = card(r#"{"image": {"height": 0, "width": 8}}"#);
        assert!(empty.check(&fp).unwrap_err().contains("at least 1"));
        let flat = card(r#"{"image": {"height": 2, "width": 2, "background": 1, "ink": 1}}"#);
        let err = flat
            .check(&signature(DataType::Fp32, &[-1, 4]))
            .unwrap_err();
        assert!(err.contains("must be two different numbers"), "{err}");
    }

    #[test]
    fn an_unknown_image_field_is_refused_when_the_card_is_read() {
        let err = serde_json::from_str::<ModelCard>(
            r#"{"image": {"height": 8, "width": 8, "channels": 3}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `channels`"),
            "{err}"
        );
    }

    #[test]
    fn a_card_without_an_image_fits_any_model() {
        let c = card(r#"{"feature_names": ["a"]}"#);
        assert_eq!(c.check(&signature(DataType::Int64, &[-1, 1, 2])), Ok(()));
    }
}
