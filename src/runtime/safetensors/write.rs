//! The writer: f32 tensors stored as F32, F16 or BF16 (tests, and merge output later).

use super::{Error, INDEX_FILE, Result};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::semantics::dtype::Dtype;

/// A tensor as the writer takes it: any dtype name and its raw little-endian bytes.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Tensors by name: shape and f32 values.
pub type TensorMap = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Converts f32 tensors to raw tensors of one dtype; a shape must match its data.
pub fn to_raw(tensors: &TensorMap, dtype: Dtype) -> Result<Vec<RawTensor>> {
    tensors
        .iter()
        .map(|(name, (shape, data))| {
            if shape.iter().product::<usize>() != data.len() {
                return Err(Error {
                    message: format!(
                        "tensor `{name}`: shape {shape:?} does not hold {} values",
                        data.len()
                    ),
                });
            }
            let mut bytes = Vec::with_capacity(data.len() * 4);
            dtype.encode(data, &mut bytes);
            Ok(RawTensor {
                name: name.clone(),
                dtype: dtype.name().into(),
                shape: shape.clone(),
                bytes,
            })
        })
        .collect()
}

/// One header entry: name, dtype name, shape and the size of its data in bytes.
pub struct HeaderEntry<'a> {
    pub name: &'a str,
    pub dtype: &'a str,
    pub shape: &'a [usize],
    pub nbytes: usize,
}

/// The 8-byte length and the padded JSON header for tensors stored in this order.
pub fn header_bytes(entries: &[HeaderEntry]) -> Vec<u8> {
    let mut header = Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({ "format": "pt", "writer": "mergec" }),
    );
    let mut offset = 0;
    for t in entries {
        header.insert(
            t.name.to_string(),
            serde_json::json!({
                "dtype": t.dtype,
                "shape": t.shape,
                "data_offsets": [offset, offset + t.nbytes],
            }),
        );
        offset += t.nbytes;
    }
    let mut text = Json::Object(header).to_string();
    // Pad so the data section starts 8-byte aligned, as the reference writer does.
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// The bytes of a safetensors file holding `tensors` in the given order.
pub fn encode_raw(tensors: &[RawTensor]) -> Vec<u8> {
    let entries: Vec<HeaderEntry> = tensors
        .iter()
        .map(|t| HeaderEntry {
            name: &t.name,
            dtype: &t.dtype,
            shape: &t.shape,
            nbytes: t.bytes.len(),
        })
        .collect();
    let mut out = header_bytes(&entries);
    for t in tensors {
        out.extend_from_slice(&t.bytes);
    }
    out
}

/// Writes `tensors` as one safetensors file of the given dtype.
pub fn write(path: impl AsRef<Path>, tensors: &TensorMap, dtype: Dtype) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_raw(&to_raw(tensors, dtype)?);
    std::fs::write(path, bytes).map_err(|e| Error::at(path, format!("cannot write: {e}")))
}

/// Writes a sharded model directory: one file per map, and the index.
pub fn write_sharded(dir: impl AsRef<Path>, shards: &[TensorMap], dtype: Dtype) -> Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::at(dir, format!("cannot create: {e}")))?;
    let mut weight_map = Map::new();
    let n = shards.len();
    for (i, tensors) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        write(dir.join(&file), tensors, dtype)?;
        for name in tensors.keys() {
            weight_map.insert(name.clone(), Json::String(file.clone()));
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    let path = dir.join(INDEX_FILE);
    std::fs::write(&path, index.to_string())
        .map_err(|e| Error::at(&path, format!("cannot write: {e}")))
}
