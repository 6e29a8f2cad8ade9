//! Storage dtypes: how a tensor's elements are stored (F32, F16, BF16), their names as
//! users, safetensors headers and transformers write them, and the conversions to and
//! from f32 (round to nearest even). The one dtype type of the crate: checkpoints, the
//! kernels' buffers and every command's `--dtype` use it.

/// A storage dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
    /// Decodes element `i` of little-endian storage bytes.
    pub fn load(self, bytes: &[u8], i: usize) -> f32 {
        match self {
            Dtype::F32 => f32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ]),
            Dtype::F16 => half::f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32(),
            Dtype::BF16 => half::bf16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32(),
        }
    }
    /// Encodes `x` as element `i` of little-endian storage bytes.
    pub fn store(self, bytes: &mut [u8], i: usize, x: f32) {
        match self {
            Dtype::F32 => bytes[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes()),
            Dtype::F16 => {
                bytes[2 * i..2 * i + 2].copy_from_slice(&half::f16::from_f32(x).to_le_bytes())
            }
            Dtype::BF16 => {
                bytes[2 * i..2 * i + 2].copy_from_slice(&half::bf16::from_f32(x).to_le_bytes())
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    /// From a name as users write it: bf16, bfloat16, f16, float16, fp16, f32, float32.
    pub fn parse(s: &str) -> Option<Dtype> {
        Some(match s.to_ascii_lowercase().trim_start_matches("torch.") {
            "bf16" | "bfloat16" => Dtype::BF16,
            "f16" | "fp16" | "float16" | "half" => Dtype::F16,
            "f32" | "fp32" | "float32" | "float" => Dtype::F32,
            _ => return None,
        })
    }

    /// The stored dtype name in a safetensors header ("BF16", ...), if one of ours.
    pub fn from_header(s: &str) -> Option<Dtype> {
        [Dtype::F32, Dtype::F16, Dtype::BF16]
            .into_iter()
            .find(|d| d.name() == s)
    }

    /// The name transformers uses in config.json's `torch_dtype`.
    pub fn torch_name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
        }
    }

    /// Little-endian bytes of `data` in this dtype (round to nearest even).
    pub fn encode_vec(self, data: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() * self.size());
        self.encode(data, &mut out);
        out
    }

    pub fn encode(self, data: &[f32], out: &mut Vec<u8>) {
        for &x in data {
            match self {
                Dtype::F32 => out.extend_from_slice(&x.to_le_bytes()),
                Dtype::F16 => out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
                Dtype::BF16 => out.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
            }
        }
    }
}
