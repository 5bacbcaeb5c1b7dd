//! The 13 datatypes of the Open Inference Protocol: the one list of them,
//! and the macros every other module dispatches on a datatype with.
//!
//! `__with_datatypes!` holds the list: each datatype's enum variant, Rust
//! element type and wire name, tagged with its group (`bool`, `int`,
//! `half`, `float`, `bytes`). [`DataType`], [`TensorData`] and [`Element`]
//! are generated from it, and [`match_data!`](crate::match_data) /
//! [`match_datatype!`](crate::match_datatype) run one generic expression
//! per group, so no other module spells the variants out. A new datatype is
//! one line here; the compiler then points at every dispatch that needs a
//! decision.

use serde::{Deserialize, Serialize};

/// The list of datatypes, in wire order. Calls the macro `$cb` (exported at
/// the crate root, or `path crate::..::name` for a crate-local one) with
/// `{ $args }` followed by one `[group Variant (type) "WIRE"]` per datatype.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_datatypes {
    // A crate-local callback: `path crate::module::macro_name { .. }`.
    (path $($seg:ident)::+ { $($args:tt)* }) => {
        $crate::__with_datatypes! { @list ($($seg)::+) { $($args)* } }
    };
    ($cb:ident { $($args:tt)* }) => {
        $crate::__with_datatypes! { @list ($crate::$cb) { $($args)* } }
    };
    (@list ($($cb:tt)*) { $($args:tt)* }) => {
        $($cb)* ! {
            { $($args)* }
            [bool Bool (bool) "BOOL"]
            [int Uint8 (u8) "UINT8"]
            [int Uint16 (u16) "UINT16"]
            [int Uint32 (u32) "UINT32"]
            [int Uint64 (u64) "UINT64"]
            [int Int8 (i8) "INT8"]
            [int Int16 (i16) "INT16"]
            [int Int32 (i32) "INT32"]
            [int Int64 (i64) "INT64"]
            [half Fp16 ($crate::tensor::f16) "FP16"]
            [float Fp32 (f32) "FP32"]
            [float Fp64 (f64) "FP64"]
            [bytes Bytes (::std::vec::Vec<u8>) "BYTES"]
        }
    };
}

/// Matches a [`TensorData`] (owned or borrowed) and evaluates an expression
/// with `$v` bound to the vector inside, generic over the element type.
///
/// Forms, from the shortest: `match_data!(d, v => e)` (every datatype);
/// `{ fixed v => e, bytes b => e2 }`; `{ plain v => e, half h => e2, bytes b => e3 }`
/// (plain: bool, integers, FP32/FP64); `{ bool v => e, number n => e2, bytes b => e3 }`;
/// and all five groups `{ bool .., int .., half .., float .., bytes .. }`.
#[macro_export]
macro_rules! match_data {
    ($data:expr, $v:ident => $e:expr) => {
        $crate::match_data!($data, { bool $v => $e, int $v => $e, half $v => $e, float $v => $e, bytes $v => $e })
    };
    ($data:expr, { fixed $v:ident => $e:expr, bytes $b:ident => $eb:expr $(,)? }) => {
        $crate::match_data!($data, { bool $v => $e, int $v => $e, half $v => $e, float $v => $e, bytes $b => $eb })
    };
    ($data:expr, { plain $v:ident => $e:expr, half $h:ident => $eh:expr, bytes $b:ident => $eb:expr $(,)? }) => {
        $crate::match_data!($data, { bool $v => $e, int $v => $e, half $h => $eh, float $v => $e, bytes $b => $eb })
    };
    ($data:expr, { bool $v:ident => $e:expr, number $n:ident => $en:expr, bytes $b:ident => $eb:expr $(,)? }) => {
        $crate::match_data!($data, { bool $v => $e, int $n => $en, half $n => $en, float $n => $en, bytes $b => $eb })
    };
    ($data:expr, { bool $v1:ident => $e1:expr, int $v2:ident => $e2:expr, half $v3:ident => $e3:expr,
                   float $v4:ident => $e4:expr, bytes $v5:ident => $e5:expr $(,)? }) => {
        $crate::__with_datatypes!(__match_data_impl { ($data) [($v1 $e1) ($v2 $e2) ($v3 $e3) ($v4 $e4) ($v5 $e5)] })
    };
}

