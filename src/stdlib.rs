//! The standard library: merge methods written in the language itself
//! (`stdlib/*.merge`), embedded in the binary.

use crate::syntax::ast::Program;
use crate::types::MergeSig;

/// (file name, source) of every stdlib program, in listing order.
pub static SOURCES: &[(&str, &str)] = &[
    ("linear.merge", include_str!("../stdlib/linear.merge")),
    (
        "task_arithmetic.merge",
        include_str!("../stdlib/task_arithmetic.merge"),
    ),
    ("ties.merge", include_str!("../stdlib/ties.merge")),
    (
        "dare_linear.merge",
        include_str!("../stdlib/dare_linear.merge"),
    ),
    ("dare_ties.merge", include_str!("../stdlib/dare_ties.merge")),
    (
        "breadcrumbs.merge",
        include_str!("../stdlib/breadcrumbs.merge"),
    ),
    (
        "breadcrumbs_ties.merge",
        include_str!("../stdlib/breadcrumbs_ties.merge"),
    ),
    ("della.merge", include_str!("../stdlib/della.merge")),
    (
        "della_linear.merge",
        include_str!("../stdlib/della_linear.merge"),
    ),
    ("sce.merge", include_str!("../stdlib/sce.merge")),
    (
        "model_stock.merge",
        include_str!("../stdlib/model_stock.merge"),
    ),
    ("nearswap.merge", include_str!("../stdlib/nearswap.merge")),
    ("slerp.merge", include_str!("../stdlib/slerp.merge")),
    ("nuslerp.merge", include_str!("../stdlib/nuslerp.merge")),
    (
        "multislerp.merge",
        include_str!("../stdlib/multislerp.merge"),
    ),
    ("karcher.merge", include_str!("../stdlib/karcher.merge")),
    (
        "algorithm_a.merge",
        include_str!("../stdlib/algorithm_a.merge"),
    ),
];

/// One stdlib method: its program, signature and header comment.
#[derive(Clone, Debug)]
pub struct Method {
    pub file: &'static str,
    pub source: &'static str,
    pub program: Program,
    pub sig: MergeSig,
    /// The header comment's first line: what the method does.
    pub summary: String,
    /// The whole header comment (source, parameters, differences).
    pub header: String,
}

/// The header comment: the leading `#` lines of a file, without the `#`.
pub fn header_comment(src: &str) -> String {
    src.lines()
        .take_while(|l| l.trim_start().starts_with('#'))
        .map(|l| {
            l.trim_start()
                .trim_start_matches('#')
                .strip_prefix(' ')
                .unwrap_or(l.trim_start().trim_start_matches('#'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every stdlib method, checked. Panics only if the embedded stdlib is broken,
/// which the test suite rules out.
pub fn methods() -> Vec<Method> {
    let mut out = Vec::new();
    for (file, source) in SOURCES {
        let (program, sigs) = crate::types::check_source(source)
            .unwrap_or_else(|d| panic!("stdlib/{file} does not check: {d:?}"));
        let header = header_comment(source);
        let summary = header.lines().next().unwrap_or_default().to_string();
        for sig in sigs {
            out.push(Method {
                file,
                source,
                program: program.clone(),
                sig,
                summary: summary.clone(),
                header: header.clone(),
            });
        }
    }
    out
}

/// The most models (besides the base) the method `name` merges, where it has a limit:
/// slerp and nearswap read only `models[0]`, nuslerp only `models[0]` and `models[1]`
/// (their headers say so). Given more, they would ignore the rest, so they are not
/// compared with methods that merge every model.
pub fn max_models(name: &str) -> Option<usize> {
    match name {
        "slerp" | "nearswap" => Some(1),
        "nuslerp" => Some(2),
        _ => None,
    }
}

/// The stdlib method called `name`.
pub fn method(name: &str) -> Option<Method> {
    methods().into_iter().find(|m| m.sig.name == name)
}
