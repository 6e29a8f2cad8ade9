//! The `local:` generator's machinery on tiny random llamas: shared-prefix decoding and
//! training forwards agree with the plain ones, LoRA starts as a no-op and folds into
//! the weights, guided sampling only emits viable programs, and DPO on LoRA adapters
//! lowers the loss and raises the log-ratio margin on held-out pairs.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mergec::develop::generator::Pair;
use mergec::develop::local::{LocalGenerator, LocalSettings};
use mergec::model::llama::{KvCache, Llama, LoraSpec, OwnCache};
use mergec::model::sample::{Fit, Guide, SampleOptions, sample, sample_shared};

#[path = "common/tiny_llama.rs"]
mod tiny_llama;
use tiny_llama::{tiny_config, write_char_model};

fn random_llama(seed: u64, vocab: usize) -> Llama {
    let mut cfg = tiny_config();
    cfg.vocab_size = vocab;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let m = Llama::new(vb, &cfg).unwrap();
    mergec::model::train::seeded_init(&vm, seed, 0.5, cfg.num_hidden_layers).unwrap();
    m
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
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
fn shared_prefix_forwards_match_the_plain_ones() {
    let m = random_llama(3, 40);
    let prompt: Vec<u32> = vec![1, 5, 9, 12, 7, 30, 22, 4];
    let conts: [Vec<u32>; 3] = [vec![3, 8, 8, 10], vec![17, 2, 25, 6], vec![39, 0, 1, 33]];
    // Training forward after a prefix = the plain training forward's tail.
    let (prefix, last) = m.prefill_prefix(&prompt).unwrap();
    assert_eq!(prefix.len(), prompt.len());
    let flat: Vec<u32> = conts.iter().flatten().copied().collect();
    let batch = Tensor::from_vec(flat, (3, 4), &Device::Cpu).unwrap();
    let after = m.forward_train_after(&prefix, &batch).unwrap();
    // The gradient-free version: the same bits.
    assert_eq!(
        max_diff(&after, &m.forward_after(&prefix, &batch).unwrap()),
        0.0
    );
    for (i, c) in conts.iter().enumerate() {
        let whole: Vec<u32> = prompt.iter().chain(c).copied().collect();
        let t = Tensor::new(whole.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let full = m.forward_train(&t).unwrap();
        let tail = full.i((0, prompt.len()..)).unwrap();
        let d = max_diff(&after.i(i).unwrap(), &tail);
        assert!(d < 1e-4, "sequence {i}: {d}");
        let d = max_diff(&last.i(0).unwrap(), &full.i((0, prompt.len() - 1)).unwrap());
        assert!(d < 1e-4, "prefix logits: {d}");
    }
    // Decoding steps that share the prefix = steps on a per-sequence copy of it.
    let mut shared = KvCache::default();
    let mut plain = KvCache::default();
    let reps: Vec<&[u32]> = vec![&prompt; 3].into_iter().map(|p| p.as_slice()).collect();
    let b = reps.len();
    let t = prompt.len();
    let toks: Vec<u32> = reps.iter().flat_map(|p| p.iter().copied()).collect();
    let pos: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
    let mask: Vec<f32> = (0..b)
        .flat_map(|_| {
            (0..t).flat_map(move |i| {
                (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY })
            })
        })
        .collect();
    let dev = Device::Cpu;
    m.forward_step(
        &Tensor::from_vec(toks, (b, t), &dev).unwrap(),
        &Tensor::from_vec(pos, (b, t), &dev).unwrap(),
        &Tensor::from_vec(mask, (b, 1, t, t), &dev).unwrap(),
        &mut plain,
    )
    .unwrap();
    for step in 0..4 {
        let tok: Vec<u32> = conts.iter().map(|c| c[step]).collect();
        let pos = vec![(t + step) as u32; b];
        let x = Tensor::from_vec(tok, (b, 1), &dev).unwrap();
        let p = Tensor::from_vec(pos, (b, 1), &dev).unwrap();
        let m_plain = Tensor::zeros((b, 1, 1, t + step + 1), DType::F32, &dev).unwrap();
        let m_shared = Tensor::zeros((b, 1, 1, step + 1), DType::F32, &dev).unwrap();
        let a = m.forward_step(&x, &p, &m_plain, &mut plain).unwrap();
        let s = m
            .forward_step_shared(&prefix, &x, &p, &m_shared, &mut shared)
            .unwrap();
        let d = max_diff(&a, &s);
        assert!(d < 1e-4, "step {step}: {d}");
    }
}

/// Decoding steps with per-sequence caches (`step_ragged`): each sequence's logits
/// match the training forward on its whole text, and are the same bits alone or in a
/// batch whose sequences joined at different steps, one of them redoing two tokens.
#[test]
fn ragged_steps_match_the_plain_forward_and_do_not_depend_on_the_batch() {
    let m = random_llama(4, 40);
    let prompt: Vec<u32> = vec![1, 5, 9, 12, 7, 30];
    let (prefix, _) = m.prefill_prefix(&prompt).unwrap();
    let conts: [Vec<u32>; 3] = [vec![3, 8, 8, 10, 2], vec![17, 2, 25, 6], vec![39, 0, 1]];
    let p = prompt.len();
    let alone: Vec<Vec<Vec<f32>>> = conts
        .iter()
        .map(|c| {
            let mut cache = OwnCache::default();
            let rows: Vec<Vec<f32>> = c
                .iter()
                .enumerate()
                .map(|(j, &t)| {
                    let l = m.step_ragged(Some(&prefix), &[t], &[p + j], &mut [&mut cache]);
                    l.unwrap().i(0).unwrap().to_vec1().unwrap()
                })
                .collect();
            assert_eq!(cache.len(), c.len());
            let whole: Vec<u32> = prompt.iter().chain(c).copied().collect();
            let t = Tensor::new(whole.as_slice(), &Device::Cpu).unwrap();
            let full = m.forward_train(&t.unsqueeze(0).unwrap()).unwrap();
            for (j, row) in rows.iter().enumerate() {
                let want = full.i((0, p + j)).unwrap();
                let got = Tensor::new(row.as_slice(), &Device::Cpu).unwrap();
                let d = max_diff(&got, &want);
                assert!(d < 1e-4, "token {j}: {d}");
            }
            rows
        })
        .collect();
    // Sequence k joins at step k; at step 3 sequence 0 drops its entries from token 1
    // on and feeds token 1 again.
    let mut caches = vec![OwnCache::default(); 3];
    let mut fed = [0usize; 3];
    let mut rows_checked = 0;
    for step in 0.. {
        if step == 3 {
            assert_eq!(fed[0], 3);
            caches[0].truncate(1);
            fed[0] = 1;
        }
        let live: Vec<usize> = (0..3)
            .filter(|&k| k <= step && fed[k] < conts[k].len())
            .collect();
        if live.is_empty() {
            break;
        }
        let toks: Vec<u32> = live.iter().map(|&k| conts[k][fed[k]]).collect();
        let pos: Vec<usize> = live.iter().map(|&k| p + fed[k]).collect();
        let mut refs: Vec<&mut OwnCache> = caches
            .iter_mut()
            .enumerate()
            .filter(|(k, _)| live.contains(k))
            .map(|(_, c)| c)
            .collect();
        let l = m
            .step_ragged(Some(&prefix), &toks, &pos, &mut refs)
            .unwrap();
        for (r, &k) in live.iter().enumerate() {
            let row: Vec<f32> = l.i(r).unwrap().to_vec1().unwrap();
            assert_eq!(row, alone[k][fed[k]], "step {step}, sequence {k}");
            fed[k] += 1;
            rows_checked += 1;
        }
    }
    assert_eq!(rows_checked, 5 + 4 + 3 + 2);
}

#[test]
fn shared_sampling_matches_padded_sampling_and_guides() {
    let m = random_llama(5, 40);
    let prompt: Vec<u32> = vec![1, 5, 9, 12, 7];
    let opts = SampleOptions {
        temperature: 0.0,
        top_p: 1.0,
        max_new_tokens: 12,
        batch_size: 3,
        seed: 1,
    };
    let a = sample(
        &m,
        &vec![prompt.clone(); 5],
        &[2],
        0,
        &opts,
        &|_| false,
        None,
    )
    .unwrap();
    let b = sample_shared(&m, &prompt, 5, &[2], &opts, &|_| false, None).unwrap();
    assert_eq!(a, b);
    // Sampling at temperature 1: the same per-completion streams whatever the batch.
    let hot = SampleOptions {
        temperature: 1.0,
        top_p: 0.9,
        ..opts.clone()
    };
    let x = sample_shared(&m, &prompt, 5, &[2], &hot, &|_| false, None).unwrap();
    let y = sample_shared(
        &m,
        &prompt,
        5,
        &[2],
        &SampleOptions {
            batch_size: 2,
            ..hot.clone()
        },
        &|_| false,
        None,
    )
    .unwrap();
    assert_eq!(x, y);
    // A guide that allows only even tokens and ends after four of them.
    let pieces: Vec<Option<String>> = (0..40).map(|i| Some(format!("{i},"))).collect();
    let fit = |t: &str| {
        let ids: Vec<u32> = t
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        if ids.iter().any(|i| i % 2 == 1) {
            Fit::No
        } else if ids.len() == 4 {
            Fit::Whole
        } else {
            Fit::Prefix
        }
    };
    let guide = Guide::new(&pieces, &fit);
    let g = sample_shared(&m, &prompt, 6, &[2], &hot, &|_| false, Some(&guide)).unwrap();
    for c in &g {
        assert_eq!(c.ids.len(), 4, "{c:?}");
        assert!(c.finished);
        assert!(c.ids.iter().all(|i| i % 2 == 0), "{c:?}");
    }
    // Lines: a one-token header line, then a body line that can never end (at most 3
    // tokens, no newline): every body line dead-ends, is dropped and redone, and after
    // the backtracks the completion closes under a fit that wants one token and a
    // newline.
    let mut pieces: Vec<Option<String>> = (0..40).map(|i| Some(format!("x{i} "))).collect();
    pieces[0] = Some("\n".into());
    let words = |l: &str| l.matches(' ').count();
    let open = |t: &str| {
        let lines: Vec<&str> = t.split('\n').collect();
        match lines.len() {
            1 if words(lines[0]) <= 1 => Fit::Prefix,
            _ if words(lines[0]) != 1 => Fit::No,
            2 if words(lines[1]) <= 3 => Fit::Prefix,
            _ => Fit::No,
        }
    };
    let close = |t: &str| {
        let lines: Vec<&str> = t.split('\n').collect();
        match lines.len() {
            _ if words(lines[0]) != 1 => Fit::No,
            2 if words(lines[1]) <= 1 => Fit::Prefix,
            3 if words(lines[1]) == 1 && lines[2].is_empty() => Fit::Whole,
            _ => Fit::No,
        }
    };
    let mut guide = Guide::new(&pieces, &open);
    guide.closing = Some(&close);
    guide.reserve = 2;
    let long = SampleOptions {
        max_new_tokens: 40,
        ..hot.clone()
    };
    let g = sample_shared(&m, &prompt, 6, &[2], &long, &|_| false, Some(&guide)).unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(guide.counts.closed.load(Relaxed), 6);
    assert!(guide.counts.backtracked.load(Relaxed) >= 6 * (guide.backtracks + 1));
    for c in &g {
        assert!(c.finished, "{c:?}");
        assert_eq!(c.ids.len(), 4, "{c:?}");
        assert_eq!((c.ids[1], c.ids[3]), (0, 0), "{c:?}");
    }
    // The same guided completions, redone lines and closing included, whatever the
    // batch size.
    for batch_size in [1, 4, 6] {
        let mut again = Guide::new(&pieces, &open);
        again.closing = Some(&close);
        again.reserve = 2;
        let other = SampleOptions {
            batch_size,
            ..long.clone()
        };
        let h = sample_shared(&m, &prompt, 6, &[2], &other, &|_| false, Some(&again)).unwrap();
        assert_eq!(g, h, "batch size {batch_size}");
    }
    // Without a closing fit, the same completions end unfinished.
    let guide = Guide::new(&pieces, &open);
    let g = sample_shared(&m, &prompt, 6, &[2], &long, &|_| false, Some(&guide)).unwrap();
    assert!(g.iter().all(|c| !c.finished));
    // A body line goes wrong for good at an odd word with another after it: it is
    // sampled again from that word, not redone; whole after three words.
    let body = |t: &str| {
        let lines: Vec<&str> = t.split('\n').collect();
        if words(lines[0]) != 1 || lines.len() > 3 || (lines.len() == 3 && !lines[2].is_empty()) {
            return Fit::No;
        }
        let Some(line) = lines.get(1) else {
            return Fit::Prefix;
        };
        let from = lines[0].len() + 1;
        let ws: Vec<&str> = line.split_terminator(' ').collect();
        let mut at = from;
        for w in &ws[..ws.len().saturating_sub(1)] {
            if w[1..].parse::<u32>().unwrap() % 2 == 1 {
                return Fit::Lost(at);
            }
            at += w.len() + 1;
        }
        match (lines.len(), ws.len()) {
            (3, 3) => Fit::Whole,
            (2, n) if n <= 3 => Fit::Prefix,
            _ => Fit::No,
        }
    };
    // Redos pick from the logits kept of the place they go back to, or feed a token
    // again for them (rows 0): the same completions, one forward pass less per redo.
    let mut runs = vec![];
    let mut passes = vec![];
    for (batch_size, rows) in [(6, 64), (1, 64), (6, 0)] {
        let mut guide = Guide::new(&pieces, &body);
        guide.rows = rows;
        let other = SampleOptions {
            batch_size,
            ..long.clone()
        };
        let g = sample_shared(&m, &prompt, 6, &[2], &other, &|_| false, Some(&guide)).unwrap();
        let t = guide.counts.tally();
        assert!(t.regrouped > 0);
        assert_eq!(t.reused > 0, rows > 0, "{t:?}");
        passes.push(t.passes + t.reused);
        for c in &g {
            assert!(c.finished, "{c:?}");
            assert_eq!((c.ids.len(), c.ids[1], c.ids[5]), (6, 0, 0), "{c:?}");
            assert!(c.ids[2] % 2 == 0 && c.ids[3] % 2 == 0, "{c:?}");
        }
        runs.push(g);
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
    assert_eq!(passes[0], passes[2]);
}

#[test]
fn lora_starts_as_a_no_op_and_folds_into_the_weights() {
    let mut m = random_llama(7, 40);
    let t = Tensor::new(&[[1u32, 4, 9, 16, 25]], &Device::Cpu).unwrap();
    let before = m.forward_train(&t).unwrap();
    let vm = VarMap::new();
    m.attach_lora(&LoraSpec::new(4, 8.0), &vm, 0).unwrap();
    assert_eq!(vm.all_vars().len(), 2 * 7 * 2);
    assert_eq!(max_diff(&before, &m.forward_train(&t).unwrap()), 0.0);
    // Move B off zero: the output changes, and the merged copy computes the same.
    for (name, v) in vm.data().lock().unwrap().iter() {
        if name.ends_with("lora_B.weight") {
            let r = Tensor::ones(v.shape(), DType::F32, &Device::Cpu).unwrap() * 0.05;
            v.set(&r.unwrap()).unwrap();
        }
    }
    let adapted = m.forward_train(&t).unwrap();
    assert!(max_diff(&before, &adapted) > 1e-3);
    let merged = m.with_merged_lora().unwrap();
    assert!(max_diff(&adapted, &merged.forward_train(&t).unwrap()) < 1e-4);
    assert!(
        m.attach_lora(
            &LoraSpec {
                targets: vec!["wq".into()],
                ..LoraSpec::new(2, 2.0)
            },
            &VarMap::new(),
            0
        )
        .is_err()
    );
}

#[test]
fn checkpointed_gradients_equal_plain_backpropagation() {
    let mut m = random_llama(11, 40);
    let vm = VarMap::new();
    m.attach_lora(&LoraSpec::new(4, 8.0), &vm, 5).unwrap();
    // B off zero, so that every A gets a gradient too.
    for (i, (name, v)) in vm.data().lock().unwrap().iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            let r = (Tensor::ones(v.shape(), DType::F32, &Device::Cpu).unwrap()
                * (0.01 * (1 + i % 5) as f64))
                .unwrap();
            v.set(&r).unwrap();
        }
    }
    let vars = vm.all_vars();
    let (prefix, _) = m.prefill_prefix(&[1, 5, 9, 12, 7, 30]).unwrap();
    let batch = Tensor::new(&[[3u32, 8, 8, 10, 2], [17, 2, 25, 6, 6]], &Device::Cpu).unwrap();
    // A scalar that uses every logit unevenly.
    let weights = Tensor::arange(0f32, 2.0 * 5.0 * 40.0, &Device::Cpu)
        .unwrap()
        .reshape((2, 5, 40))
        .unwrap()
        .sin()
        .unwrap();
    let objective = |logits: &Tensor| {
        candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)
            .and_then(|l| l * &weights)
            .and_then(|l| l.sum_all())
            .map_err(|e| e.to_string())
    };
    let plain = objective(&m.forward_train_after(&prefix, &batch).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    let (checkpointed, value) = m
        .grads_after(&prefix, &batch, &vars, |logits| {
            let o = objective(logits)?;
            Ok((o.clone(), o.detach()))
        })
        .unwrap();
    let plain_value = objective(&m.forward_train_after(&prefix, &batch).unwrap()).unwrap();
    assert!(max_diff(&value, &plain_value) < 1e-5);
    assert_eq!(vars.len(), 2 * 7 * 2);
    for v in &vars {
        let (a, b) = (plain.get(v).unwrap(), checkpointed.get(v).unwrap());
        let scale = a.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        let scale = scale.to_scalar::<f32>().unwrap();
        assert!(scale > 1e-6, "a LoRA weight got no gradient");
        assert!(max_diff(a, b) / scale < 1e-4, "{}", max_diff(a, b) / scale);
    }
}

const CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789 +-*/=()[]{}<>,.:;_|!#\"\n`";

fn pairs(prompt: &str, n: usize, offset: usize) -> Vec<Pair> {
    // Chosen programs scale by a "w" parameter; rejected ones take the max.
    (0..n)
        .map(|i| {
            let k = i + offset;
            Pair {
                prompt: prompt.to_string(),
                chosen: format!("merge m{k}(base: Tensor, models: [Tensor], w: f32 = 0.{k}) -> Tensor {{\n  return base + w * sum(models - base)\n}}"),
                rejected: format!("merge r{k}(base: Tensor, models: [Tensor]) -> Tensor {{\n  let d = max(models - base)\n  return base + d * {k}.0\n}}"),
            }
        })
        .collect()
}

#[test]
fn lora_dpo_lowers_the_loss_and_raises_the_held_out_margin() {
    let dir = tempfile::tempdir().unwrap();
    write_char_model(dir.path(), 11, 0.2, CHARS);
    let settings = LocalSettings {
        lora: LoraSpec::new(4, 8.0),
        ..LocalSettings::default()
    };
    let mut g = LocalGenerator::load(dir.path(), settings).unwrap();
    let prompt = "write a merge";
    let train = pairs(prompt, 8, 1);
    let held = pairs(prompt, 4, 11);
    let reference = g.snapshot().unwrap();
    let (loss0, margin0) = g.evaluate_pairs(&reference, &held).unwrap();
    assert!(margin0.abs() < 1e-3, "{margin0}");
    let mut s = g.settings.dpo.clone();
    s.lr = 3e-3;
    s.epochs = 4;
    s.nll = 0.0;
    s.batch_pairs = 2;
    let r = g.dpo(&train, &s).unwrap();
    assert_eq!(r.steps, 16);
    let first: f64 = r.losses[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = r.losses[r.losses.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(last < first, "loss {first} -> {last}");
    let (loss1, margin1) = g.evaluate_pairs(&reference, &held).unwrap();
    assert!(
        margin1 > margin0 + 0.5,
        "held-out margin {margin0} -> {margin1}"
    );
    assert!(loss1 < loss0, "held-out loss {loss0} -> {loss1}");
    // Saved adapters load back to the same log-probabilities.
    let out = dir.path().join("adapters");
    g.save_adapter(&out).unwrap();
    assert!(out.join("adapter_config.json").is_file());
    let mut h = LocalGenerator::load(dir.path(), g.settings.clone()).unwrap();
    h.load_adapter(&out).unwrap();
    let texts: Vec<&str> = held.iter().map(|p| p.chosen.as_str()).collect();
    assert_eq!(
        g.logprobs(prompt, &texts).unwrap(),
        h.logprobs(prompt, &texts).unwrap()
    );
    use mergec::develop::generator::Generator;
    assert_eq!(g.id(), h.id());
}

/// SmolLM2 LoRA DPO on the preference pairs of a finished `local:` run, with a fifth of
/// them held out: prints the loss and margin curves and the held-out loss and margin
/// before and after. An experiment, not a check (it needs a run):
/// `MERGEC_DPO_RUN=runs/smol cargo test --release --test local_generator -- --ignored --nocapture`.
#[test]
#[ignore]
fn smollm2_lora_dpo_on_a_runs_pairs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run =
        std::path::PathBuf::from(std::env::var("MERGEC_DPO_RUN").unwrap_or("runs/smol".into()));
    let model = root.join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    // Every scored program pairs with every one scoring at least 10 points less.
    let mut scored: Vec<(f64, String)> = vec![];
    for l in std::fs::read_to_string(root.join(&run).join("programs.jsonl"))
        .unwrap()
        .lines()
    {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        if e["event"] == "program" && e["outcome"] == "scored" {
            let p = e["assessed"]["program"].as_str().unwrap().to_string();
            if !scored.iter().any(|s| s.1 == p) {
                scored.push((e["dev"].as_f64().unwrap(), p));
            }
        }
    }
    let prompt = mergec::develop::prompt::compact_prompt();
    let mut pairs = vec![];
    for a in &scored {
        for b in &scored {
            if a.0 >= b.0 + 0.1 {
                pairs.push(Pair {
                    prompt: prompt.clone(),
                    chosen: a.1.clone(),
                    rejected: b.1.clone(),
                });
            }
        }
    }
    let held: Vec<Pair> = pairs.iter().skip(4).step_by(5).cloned().collect();
    let train: Vec<Pair> = pairs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 4 || (i - 4) % 5 != 0)
        .map(|(_, p)| p.clone())
        .collect();
    let mut g = LocalGenerator::load(&model, LocalSettings::default()).unwrap();
    let reference = g.snapshot().unwrap();
    let before = g.evaluate_pairs(&reference, &held).unwrap();
    let s = g.settings.dpo.clone();
    let t0 = std::time::Instant::now();
    let r = g.dpo(&train, &s).unwrap();
    let after = g.evaluate_pairs(&reference, &held).unwrap();
    println!(
        "{} programs, {} pairs: {} train, {} held out; {} steps in {:.0} s",
        scored.len(),
        pairs.len(),
        train.len(),
        held.len(),
        r.steps,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "train loss per step:   {:?}",
        r.losses
            .iter()
            .map(|x| (x * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
    println!(
        "train margin per step: {:?}",
        r.margins
            .iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    println!(
        "held-out loss {:.4} -> {:.4}, margin {:.3} -> {:.3}",
        before.0, after.0, before.1, after.1
    );
    assert!(after.1 > before.1);
}
