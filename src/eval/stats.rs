//! Statistics for comparing two models on the same problems: per-problem results kept
//! as a compact bitmap ([`hits_hex`], [`hits_from_hex`]), and the paired comparison
//! ([`paired`]): the difference in accuracy, Newcombe's hybrid score interval for a
//! difference of paired proportions (his method 10, no continuity correction; Newcombe
//! 1998, "Improved confidence intervals for the difference between binomial proportions
//! based on paired data", Stat. Med. 17:2635) and McNemar's exact two-sided test (the
//! binomial test on the discordant pairs).

use serde::Serialize;

/// Per-problem results (true: answered correctly) as hex of a bitmap: problem `i` is bit
/// `i % 8` (least significant first) of byte `i / 8`; unused high bits are 0.
pub fn hits_hex(hits: &[bool]) -> String {
    let mut s = String::with_capacity(hits.len().div_ceil(8) * 2);
    for chunk in hits.chunks(8) {
        let byte = chunk
            .iter()
            .enumerate()
            .fold(0u8, |b, (i, &h)| b | (u8::from(h) << i));
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// The `n` per-problem results of [`hits_hex`]; an error when `text` is not the bitmap
/// of exactly `n` results.
pub fn hits_from_hex(text: &str, n: usize) -> Result<Vec<bool>, String> {
    let want = n.div_ceil(8) * 2;
    if text.len() != want {
        return Err(format!(
            "per-problem results: {} hex digits for {n} problems (expected {want})",
            text.len()
        ));
    }
    let mut out = Vec::with_capacity(n);
    for (k, pair) in text.as_bytes().chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
        let byte = u8::from_str_radix(digits, 16)
            .map_err(|_| format!("per-problem results: `{digits}` is not hex"))?;
        for i in 0..8 {
            if k * 8 + i < n {
                out.push(byte >> i & 1 == 1);
            } else if byte >> i & 1 == 1 {
                return Err(format!("per-problem results: a bit set beyond problem {n}"));
            }
        }
    }
    Ok(out)
}

/// Model A against model B on the same `n` problems.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Paired {
    /// Accuracy of A minus accuracy of B (fractions).
    pub diff: f64,
    /// 95% interval of `diff` (Newcombe's method 10).
    pub ci: [f64; 2],
    /// McNemar's exact two-sided p-value.
    pub p_value: f64,
    pub n: usize,
    /// Problems only A answered, and only B.
    pub only_a: usize,
    pub only_b: usize,
}

/// A compared with B problem by problem; None when they are not results on the same
/// number of problems (or none).
pub fn paired(a: &[bool], b: &[bool]) -> Option<Paired> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let mut t = [0usize; 4]; // both, only a, only b, neither
    for (&x, &y) in a.iter().zip(b) {
        t[match (x, y) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        }] += 1;
    }
    let n = a.len();
    Some(Paired {
        diff: (t[1] as f64 - t[2] as f64) / n as f64,
        ci: newcombe_interval(t[0], t[1], t[2], t[3]),
        p_value: mcnemar_exact(t[1], t[2]),
        n,
        only_a: t[1],
        only_b: t[2],
    })
}

