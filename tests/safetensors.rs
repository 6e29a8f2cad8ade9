//! The safetensors reader and writer: round trips, model directories, shards,
//! and corrupt files (every failure is a clear error, never a panic).

use mergec::runtime::safetensors::{
    Checkpoint, Dtype, INDEX_FILE, MODEL_FILE, RawTensor, TensorMap, encode_raw, to_raw, write,
    write_sharded,
};
use std::path::Path;

/// Values exactly representable in f32, f16 and bf16.
fn exact_values(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 - 3.0) * 0.25).collect()
}

fn sample() -> TensorMap {
    let mut m = TensorMap::new();
    m.insert(
        "model.layers.0.mlp.up_proj.weight".into(),
        (vec![2, 3], exact_values(6)),
    );
    m.insert(
        "model.layers.0.input_layernorm.weight".into(),
        (vec![3], vec![1.0, 0.5, -2.0]),
    );
    m.insert("model.norm.weight".into(), (vec![3], vec![1.0, 1.0, 1.0]));
    m
}

fn err_of(path: &Path) -> String {
    match Checkpoint::open(path) {
        Ok(ck) => panic!("expected an error, opened {ck:?}"),
        Err(e) => e.message,
    }
}

#[test]
fn round_trip_every_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let path = dir.path().join(format!("m-{}.safetensors", dtype.name()));
        write(&path, &sample(), dtype).unwrap();
        let ck = Checkpoint::open(&path).unwrap();
        assert_eq!(ck.len(), 3);
        for (name, (shape, data)) in sample() {
            let info = ck.info(&name).unwrap();
            assert_eq!(info.dtype, dtype.name());
            assert_eq!(&info.shape, &shape);
            let t = ck.read_f32(&name).unwrap();
            assert_eq!((t.shape, t.data), (shape, data), "{name} as {dtype:?}");
        }
    }
}

#[test]
fn half_precision_rounds_like_half() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let data = vec![0.1f32, 1.0 / 3.0, 65504.0, -1e-3];
    let mut m = TensorMap::new();
    m.insert("x".into(), (vec![4], data.clone()));
    write(&path, &m, Dtype::BF16).unwrap();
    let t = Checkpoint::open(&path).unwrap().read_f32("x").unwrap();
    let want: Vec<f32> = data
        .iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect();
    assert_eq!(t.data, want);
}

#[test]
fn listing_is_sorted_with_dtype_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write(&path, &sample(), Dtype::F16).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    let names: Vec<&str> = ck.names().collect();
    assert_eq!(
        names,
        [
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.norm.weight"
        ]
    );
    let first = ck.tensors().next().unwrap();
    assert_eq!((first.dtype.as_str(), first.numel()), ("F16", 3));
    assert_eq!(first.nbytes(), 6);
}

#[test]
fn agrees_with_the_reference_crate() {
    let dir = tempfile::tempdir().unwrap();
    // Ours -> theirs.
    let bytes = encode_raw(&to_raw(&sample(), Dtype::F32).unwrap());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor("model.layers.0.mlp.up_proj.weight").unwrap();
    assert_eq!(view.shape(), &[2, 3]);
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    // Theirs -> ours.
    let data: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    let path = dir.path().join("theirs.safetensors");
    safetensors::serialize_to_file([("w", v)], None, &path).unwrap();
    let t = Checkpoint::open(&path).unwrap().read_f32("w").unwrap();
    assert_eq!(t.data, [1.5, -2.0]);
}

#[test]
fn model_directory_single_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path().join(MODEL_FILE), &sample(), Dtype::BF16).unwrap();
    let ck = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ck.len(), 3);
    assert_eq!(ck.read_f32("model.norm.weight").unwrap().data, [1.0; 3]);
}

#[test]
fn sharded_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    let all = sample();
    let mut a = TensorMap::new();
    let mut b = TensorMap::new();
    for (i, (k, v)) in all.iter().enumerate() {
        if i == 0 { &mut a } else { &mut b }.insert(k.clone(), v.clone());
    }
    write_sharded(dir.path(), &[a, b], Dtype::F16).unwrap();
    let ck = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ck.files().len(), 2);
    assert_eq!(ck.len(), 3);
    for (name, (_, data)) in &all {
        assert_eq!(&ck.read_f32(name).unwrap().data, data);
    }
}

