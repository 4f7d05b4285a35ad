//! Metadata values and typed access to them.

use super::GgufError;

/// The type tag of a metadata value (GGUF value type ids 0..=12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// Decodes a type id.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The type id written to files.
    pub fn id(self) -> u32 {
        use ValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// Encoded size of a scalar of this type; strings and arrays have no fixed size.
    pub fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array of values that all have type `elem`.
    Array {
        elem: ValueType,
        items: Vec<Value>,
    },
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array { .. } => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as a signed integer, if it is an integer of any width.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as a float, if it is F32 or F64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A short rendering for listings: arrays show their length and first items.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) => {
                let mut t: String = s.chars().take(60).collect();
                if t.len() < s.len() {
                    t.push('…');
                }
                format!("{t:?}")
            }
            Value::Array { elem, items } => {
                let head: Vec<String> = items.iter().take(4).map(|v| v.summary()).collect();
                let more = if items.len() > 4 { ", …" } else { "" };
                format!("[{elem:?}; {}] [{}{more}]", items.len(), head.join(", "))
            }
            Value::Bool(b) => b.to_string(),
            v => v
                .as_i128()
                .map(|i| i.to_string())
                .or_else(|| v.as_f64().map(|f| f.to_string()))
                .unwrap_or_default(),
        }
    }

    /// A JSON rendering of the value (arrays in full).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Array { items, .. } => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            v => match (v.as_i128(), v.as_f64()) {
                (Some(i), _) => serde_json::json!(i as i64),
                (_, Some(f)) => serde_json::json!(f),
                _ => serde_json::Value::Null,
            },
        }
    }
}

/// The key/value metadata of a GGUF file, in file order.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
}

impl Metadata {
    /// Builds metadata from key/value pairs (used by the reader and by writers in tests).
    pub fn from_entries(entries: Vec<(String, Value)>) -> Metadata {
        Metadata { entries }
    }

    /// All entries in file order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn bad(key: &str, problem: impl Into<String>) -> GgufError {
        GgufError::BadValue {
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    /// An unsigned integer stored as any integer type, if present.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i128() {
                Some(i) => u64::try_from(i)
                    .map(Some)
                    .map_err(|_| Self::bad(key, format!("value {i} is negative"))),
                None => Err(Self::bad(
                    key,
                    format!("expected an integer, found {:?}", v.value_type()),
                )),
            },
        }
    }

    /// A `u32` stored as any integer type that fits, if present.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.opt_u64(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| Self::bad(key, format!("value {v} does not fit in 32 bits"))),
        }
    }

    /// A required `u32`.
    pub fn u32(&self, key: &str) -> Result<u32, GgufError> {
        self.opt_u32(key)?
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    /// A float stored as F32 or F64, if present.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(f) => Ok(Some(f as f32)),
                None => Err(Self::bad(
                    key,
                    format!("expected a float, found {:?}", v.value_type()),
                )),
            },
        }
    }

    /// A boolean, if present.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::bad(
                key,
                format!("expected a bool, found {:?}", v.value_type()),
            )),
        }
    }

    /// A string, if present.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Self::bad(
                key,
                format!("expected a string, found {:?}", v.value_type()),
            )),
        }
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        self.opt_str(key)?
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    fn opt_array(&self, key: &str) -> Result<Option<&[Value]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array { items, .. }) => Ok(Some(items)),
            Some(v) => Err(Self::bad(
                key,
                format!("expected an array, found {:?}", v.value_type()),
            )),
        }
    }

    /// An array of strings, if present.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<String>>, GgufError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(Self::bad(
                    key,
                    format!("expected strings, found {:?}", other.value_type()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An array of floats, if present.
    pub fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| Self::bad(key, "expected floats"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An array of integers that fit in i32, if present.
    pub fn opt_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| {
                v.as_i128()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| Self::bad(key, "expected 32-bit integers"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A `u32` that may also be stored as a per-layer array whose entries must all be equal.
    pub fn u32_or_uniform_array(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.get(key) {
            Some(Value::Array { items, .. }) => {
                let vals: Vec<i128> = items
                    .iter()
                    .map(|v| {
                        v.as_i128()
                            .ok_or_else(|| Self::bad(key, "expected integers"))
                    })
                    .collect::<Result<_, _>>()?;
                let first = *vals.first().ok_or_else(|| Self::bad(key, "empty array"))?;
                if vals.iter().any(|&v| v != first) {
                    return Err(Self::bad(
                        key,
                        "per-layer values differ; bitnetc needs one value for all layers",
                    ));
                }
                u32::try_from(first)
                    .map(Some)
                    .map_err(|_| Self::bad(key, format!("value {first} out of range")))
            }
            _ => self.opt_u32(key),
        }
    }
}
