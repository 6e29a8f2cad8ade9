//! "Did you mean ...?" for misspelt and foreign names.

/// Names other languages use for our builtins.
const ALIASES: &[(&str, &str)] = &[
    ("average", "mean"),
    ("avg", "mean"),
    ("percentile", "quantile"),
    ("kthvalue", "quantile"),
    ("topk", "topk_mask"),
    ("top_k", "topk_mask"),
    ("clip", "clamp"),
    ("select", "where"),
    ("sgn", "sign"),
    ("frobenius", "norm"),
    ("l2_norm", "norm"),
    ("reduce", "fold"),
    ("stack", "a list: arithmetic already applies to every model"),
    ("range", "repeat"),
    ("numel_", "numel"),
    ("size", "numel"),
    ("shape", "dim"),
    ("cosine_similarity", "cos"),
    ("cos_sim", "cos"),
    ("arccos", "acos"),
    ("rand", "uniform"),
    ("rand_like", "uniform"),
    ("randn_like", "uniform"),
    ("var", "std"),
    ("maximum", "max"),
    ("minimum", "min"),
    ("abs_", "abs"),
];

/// The closest candidate, if close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == name) {
        return Some(if to.contains(' ') {
            format!("use {to}")
        } else {
            format!("did you mean `{to}`?")
        });
    }
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let d = if c.to_ascii_lowercase() == lower {
            0
        } else {
            strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase())
        };
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}
