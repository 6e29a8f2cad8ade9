//! Evaluation on the real GSM8K files when `scripts/fetch-assets.sh` has fetched them
//! (skipped with a message otherwise): every record parses, and every reference
//! solution scores as correct against its own target.

use mergec::eval::gsm8k::{Split, is_correct, load_jsonl};
use std::path::Path;

#[test]
fn real_gsm8k_parses_and_its_solutions_score_correct() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/gsm8k");
    if !dir.join("test.jsonl").exists() {
        eprintln!("SKIPPED: no assets/gsm8k (run scripts/fetch-assets.sh)");
        return;
    }
    let train = load_jsonl(&dir.join("train.jsonl")).expect("train parses");
    let test = load_jsonl(&dir.join("test.jsonl")).expect("test parses");
    assert_eq!((train.len(), test.len()), (7473, 1319));
    for p in train.iter().chain(&test) {
        assert!(
            is_correct(&p.solution, &p.target),
            "{}: {}",
            p.target,
            p.solution
        );
    }
    let dev = Split::Dev(100).indices(test.len(), 0);
    assert_eq!(dev.len(), 100);
    println!(
        "gsm8k: {} train and {} test problems; all reference solutions score correct",
        train.len(),
        test.len()
    );
}
