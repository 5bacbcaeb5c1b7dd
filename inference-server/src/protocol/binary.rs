//! The binary tensor data extension's element layout: little-endian
//! fixed-size elements, BOOL as one byte, BYTES as a 4-byte length prefix
//! followed by the bytes.

use crate::tensor::{DataType, TensorData};

/// Bytes that are not a whole number of elements of the datatype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{size} bytes is not a whole number of {datatype} elements")]
pub struct BinarySizeError {
    pub datatype: DataType,
    pub size: usize,
}

/// A number with a fixed-size little-endian form.
trait LeNumber: Sized {
    const SIZE: usize;
    fn put(&self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

/// Implements [`LeNumber`] for the `int`, `half` and `float` datatypes of the list.
macro_rules! le_numbers {
    ({} $([$g:ident $var:ident ($t:ty) $w:tt])*) => {
        $( le_numbers!(@one $g $t); )*
    };
    (@one bool $t:ty) => {};
    (@one bytes $t:ty) => {};
    (@one $g:ident $t:ty) => {
        impl LeNumber for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("chunks_exact yields SIZE bytes"))
            }
        }
    };
}
pub(crate) use le_numbers;
crate::__with_datatypes!(path crate::protocol::binary::le_numbers {});

/// Serializes the elements as the binary tensor data extension lays them out.
pub fn encode(data: &TensorData) -> Vec<u8> {
    let mut out = Vec::new();
    crate::match_data!(data, {
        bool v => out.extend(v.iter().map(|&b| b as u8)),
        number v => v.iter().for_each(|x| x.put(&mut out)),
        bytes v => v.iter().for_each(|x| {
            out.extend((x.len() as u32).to_le_bytes());
            out.extend_from_slice(x);
        }),
    });
    out
}

/// Parses the elements of one tensor from the binary tensor data extension.
pub fn decode(datatype: DataType, bytes: &[u8]) -> Result<TensorData, BinarySizeError> {
    let bad = || BinarySizeError {
        datatype,
        size: bytes.len(),
    };
    fn numbers<T: LeNumber>(bytes: &[u8]) -> Option<Vec<T>> {
        if !bytes.len().is_multiple_of(T::SIZE) {
            return None;
        }
        Some(bytes.chunks_exact(T::SIZE).map(T::get).collect())
    }
    Ok(crate::match_datatype!(datatype, {
        bool T => bytes.iter().map(|&b| b != 0).collect::<Vec<bool>>().into(),
        number T => numbers::<T>(bytes).ok_or_else(bad)?.into(),
        bytes T => {
            let mut items: Vec<T> = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let n = rest
                    .get(..4)
                    .map(|n| u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize)
                    .ok_or_else(bad)?;
                let item = rest.get(4..4 + n).ok_or_else(bad)?;
                items.push(item.to_vec());
                rest = &rest[4 + n..];
            }
            items.into()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::f16;

    #[test]
    fn round_trip_for_every_datatype() {
        let samples = vec![
            TensorData::Bool(vec![true, false]),
            TensorData::Uint8(vec![0, 255]),
            TensorData::Uint16(vec![1, 65535]),
            TensorData::Uint32(vec![1, u32::MAX]),
            TensorData::Uint64(vec![1, u64::MAX]),
            TensorData::Int8(vec![-128, 127]),
            TensorData::Int16(vec![-1, 300]),
            TensorData::Int32(vec![-1, i32::MAX]),
            TensorData::Int64(vec![-1, i64::MIN]),
            TensorData::Fp16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
            TensorData::Fp32(vec![1.5, -2.25]),
            TensorData::Fp64(vec![1e300, -0.5]),
            TensorData::Bytes(vec![b"ab".to_vec(), vec![]]),
        ];
        assert_eq!(samples.len(), DataType::ALL.len());
        for data in samples {
            let bytes = encode(&data);
            if let Some(size) = data.datatype().element_size() {
                assert_eq!(bytes.len(), size * data.len());
            }
            assert_eq!(decode(data.datatype(), &bytes).unwrap(), data);
        }
    }

    #[test]
    fn partial_elements_are_rejected() {
        assert!(decode(DataType::Fp32, &[0, 0, 0]).is_err());
        assert!(decode(DataType::Bytes, &[5, 0, 0, 0, 1]).is_err());
        assert!(decode(DataType::Bytes, &[5, 0]).is_err());
    }
}
