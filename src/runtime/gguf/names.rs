//! llama.cpp's tensor names for the llama architecture and its q/k row order: one table
//! read both ways (writing a GGUF here, reading one in `model::load`).

use candle_core::Tensor;

/// Hugging Face names outside the layers and their llama.cpp names.
const TOP: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// The part of a layer's tensor name after `model.layers.N.` and after `blk.N.`.
const BLOCK: &[(&str, &str)] = &[
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("input_layernorm.weight", "attn_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
];

/// The llama.cpp name of a Hugging Face llama tensor, or None for a name it has no slot for.
pub fn gguf_name(hf: &str) -> Option<String> {
    if let Some((_, g)) = TOP.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let (n, part) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    n.parse::<usize>().ok()?;
    let (_, g) = BLOCK.iter().find(|(h, _)| *h == part)?;
    Some(format!("blk.{n}.{g}"))
}

/// The Hugging Face name of a llama.cpp tensor name, or None for tensors not used here.
pub fn hf_name(g: &str) -> Option<String> {
    if let Some((h, _)) = TOP.iter().find(|(_, x)| *x == g) {
        return Some(h.to_string());
    }
    let (n, part) = g.strip_prefix("blk.")?.split_once('.')?;
    n.parse::<usize>().ok()?;
    let (h, _) = BLOCK.iter().find(|(_, x)| *x == part)?;
    Some(format!("model.layers.{n}.{h}"))
}

/// The number of heads whose rows llama.cpp interleaves in a tensor (by its llama.cpp
/// name): `heads` for attn_q, `kv_heads` for attn_k, None for the others.
pub fn rope_heads(gguf: &str, heads: usize, kv_heads: usize) -> Option<usize> {
    if gguf.ends_with(".attn_q.weight") {
        Some(heads)
    } else if gguf.ends_with(".attn_k.weight") {
        Some(kv_heads)
    } else {
        None
    }
}

/// Hugging Face's q/k rows in llama.cpp's order, as `convert_hf_to_gguf.py`'s `permute`:
/// per head, `(2, hd/2, in)` stored as `(hd/2, 2, in)`.
pub fn permute_qk(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    check_heads(rows, heads)?;
    t.reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// Undoes [`permute_qk`]: llama.cpp's q/k rows back in Hugging Face's order.
pub fn unpermute_qk(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    check_heads(rows, heads)?;
    t.reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

fn check_heads(rows: usize, heads: usize) -> candle_core::Result<()> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        candle_core::bail!("{rows} rows do not split into {heads} heads of an even size");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_map_both_ways() {
        for hf in [
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.layers.12.self_attn.k_proj.weight",
            "model.layers.0.post_attention_layernorm.weight",
        ] {
            let g = gguf_name(hf).expect("mapped");
            assert_eq!(hf_name(&g).as_deref(), Some(hf));
        }
        assert_eq!(
            gguf_name("model.layers.3.mlp.down_proj.weight").as_deref(),
            Some("blk.3.ffn_down.weight")
        );
        assert_eq!(gguf_name("model.layers.x.mlp.down_proj.weight"), None);
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
    }

    #[test]
    fn the_permutation_is_llama_cpps_and_round_trips() {
        // 2 heads of size 4, one column: rows 0..8.
        let t = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .and_then(|t| t.reshape((8, 1)))
            .expect("tensor");
        let p = permute_qk(&t, 2).expect("permute");
        let rows: Vec<f32> = p.flatten_all().and_then(|x| x.to_vec1()).expect("rows");
        // Per head: the first and second halves interleaved.
        assert_eq!(rows, [0., 2., 1., 3., 4., 6., 5., 7.]);
        let back = unpermute_qk(&p, 2).expect("unpermute");
        let rows: Vec<f32> = back.flatten_all().and_then(|x| x.to_vec1()).expect("rows");
        assert_eq!(rows, [0., 1., 2., 3., 4., 5., 6., 7.]);
        assert!(permute_qk(&t, 3).is_err());
    }
}
