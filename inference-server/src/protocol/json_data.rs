//! Typed parsing and writing of a tensor's `data` field.
//!
//! The protocol allows `data` to be flat or nested to any depth. The element
//! type is known only once `datatype` is read, so the raw JSON is kept and
//! parsed here straight into a typed vector: no intermediate `Value` tree,
//! and integers keep their full 64-bit range.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde_json::value::RawValue;

use crate::tensor::{DataType, TensorData};

/// Parses `raw` (a JSON scalar or arbitrarily nested array) into a flat vector of `datatype`.
pub fn parse(datatype: DataType, raw: &RawValue) -> Result<TensorData, serde_json::Error> {
    let s = raw.get();
    Ok(crate::match_datatype!(datatype, {
        plain T => flat::<T>(s)?.into(),
        half T => flat::<f32>(s)?
            .into_iter()
            .map(T::from_f32)
            .collect::<Vec<T>>()
            .into(),
        bytes T => flat::<String>(s)?
            .into_iter()
            .map(String::into_bytes)
            .collect::<Vec<T>>()
            .into(),
    }))
}

fn flat<T: DeserializeOwned>(s: &str) -> Result<Vec<T>, serde_json::Error> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(s);
    Flatten {
        out: &mut out,
        depth: 0,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// Nesting deeper than this is rejected rather than risking the stack.
const MAX_DEPTH: usize = 32;

struct Flatten<'a, T> {
    out: &'a mut Vec<T>,
    depth: usize,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a value or a (nested) array of {}",
            std::any::type_name::<T>()
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom("data is nested too deeply"));
        }
        if let Some(n) = seq.size_hint() {
            self.out.reserve(n);
        }
        while seq
            .next_element_seed(Flatten {
                out: &mut *self.out,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::deserialize(IntoDeserializer::<E>::into_deserializer(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::deserialize(IntoDeserializer::<E>::into_deserializer(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::deserialize(IntoDeserializer::<E>::into_deserializer(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::deserialize(IntoDeserializer::<E>::into_deserializer(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::deserialize(IntoDeserializer::<E>::into_deserializer(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom("null is not a valid tensor element"))
    }
}

impl<T> Flatten<'_, T> {
    fn push<E>(self, v: Result<T, E>) -> Result<(), E> {
        self.out.push(v?);
        Ok(())
    }
}

/// Serializes a tensor's elements, or the range `start..end` of them, as a
/// flat JSON array: FP16 as numbers, BYTES as (lossy UTF-8) strings. The one
/// JSON writer of tensor data: v2 responses, v1 predictions and `predict`'s
/// output lines all use it.
pub struct FlatData<'a> {
    data: &'a TensorData,
    start: usize,
    end: usize,
}

impl<'a> FlatData<'a> {
    /// Every element of `data`.
    pub fn new(data: &'a TensorData) -> Self {
        FlatData {
            data,
            start: 0,
            end: data.len(),
        }
    }

    /// Elements `start..end` of `data` (one row of a batch, say).
    pub fn range(data: &'a TensorData, start: usize, end: usize) -> Self {
        FlatData { data, start, end }
    }
}

impl serde::Serialize for FlatData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (start, end) = (self.start, self.end);
        crate::match_data!(self.data, {
            plain v => v[start..end].serialize(s),
            half v => s.collect_seq(v[start..end].iter().map(|x| x.to_f32())),
            bytes v => s.collect_seq(v[start..end].iter().map(|x| String::from_utf8_lossy(x))),
        })
    }
}

/// Serializes element `index` of a tensor's data as one JSON value, written
/// as [`FlatData`] writes each element.
pub struct Scalar<'a>(pub &'a TensorData, pub usize);

impl serde::Serialize for Scalar<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.1;
        crate::match_data!(self.0, {
            plain v => v[i].serialize(s),
            half v => s.serialize_f32(v[i].to_f32()),
            bytes v => s.serialize_str(&String::from_utf8_lossy(&v[i])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::f16;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn nested_and_flat_arrays_give_the_same_elements() {
        let a = parse(DataType::Fp32, &raw("[[1, 2.5], [3, 4]]")).unwrap();
        let b = parse(DataType::Fp32, &raw("[1, 2.5, 3, 4]")).unwrap();
        assert_eq!(a, TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0]));
        assert_eq!(a, b);
    }

    #[test]
    fn int64_keeps_full_range() {
        let d = parse(
            DataType::Int64,
            &raw("[-9223372036854775808, 9223372036854775807]"),
        )
        .unwrap();
        assert_eq!(d, TensorData::Int64(vec![i64::MIN, i64::MAX]));
        let d = parse(DataType::Uint64, &raw("[18446744073709551615]")).unwrap();
        assert_eq!(d, TensorData::Uint64(vec![u64::MAX]));
    }

    #[test]
    fn wrong_element_types_are_errors() {
        assert!(parse(DataType::Int32, &raw("[1.5]")).is_err());
        assert!(parse(DataType::Uint8, &raw("[300]")).is_err());
        assert!(parse(DataType::Uint8, &raw("[-1]")).is_err());
        assert!(parse(DataType::Bool, &raw("[1]")).is_err());
        assert!(parse(DataType::Fp32, &raw("[\"NaN\"]")).is_err());
        assert!(parse(DataType::Fp32, &raw("[null]")).is_err());
        assert!(parse(DataType::Fp32, &raw("{\"a\": 1}")).is_err());
    }

    #[test]
    fn bool_bytes_and_fp16_parse() {
        assert_eq!(
            parse(DataType::Bool, &raw("[true, false]")).unwrap(),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(
            parse(DataType::Bytes, &raw("[\"ab\", \"\"]")).unwrap(),
            TensorData::Bytes(vec![b"ab".to_vec(), vec![]])
        );
        assert_eq!(
            parse(DataType::Fp16, &raw("[1.5]")).unwrap(),
            TensorData::Fp16(vec![f16::from_f32(1.5)])
        );
    }

    #[test]
    fn excessive_nesting_is_rejected() {
        let s = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(DataType::Fp32, &raw(&s)).is_err());
    }

    #[test]
    fn flat_data_writes_a_plain_array() {
        let s = serde_json::to_string(&FlatData::new(&TensorData::Fp32(vec![0.5, 1.0]))).unwrap();
        assert_eq!(s, "[0.5,1.0]");
        let half = TensorData::Fp16(vec![f16::from_f32(2.0)]);
        assert_eq!(
            serde_json::to_string(&FlatData::new(&half)).unwrap(),
            "[2.0]"
        );
        let text = TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            serde_json::to_string(&FlatData::new(&text)).unwrap(),
            r#"["a","b"]"#
        );
    }

    #[test]
    fn ranges_and_scalars_write_single_rows() {
        let d = TensorData::Int64(vec![1, 2, 3, 4]);
        assert_eq!(
            serde_json::to_string(&FlatData::range(&d, 2, 4)).unwrap(),
            "[3,4]"
        );
        assert_eq!(serde_json::to_string(&Scalar(&d, 1)).unwrap(), "2");
        let half = TensorData::Fp16(vec![f16::from_f32(0.5)]);
        assert_eq!(serde_json::to_string(&Scalar(&half, 0)).unwrap(), "0.5");
    }
}
