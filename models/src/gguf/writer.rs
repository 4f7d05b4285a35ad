//! Writes GGUF v3 files (used by `gen-model` and by tests that build hostile files).

use std::io::{self, Write};

use bitnetc_ir::DType;

use super::types::GgmlType;
use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC};

/// Collects metadata and tensors, then serializes them as GGUF v3 with 32-byte alignment.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    dtype: DType,
    data: Vec<u8>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds (or replaces) a metadata entry.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_string(), value));
        }
        self
    }

    /// Adds a tensor with its encoded payload. The payload length must match the format.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: DType,
        data: Vec<u8>,
    ) -> io::Result<()> {
        let n: u64 = dims.iter().product();
        let expected = dtype.tensor_bytes(dims[0], n);
        if expected != Some(data.len() as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tensor '{name}': {} payload bytes, format {dtype} needs {expected:?}",
                    data.len()
                ),
            ));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            data,
        });
        Ok(())
    }

    /// Serializes everything.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut head, key);
            head.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut head, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&GgmlType::from_dtype(t.dtype).0.to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset += padded(t.data.len() as u64);
        }
        let pad = padded(head.len() as u64) - head.len() as u64;
        head.resize(head.len() + pad as usize, 0);
        out.write_all(&head)?;
        for t in &self.tensors {
            out.write_all(&t.data)?;
            let pad = padded(t.data.len() as u64) - t.data.len() as u64;
            out.write_all(&vec![0u8; pad as usize])?;
        }
        out.flush()
    }

    /// Serializes to a byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

fn padded(n: u64) -> u64 {
    n.div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array { elem, items } => {
            out.extend_from_slice(&elem.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                debug_assert_eq!(item.value_type(), *elem);
                put_value(out, item);
            }
        }
    }
}

impl Value {
    /// An array of strings.
    pub fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
        Value::Array {
            elem: ValueType::String,
            items: items
                .iter()
                .map(|s| Value::String(s.as_ref().to_string()))
                .collect(),
        }
    }

    /// An array of f32.
    pub fn f32_array(items: &[f32]) -> Value {
        Value::Array {
            elem: ValueType::F32,
            items: items.iter().map(|&f| Value::F32(f)).collect(),
        }
    }

    /// An array of i32.
    pub fn i32_array(items: &[i32]) -> Value {
        Value::Array {
            elem: ValueType::I32,
            items: items.iter().map(|&i| Value::I32(i)).collect(),
        }
    }

    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
