//! The modelship inference server: Open Inference Protocol v2 over ONNX models.

pub mod backend;
pub mod backends;
pub mod model;
pub mod source;
pub mod tensor;