#[test]
fn shard_missing_from_index() {
    let dir = tempfile::tempdir().unwrap();
    write_sharded(dir.path(), &[sample(), TensorMap::new()], Dtype::F32).unwrap();
    std::fs::remove_file(dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    let msg = err_of(dir.path());
    assert!(msg.contains(INDEX_FILE), "{msg}");
    assert!(
        msg.contains("shard `model-00001-of-00002.safetensors`") && msg.contains("is missing"),
        "{msg}"
    );
}

#[test]
fn index_pointing_at_the_wrong_shard() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path().join("a.safetensors"), &sample(), Dtype::F32).unwrap();
    write(
        dir.path().join("b.safetensors"),
        &TensorMap::new(),
        Dtype::F32,
    )
    .unwrap();
    let index = r#"{"weight_map": {"model.norm.weight": "b.safetensors"}}"#;
    std::fs::write(dir.path().join(INDEX_FILE), index).unwrap();
    let msg = err_of(dir.path());
    assert!(msg.contains("does not hold it"), "{msg}");
    std::fs::write(dir.path().join(INDEX_FILE), "{not json").unwrap();
    assert!(err_of(dir.path()).contains("bad index JSON"));
    std::fs::write(dir.path().join(INDEX_FILE), r#"{"metadata": {}}"#).unwrap();
    assert!(err_of(dir.path()).contains("weight_map"));
}

#[test]
fn directory_without_a_model() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path().join("adapter.safetensors"),
        &sample(),
        Dtype::F32,
    )
    .unwrap();
    let msg = err_of(dir.path());
    assert!(msg.contains(MODEL_FILE), "{msg}");
    assert!(msg.contains("adapter.safetensors"), "{msg}");
}

#[test]
fn missing_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let msg = err_of(&missing);
    assert!(
        msg.contains("nope.safetensors") && msg.contains("no such file"),
        "{msg}"
    );
    let path = dir.path().join("m.safetensors");
    write(&path, &sample(), Dtype::F32).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    let e = ck
        .read_f32("model.layers.0.mlp.up_proj.weigth")
        .unwrap_err();
    assert!(
        e.message
            .contains("did you mean `model.layers.0.mlp.up_proj.weight`?"),
        "{e}"
    );
    assert!(e.message.contains("m.safetensors"), "{e}");
    let e = ck.info("lm_head.weight").unwrap_err();
    assert!(e.message.contains("holds 3 tensors"), "{e}");
}

#[test]
fn other_dtypes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.safetensors");
    let raw = RawTensor {
        name: "position_ids".into(),
        dtype: "I64".into(),
        shape: vec![2],
        bytes: [7i64, 8].iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    let odd = RawTensor {
        name: "packed".into(),
        dtype: "F4".into(),
        shape: vec![4],
        bytes: vec![0, 0],
    };
    std::fs::write(&path, encode_raw(&[raw, odd])).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    let e = ck.read_f32("position_ids").unwrap_err().message;
    assert!(e.contains("`position_ids`") && e.contains("I64"), "{e}");
    let e = ck.read_f32("packed").unwrap_err().message;
    assert!(e.contains("F4"), "{e}");
}

fn valid_bytes() -> Vec<u8> {
    encode_raw(&to_raw(&sample(), Dtype::F32).unwrap())
}

/// Writes `bytes` and returns the error opening them.
fn corrupt(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let msg = err_of(&path);
    assert!(msg.contains("bad.safetensors"), "names the file: {msg}");
    msg
}

fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn corrupt_files_give_clear_errors() {
    assert!(corrupt(b"").contains("truncated file: 0 bytes"));
    assert!(corrupt(b"abc").contains("truncated file: 3 bytes"));
    let msg = corrupt(&u64::MAX.to_le_bytes());
    assert!(msg.contains("past the end of the file"), "{msg}");
    let mut b = 1000u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    assert!(corrupt(&b).contains("header length 1000 is past the end"));
    assert!(corrupt(&with_header("{\"a\": ", b"")).contains("bad header JSON"));
    assert!(corrupt(&with_header("[1, 2]", b"")).contains("expected an object"));
    assert!(corrupt(&with_header("\u{1}\u{2}", b"")).contains("bad header JSON"));
    let mut b = 2u64.to_le_bytes().to_vec();
    b.extend_from_slice(&[0xff, 0xfe]);
    assert!(corrupt(&b).contains("not UTF-8"));
    let msg = corrupt(&with_header(
        r#"{"w": {"shape": [2], "data_offsets": [0, 8]}}"#,
        &[0; 8],
    ));
    assert!(msg.contains("`w`") && msg.contains("dtype"), "{msg}");
    let msg = corrupt(&with_header(
        r#"{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#,
        &[0; 8],
    ));
    assert!(msg.contains("shape"), "{msg}");
    let msg = corrupt(&with_header(
        r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}"#,
        &[0; 8],
    ));
    assert!(msg.contains("reversed"), "{msg}");
    let msg = corrupt(&with_header(
        r#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
        &[0; 8],
    ));
    assert!(msg.contains("needs 12 bytes"), "{msg}");
    let msg = corrupt(&with_header(
        r#"{"w": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}}"#,
        &[0; 8],
    ));
    assert!(msg.contains("overflows"), "{msg}");
}

#[test]
fn truncated_data_is_reported() {
    let bytes = valid_bytes();
    let msg = corrupt(&bytes[..bytes.len() - 4]);
    assert!(
        msg.contains("runs past the end") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn no_panic_on_any_truncation_or_byte_flip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.safetensors");
    let bytes = valid_bytes();
    let try_bytes = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        if let Ok(ck) = Checkpoint::open(&path) {
            let names: Vec<String> = ck.names().map(String::from).collect();
            for n in names {
                let _ = ck.read_f32(&n);
            }
        }
    };
    for len in 0..bytes.len() {
        try_bytes(&bytes[..len]);
    }
    let mut state = 0x9e3779b97f4a7c15u64;
    for _ in 0..400 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = bytes.clone();
        let i = (state % b.len() as u64) as usize;
        b[i] = (state >> 32) as u8;
        try_bytes(&b);
    }
}

#[test]
fn duplicate_tensor_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    write_sharded(dir.path(), &[sample(), sample()], Dtype::F32).unwrap();
    let index = r#"{"weight_map": {
        "model.norm.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.path().join(INDEX_FILE), index).unwrap();
    let msg = err_of(dir.path());
    assert!(msg.contains("is also stored in"), "{msg}");
}

#[test]
fn writer_rejects_a_shape_that_does_not_fit() {
    let mut m = TensorMap::new();
    m.insert("w".into(), (vec![2, 2], vec![1.0; 3]));
    let e = to_raw(&m, Dtype::F32).unwrap_err();
    assert!(e.message.contains("`w`"), "{e}");
}

/// This process's resident file-backed memory (RssFile), in bytes; None off Linux.
fn rss_file() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssFile:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn release_drops_a_tensors_pages_and_later_reads_see_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.safetensors");
    let n = 8 << 20; // 32 MiB of F32
    let big: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.5).collect();
    let mut m = sample();
    m.insert("big".into(), (vec![n], big.clone()));
    write(&path, &m, Dtype::F32).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    assert_eq!(ck.read_f32("big").unwrap().data, big);
    let before = rss_file();
    ck.release("big");
    let after = rss_file();
    if let (Some(b), Some(a)) = (before, after) {
        // Other tests map only small files; the big one's 32 MiB must have gone.
        assert!(
            b.saturating_sub(a) >= 24 << 20,
            "RssFile {b} -> {a} after release"
        );
    }
    // Unknown names and repeated releases are no-ops; every tensor still reads the same.
    ck.release("no such tensor");
    ck.release("big");
    for name in sample().keys() {
        ck.release(name);
    }
    assert_eq!(ck.read_f32("big").unwrap().data, big);
    for (name, (shape, data)) in sample() {
        let t = ck.read_f32(&name).unwrap();
        assert_eq!((t.shape, t.data), (shape, data), "{name}");
    }
}
