//! The llama-family model: inference paths agree with the training forward, batching
//! and padding do not change results, and the real SmolLM2 GGUF (when fetched) answers.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mergec::model::config::{Family, LlamaConfig};
use mergec::model::llama::{KvCache, Llama};
use mergec::model::{GenOptions, LoadedModel, Role, TextModel};
use mergec::semantics::rng::SplitMix64;
use std::path::Path;

#[path = "common/tiny_llama.rs"]
mod tiny_llama;
use tiny_llama::{char_tokenizer_json, tiny_config};

fn tiny_model() -> Llama {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    Llama::new(vb, &tiny_config()).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn config_round_trips_through_hf_json() {
    let c = tiny_config();
    assert_eq!(LlamaConfig::from_hf_json(&c.to_hf_json()).unwrap(), c);
    let e = LlamaConfig::from_hf_json(r#"{"model_type": "gpt2"}"#).unwrap_err();
    assert!(matches!(e, mergec::model::ModelError::Format(_)), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("gpt2") && e.contains("not supported"), "{e}");
}

/// The cached, padded inference path gives the training forward's logits.
#[test]
fn step_with_cache_and_padding_matches_training_forward() {
    let m = tiny_model();
    let dev = Device::Cpu;
    let seq: Vec<u32> = vec![1, 5, 9, 3, 17, 22, 8];
    let t = seq.len();
    let full = m
        .forward_train(
            &Tensor::new(seq.as_slice(), &dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
        )
        .unwrap();
    // Prefill 4 tokens left-padded by 3, then 3 single steps.
    let pad = 3;
    let mut toks = vec![0u32; pad];
    toks.extend(&seq[..4]);
    let n = toks.len();
    let pos: Vec<u32> = (0..n).map(|j| j.saturating_sub(pad) as u32).collect();
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..n).map(move |j| {
                if j == i || (j <= i && j >= pad) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    let mut cache = KvCache::default();
    let mut logits = m
        .forward_step(
            &Tensor::from_vec(toks, (1, n), &dev).unwrap(),
            &Tensor::from_vec(pos, (1, n), &dev).unwrap(),
            &Tensor::from_vec(mask, (1, 1, n, n), &dev).unwrap(),
            &mut cache,
        )
        .unwrap();
    for (k, &tokn) in seq.iter().enumerate().skip(4) {
        let want = full
            .get(0)
            .unwrap()
            .get(k - 1)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        assert!(max_abs_diff(&logits, &want) < 1e-4, "position {}", k - 1);
        let total = cache.len() + 1;
        let mask: Vec<f32> = (0..total)
            .map(|j| if j >= pad { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        logits = m
            .forward_step(
                &Tensor::new(&[[tokn]], &dev).unwrap(),
                &Tensor::new(&[[k as u32]], &dev).unwrap(),
                &Tensor::from_vec(mask, (1, 1, 1, total), &dev).unwrap(),
                &mut cache,
            )
            .unwrap();
    }
    let want = full
        .get(0)
        .unwrap()
        .get(t - 1)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    assert!(max_abs_diff(&logits, &want) < 1e-4);
}

fn smollm2() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} not fetched (scripts/fetch-assets.sh)",
            p.display()
        );
        None
    }
}

#[test]
fn smollm2_gguf_chat_and_batched_greedy() {
    let Some(p) = smollm2() else { return };
    let mut m = LoadedModel::load(&p).unwrap();
    let prompt = m
        .chat_prompt(&[(Role::User, "What is the capital of France?".into())])
        .expect("SmolLM2 has a chat template");
    assert!(prompt.starts_with("<|im_start|>system\n"), "{prompt}");
    assert!(
        prompt.ends_with(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        ),
        "{prompt}"
    );
    let short = m.chat_prompt(&[(Role::User, "Say hello.".into())]).unwrap();
    let opts = GenOptions {
        max_new_tokens: 12,
        stop: vec![],
        batch_size: 4,
    };
    let t0 = std::time::Instant::now();
    let both = m
        .generate(&[prompt.clone(), short.clone()], &opts, &mut |_| {})
        .unwrap();
    eprintln!("batched: {both:?} in {:?}", t0.elapsed());
    assert!(both[0].contains("Paris"), "{both:?}");
    let one = m
        .generate(
            &[prompt],
            &GenOptions {
                batch_size: 1,
                ..opts.clone()
            },
            &mut |_| {},
        )
        .unwrap();
    let two = m
        .generate(
            &[short],
            &GenOptions {
                batch_size: 1,
                ..opts
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(
        both,
        vec![one[0].clone(), two[0].clone()],
        "padding changed a greedy completion"
    );
}

/// Greedy continuation by re-running the training forward on the whole sequence.
fn greedy_reference(m: &Llama, prompt: &[u32], n: usize, eos: u32) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    let mut out = vec![];
    for _ in 0..n {
        let t = Tensor::new(seq.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = m.forward_train(&t).unwrap();
        let last = logits.get(0).unwrap().get(seq.len() - 1).unwrap();
        let next: u32 = last.argmax(0).unwrap().to_scalar().unwrap();
        if next == eos {
            break;
        }
        out.push(next);
        seq.push(next);
    }
    out
}

/// llama, mistral and qwen2 (q/k/v biases) directories load and generate; batched,
/// cached decoding gives the same tokens as the uncached reference.
#[test]
fn hf_directories_of_each_family_load_and_decode_like_the_reference() {
    let chars = "0123456789 +-*/=#?abcdefghij\n";
    for (family, model_type) in [
        (Family::Llama, "llama"),
        (Family::Mistral, "mistral"),
        (Family::Qwen2, "qwen2"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tiny_config();
        cfg.family = family;
        cfg.attention_bias = family == Family::Qwen2;
        cfg.vocab_size = 3 + chars.chars().count();
        cfg.tie_word_embeddings = family != Family::Mistral;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let m = Llama::new(vb, &cfg).unwrap();
        // Larger random weights so greedy decoding does not collapse onto one token;
        // seeded (by family and sorted name) so the test is the same on every machine.
        {
            let data = vm.data().lock().unwrap();
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            let mut rng = SplitMix64::new(7 + family as u64);
            for name in names {
                let v = &data[name];
                let vals: Vec<f32> = (0..v.shape().elem_count())
                    .map(|_| 0.5 * rng.normal())
                    .collect();
                let r = Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap();
                v.set(&r).unwrap();
            }
        }
        vm.save(dir.path().join("model.safetensors")).unwrap();
        let text = cfg.to_hf_json();
        assert!(text.contains(&format!("\"model_type\": \"{model_type}\"")));
        std::fs::write(dir.path().join("config.json"), text).unwrap();
        std::fs::write(
            dir.path().join("tokenizer.json"),
            char_tokenizer_json(chars),
        )
        .unwrap();
        let mut loaded = LoadedModel::load(dir.path()).unwrap();
        let prompts = ["12+3=", "a", "99*9=#?", "bcd ef\n7"];
        let opts = GenOptions {
            max_new_tokens: 6,
            stop: vec![],
            batch_size: 3,
        };
        let got = loaded
            .generate(
                &prompts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &opts,
                &mut |_| {},
            )
            .unwrap();
        for (p, g) in prompts.iter().zip(&got) {
            let ids = loaded.tok.encode(p).unwrap();
            let want = greedy_reference(&m, &ids, 6, 2);
            assert_eq!(
                *g,
                loaded.tok.decode(&want).unwrap(),
                "{model_type}: prompt {p:?}"
            );
        }
        assert!(
            got.iter().filter(|g| g.chars().count() >= 3).count() >= 2,
            "{model_type}: completions too short to test anything: {got:?}"
        );
        assert_eq!(loaded.content_hash().len(), 64);
    }
}
