//! The two runaway programs of the hardening issue (issue 20): both small, both passed
//! the checker before the static cost bound, and both never finished.

#![allow(dead_code)]

/// 29 helpers, each calling the one before it twice: 2^29 nodes once inlined (1.6 KB).
pub fn doubling_helpers() -> String {
    let mut s = String::from("fn f0(x: Tensor) -> Tensor { return x * 1.01 }\n");
    for i in 1..30 {
        s.push_str(&format!(
            "fn f{i}(x: Tensor) -> Tensor {{ return f{p}(f{p}(x)) }}\n",
            p = i - 1
        ));
    }
    s.push_str("merge m(base: Tensor, models: [Tensor]) -> Tensor { return f29(base) }\n");
    s
}

/// Eight nested `repeat(64, ...)`: 64^8 steps per element (under 300 bytes).
pub fn nested_repeats() -> String {
    let mut nested = "a8 * 1.0001".to_string();
    for k in (0..8).rev() {
        let from = if k == 0 {
            "base".to_string()
        } else {
            format!("a{k}")
        };
        nested = format!("repeat(64, {from}, |a{}, i{k}| {nested})", k + 1);
    }
    format!("merge r(base: Tensor, models: [Tensor]) -> Tensor {{\n    return {nested}\n}}\n")
}