/// McNemar's exact two-sided p-value for `b` and `c` discordant pairs:
/// min(1, 2 P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); 1 when there are none.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let m = b + c;
    if m == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // log C(m, i) - m log 2 for i = 0..=k, summed in log space (m may be thousands).
    let mut logs = Vec::with_capacity(k + 1);
    let mut lc = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            lc += ((m - i + 1) as f64).ln() - (i as f64).ln();
        }
        logs.push(lc - m as f64 * std::f64::consts::LN_2);
    }
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = top.exp() * logs.iter().map(|l| (l - top).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// Newcombe's method 10 interval for p1 - p2, p1 = (a + b) / n and p2 = (a + c) / n, from
/// the 2x2 table (a: both right, b: only the first, c: only the second, d: neither).
pub fn newcombe_interval(a: usize, b: usize, c: usize, d: usize) -> [f64; 2] {
    let n = a + b + c + d;
    if n == 0 {
        return [-1.0, 1.0];
    }
    let (_, l1, u1) = super::gsm8k::accuracy(a + b, n);
    let (_, l2, u2) = super::gsm8k::accuracy(a + c, n);
    let (p1, p2) = ((a + b) as f64 / n as f64, (a + c) as f64 / n as f64);
    let (af, bf, cf, df) = (a as f64, b as f64, c as f64, d as f64);
    let denom = ((af + bf) * (cf + df) * (af + cf) * (bf + df)).sqrt();
    let phi = if denom > 0.0 {
        (af * df - bf * cf) / denom
    } else {
        0.0
    };
    let spread = |x: f64, y: f64| (x * x - 2.0 * phi * x * y + y * y).max(0.0).sqrt();
    let theta = p1 - p2;
    [
        (theta - spread(p1 - l1, u2 - p2)).max(-1.0),
        (theta + spread(u1 - p1, p2 - l2)).min(1.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_round_trip_and_bad_text_is_refused() {
        let h = vec![
            true, false, true, true, false, false, false, false, true, true,
        ];
        assert_eq!(hits_hex(&h), "0d03");
        assert_eq!(hits_from_hex("0d03", 10).unwrap(), h);
        assert_eq!(hits_hex(&[]), "");
        assert!(hits_from_hex("0d", 10).is_err());
        assert!(hits_from_hex("0dzz", 10).is_err());
        // bit 10 set for 10 problems
        assert!(hits_from_hex("0d07", 10).is_err());
    }

    #[test]
    fn mcnemar_matches_hand_computed_values() {
        // b = 12, c = 2: 2 * (1 + 14 + 91) / 2^14 = 212 / 16384.
        assert!((mcnemar_exact(12, 2) - 212.0 / 16384.0).abs() < 1e-15);
        assert!((mcnemar_exact(2, 12) - 212.0 / 16384.0).abs() < 1e-15);
        // b = c: the whole distribution twice, capped at 1.
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b = 0, c = 1: 2 * 1/2 = 1; b = 0, c = 10: 2 / 1024.
        assert_eq!(mcnemar_exact(0, 1), 1.0);
        assert!((mcnemar_exact(0, 10) - 2.0 / 1024.0).abs() < 1e-15);
        // Large counts stay finite: b = 600, c = 500 (exact rational arithmetic:
        // 2 * sum(C(1100, i), i <= 500) / 2^1100 = 0.00281954499...).
        let p = mcnemar_exact(600, 500);
        assert!((p - 0.002_819_544_991).abs() < 1e-11, "{p}");
    }

    #[test]
    fn newcombe_matches_hand_computed_values() {
        // Newcombe's example (a): a = 36, b = 12, c = 2, d = 0, n = 50, difference 0.2;
        // by hand from the formula (Wilson 36+12/50 and 36+2/50, phi = -24/sqrt(43776)):
        // 0.0569296 to 0.3404276.
        let [lo, hi] = newcombe_interval(36, 12, 2, 0);
        assert!((lo - 0.056_929_584).abs() < 1e-8, "{lo}");
        assert!((hi - 0.340_427_603).abs() < 1e-8, "{hi}");
        // A symmetric table: no difference, an interval symmetric about 0 (+-0.1945194).
        let [lo, hi] = newcombe_interval(10, 5, 5, 10);
        assert!((lo + 0.194_519_402).abs() < 1e-8 && (hi - 0.194_519_402).abs() < 1e-8);
    }

    #[test]
    fn paired_counts_the_discordant_problems() {
        let a = [true, true, false, true, false];
        let b = [true, false, false, false, true];
        let p = paired(&a, &b).unwrap();
        assert_eq!((p.n, p.only_a, p.only_b), (5, 2, 1));
        assert!((p.diff - 0.2).abs() < 1e-15);
        assert_eq!(p.p_value, 1.0);
        assert!(p.ci[0] < 0.2 && 0.2 < p.ci[1]);
        assert!(paired(&a, &b[..4]).is_none());
        assert!(paired(&[], &[]).is_none());
    }
}