/// Matches a [`DataType`] and evaluates an expression with the type alias
/// `$T` naming its element type (`f32` for FP32, `Vec<u8>` for BYTES). The
/// same forms as [`match_data!`](crate::match_data), with type names in place of bindings.
#[macro_export]
macro_rules! match_datatype {
    ($dt:expr, $T:ident => $e:expr) => {
        $crate::match_datatype!($dt, { bool $T => $e, int $T => $e, half $T => $e, float $T => $e, bytes $T => $e })
    };
    ($dt:expr, { fixed $T:ident => $e:expr, bytes $B:ident => $eb:expr $(,)? }) => {
        $crate::match_datatype!($dt, { bool $T => $e, int $T => $e, half $T => $e, float $T => $e, bytes $B => $eb })
    };
    ($dt:expr, { plain $T:ident => $e:expr, half $H:ident => $eh:expr, bytes $B:ident => $eb:expr $(,)? }) => {
        $crate::match_datatype!($dt, { bool $T => $e, int $T => $e, half $H => $eh, float $T => $e, bytes $B => $eb })
    };
    ($dt:expr, { bool $T:ident => $e:expr, number $N:ident => $en:expr, bytes $B:ident => $eb:expr $(,)? }) => {
        $crate::match_datatype!($dt, { bool $T => $e, int $N => $en, half $N => $en, float $N => $en, bytes $B => $eb })
    };
    ($dt:expr, { bool $T1:ident => $e1:expr, int $T2:ident => $e2:expr, half $T3:ident => $e3:expr,
                 float $T4:ident => $e4:expr, bytes $T5:ident => $e5:expr $(,)? }) => {
        $crate::__with_datatypes!(__match_datatype_impl { ($dt) [($T1 $e1) ($T2 $e2) ($T3 $e3) ($T4 $e4) ($T5 $e5)] })
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __match_data_impl {
    ({ ($data:expr) $arms:tt } $([$g:ident $var:ident ($t:ty) $w:tt])*) => {
        match $data {
            $( $crate::tensor::TensorData::$var(__elements) => $crate::__pick_value!($g __elements $arms), )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __match_datatype_impl {
    ({ ($dt:expr) $arms:tt } $([$g:ident $var:ident ($t:ty) $w:tt])*) => {
        match $dt {
            $( $crate::tensor::DataType::$var => $crate::__pick_type!($g ($t) $arms), )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pick_value {
    (bool $x:ident [($v:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(unused_variables)]
        let $v = $x;
        $e
    }};
    (int $x:ident [$a:tt ($v:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(unused_variables)]
        let $v = $x;
        $e
    }};
    (half $x:ident [$a:tt $b:tt ($v:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(unused_variables)]
        let $v = $x;
        $e
    }};
    (float $x:ident [$a:tt $b:tt $c:tt ($v:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(unused_variables)]
        let $v = $x;
        $e
    }};
    (bytes $x:ident [$a:tt $b:tt $c:tt $d:tt ($v:ident $e:expr)]) => {{
        #[allow(unused_variables)]
        let $v = $x;
        $e
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pick_type {
    (bool ($t:ty) [($T:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(dead_code)]
        type $T = $t;
        $e
    }};
    (int ($t:ty) [$a:tt ($T:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(dead_code)]
        type $T = $t;
        $e
    }};
    (half ($t:ty) [$a:tt $b:tt ($T:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(dead_code)]
        type $T = $t;
        $e
    }};
    (float ($t:ty) [$a:tt $b:tt $c:tt ($T:ident $e:expr) $($rest:tt)*]) => {{
        #[allow(dead_code)]
        type $T = $t;
        $e
    }};
    (bytes ($t:ty) [$a:tt $b:tt $c:tt $d:tt ($T:ident $e:expr)]) => {{
        #[allow(dead_code)]
        type $T = $t;
        $e
    }};
}

/// Generates [`DataType`], [`TensorData`] and the [`Element`] impls from the list.
#[doc(hidden)]
#[macro_export]
macro_rules! __datatype_defs {
    ({} $([$g:ident $var:ident ($t:ty) $w:tt])*) => {
        /// A datatype of the Open Inference Protocol, spelled as on the wire (`FP32`, `INT64`, ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum DataType {
            $( #[serde(rename = $w)] $var, )*
        }

        impl DataType {
            /// Every datatype, in wire order.
            pub const ALL: [DataType; 13] = [$(DataType::$var),*];

            /// The wire name, e.g. `FP32`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( DataType::$var => $w, )*
                }
            }
        }

        /// The elements of a tensor, row-major, one variant per datatype.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $( $var(Vec<$t>), )*
        }

        impl TensorData {
            pub fn datatype(&self) -> DataType {
                match self {
                    $( TensorData::$var(_) => DataType::$var, )*
                }
            }
        }

        $(
            impl Element for $t {
                const DATATYPE: DataType = DataType::$var;
                fn into_data(elements: Vec<Self>) -> TensorData {
                    TensorData::$var(elements)
                }
                fn slice_of(data: &TensorData) -> Option<&[Self]> {
                    match data {
                        TensorData::$var(v) => Some(v),
                        _ => None,
                    }
                }
            }

            impl From<Vec<$t>> for TensorData {
                fn from(elements: Vec<$t>) -> TensorData {
                    TensorData::$var(elements)
                }
            }
        )*
    };
}

/// The Rust type of one element of a datatype (`f32` for FP32, `Vec<u8>` for BYTES).
pub trait Element: Clone + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    const DATATYPE: DataType;
    /// Wraps a vector of elements.
    fn into_data(elements: Vec<Self>) -> TensorData;
    /// The elements, when `data` holds this type.
    fn slice_of(data: &TensorData) -> Option<&[Self]>;
}

crate::__with_datatypes!(__datatype_defs {});

impl DataType {
    pub fn parse(s: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Size of one element in the binary tensor data extension; `None` for BYTES.
    pub fn element_size(self) -> Option<usize> {
        crate::match_datatype!(self, {
            fixed T => Some(std::mem::size_of::<T>()),
            bytes B => None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
