//! The header of one `.safetensors` file, parsed and validated: every tensor named once,
//! a known dtype, a shape whose size matches its bytes, offsets inside the data section,
//! aligned to the element size and not overlapping another tensor's.

use super::{Error, MAX_HEADER, Result, TensorInfo};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value as Json};
use std::fmt;
use std::path::Path;

/// The dtypes a header may name: those of the safetensors format.
pub const KNOWN_DTYPES: &[&str] = &[
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32",
    "F32", "I64", "U64", "F64", "F4", "F6_E2M3", "F6_E3M2",
];

/// Bits per element of a known dtype (the sub-byte F4 and F6 types included).
fn dtype_bits(dtype: &str) -> Option<usize> {
    match dtype {
        "F4" => Some(4),
        "F6_E2M3" | "F6_E3M2" => Some(6),
        d => dtype_size(d).map(|s| s * 8),
    }
}

/// Bytes per element of a known dtype.
pub fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// The header's top-level entries in file order, duplicates kept (a JSON object
/// parsed into a map would keep only the last of two equal names).
struct Entries(Vec<(String, Json)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping tensor names to entries")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Json>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

/// Parses and validates the header: returns the data offset and the tensors.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<(usize, Vec<TensorInfo>)> {
    let len = bytes.len() as u64;
    let n8: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::at(path, "truncated file: no 8-byte header length"))?;
    let n = u64::from_le_bytes(n8);
    if n > len - 8 {
        return Err(Error::at(
            path,
            format!(
                "header length {n} is past the end of the file ({len} bytes): \
                 the file is truncated or not a safetensors file"
            ),
        ));
    }
    if n > MAX_HEADER {
        return Err(Error::at(
            path,
            format!("header length {n} exceeds the limit of {MAX_HEADER} bytes"),
        ));
    }
    let data_start = 8 + n as usize;
    let header = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|e| Error::at(path, format!("bad header: not UTF-8 ({e})")))?;
    let Entries(entries) = serde_json::from_str(header)
        .map_err(|e| Error::at(path, format!("bad header JSON: {e}")))?;
    let data_len = bytes.len() - data_start;
    let mut out: Vec<TensorInfo> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, entry) in &entries {
        if !seen.insert(name.as_str()) {
            return Err(Error::at(
                path,
                format!("tensor `{name}` is named twice in the header"),
            ));
        }
        if name == "__metadata__" {
            continue;
        }
        let info = parse_entry(name, entry, data_len).map_err(|m| Error::at(path, m))?;
        out.push(info);
    }
    check_overlaps(&out).map_err(|m| Error::at(path, m))?;
    Ok((data_start, out))
}

/// No two tensors' bytes may overlap (empty tensors take no bytes).
fn check_overlaps(tensors: &[TensorInfo]) -> std::result::Result<(), String> {
    let mut by_start: Vec<&TensorInfo> = tensors.iter().filter(|t| t.end > t.start).collect();
    by_start.sort_by_key(|t| (t.start, t.end));
    for pair in by_start.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.start < a.end {
            return Err(format!(
                "tensor `{}`: data [{}, {}) overlaps tensor `{}` at [{}, {})",
                b.name, b.start, b.end, a.name, a.start, a.end
            ));
        }
    }
    Ok(())
}

/// One header entry, checked against the data section's length.
fn parse_entry(
    name: &str,
    entry: &Json,
    data_len: usize,
) -> std::result::Result<TensorInfo, String> {
    let bad = |what: &str| format!("bad header entry for `{name}`: {what}");
    let obj: &Map<String, Json> = entry.as_object().ok_or_else(|| bad("not an object"))?;
    let dtype = obj
        .get("dtype")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("missing `dtype` string"))?;
    let bits = dtype_bits(dtype).ok_or_else(|| {
        format!(
            "tensor `{name}` has unknown dtype `{dtype}` (known: {}); quantized tensors \
             (e.g. GGUF Q4_K) must be dequantized first",
            KNOWN_DTYPES.join(", ")
        )
    })?;
    let shape =
        usize_list(obj.get("shape")).ok_or_else(|| bad("`shape` is not a list of sizes"))?;
    let offsets = usize_list(obj.get("data_offsets"))
        .filter(|o| o.len() == 2)
        .ok_or_else(|| bad("`data_offsets` is not [start, end]"))?;
    let (start, end) = (offsets[0], offsets[1]);
    if end < start {
        return Err(bad(&format!("data_offsets [{start}, {end}] are reversed")));
    }
    if end > data_len {
        return Err(format!(
            "tensor `{name}`: data [{start}, {end}) runs past the end of the data section \
             ({data_len} bytes): the file is truncated"
        ));
    }
    let size = (bits / 8).max(1);
    if !start.is_multiple_of(size) {
        return Err(format!(
            "tensor `{name}`: data offset {start} is not aligned to its {dtype} element size \
             ({size} bytes)"
        ));
    }
    let want_bits = shape
        .iter()
        .try_fold(bits, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(&format!("shape {shape:?} overflows")))?;
    let want = want_bits.div_ceil(8);
    if want != end - start {
        return Err(bad(&format!(
            "shape {shape:?} of {dtype} needs {want} bytes, but data_offsets hold {}",
            end - start
        )));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape,
        shard: 0,
        start,
        end,
    })
}

fn usize_list(v: Option<&Json>) -> Option<Vec<usize>> {
    v?.as_array()?
        .iter()
        .map(|x| x.as_u64().and_then(|n| usize::try_from(n).ok()))
        .collect()
}
