//! How each mergekit method maps onto a stdlib program: the role of the base
//! model, how many models it takes, and its parameters (mergekit's names, what
//! they become in the program, which mergekit requires, which are ignored).

/// What `base_model` is to a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseRole {
    /// Required; the program's `base`. A base listed under `models` is dropped from the candidates.
    Required,
    /// An ordinary input averaged with the others (linear, karcher): a base listed under
    /// `models` stays where it is, one not listed is appended last, as mergekit does.
    Input,
    /// Optional: with a base the program works on task vectors (`use_base = true`), without
    /// one on the models themselves (`use_base = false`, the first model stands in as `base`).
    Optional,
}

/// Where a mergekit parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The program parameter of this name.
    Param(&'static str),
    /// Accepted and ignored, for this reason.
    Ignored(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct MkParam {
    pub name: &'static str,
    pub target: Target,
    /// One value per model (mergekit's "tensor parameters") rather than one for the merge.
    pub per_model: bool,
    /// mergekit stops without it (for every model but the base).
    pub required: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct MethodSpec {
    pub name: &'static str,
    pub base: BaseRole,
    /// Fewest and most candidate models (besides the base for Required / Optional).
    pub min_models: usize,
    pub max_models: Option<usize>,
    pub params: &'static [MkParam],
    /// The program parameter set from whether a base_model is given (BaseRole::Optional).
    pub use_base: Option<&'static str>,
}

const fn p(name: &'static str, per_model: bool, required: bool) -> MkParam {
    MkParam {
        name,
        target: Target::Param(name),
        per_model,
        required,
    }
}

const fn ignored(name: &'static str, per_model: bool, why: &'static str) -> MkParam {
    MkParam {
        name,
        target: Target::Ignored(why),
        per_model,
        required: false,
    }
}

const INT8: MkParam = ignored(
    "int8_mask",
    false,
    "it only changes the dtype of mergekit's intermediate sign masks, not the result",
);
const WEIGHT: MkParam = p("weight", true, true);
const DENSITY: MkParam = p("density", true, false);
const LAMBDA: MkParam = p("lambda", false, false);
const NORMALIZE: MkParam = p("normalize", false, false);
const RESCALE: MkParam = p("rescale", false, false);

const TASK_ARITHMETIC: &[MkParam] = &[
    WEIGHT,
    ignored(
        "density",
        true,
        "task_arithmetic does not sparsify (mergekit ignores it too)",
    ),
    LAMBDA,
    NORMALIZE,
    ignored(
        "rescale",
        false,
        "task_arithmetic does not sparsify (mergekit ignores it too)",
    ),
    INT8,
];
const GTA: &[MkParam] = &[WEIGHT, DENSITY, LAMBDA, NORMALIZE, RESCALE, INT8];
const BREADCRUMBS: &[MkParam] = &[
    WEIGHT,
    DENSITY,
    p("gamma", true, false),
    LAMBDA,
    NORMALIZE,
    RESCALE,
    INT8,
];
const DELLA: &[MkParam] = &[
    WEIGHT,
    DENSITY,
    p("epsilon", true, false),
    LAMBDA,
    NORMALIZE,
    RESCALE,
    INT8,
];

const fn gta(name: &'static str, params: &'static [MkParam]) -> MethodSpec {
    MethodSpec {
        name,
        base: BaseRole::Required,
        min_models: 1,
        max_models: None,
        params,
        use_base: None,
    }
}

/// Every mergekit method the stdlib has.
pub static METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: "linear",
        base: BaseRole::Input,
        min_models: 1,
        max_models: None,
        params: &[WEIGHT, NORMALIZE],
        use_base: None,
    },
    gta("task_arithmetic", TASK_ARITHMETIC),
    gta("ties", GTA),
    gta("dare_linear", GTA),
    gta("dare_ties", GTA),
    gta("breadcrumbs", BREADCRUMBS),
    gta("breadcrumbs_ties", BREADCRUMBS),
    gta("della", DELLA),
    gta("della_linear", DELLA),
    MethodSpec {
        name: "sce",
        base: BaseRole::Required,
        min_models: 1,
        max_models: None,
        params: &[p("select_topk", false, false), INT8],
        use_base: None,
    },
    MethodSpec {
        name: "model_stock",
        base: BaseRole::Required,
        min_models: 2,
        max_models: None,
        params: &[p("filter_wise", false, false)],
        use_base: None,
    },
    MethodSpec {
        name: "nearswap",
        base: BaseRole::Required,
        min_models: 1,
        max_models: Some(1),
        params: &[p("t", false, true)],
        use_base: None,
    },
    MethodSpec {
        name: "slerp",
        base: BaseRole::Required,
        min_models: 1,
        max_models: Some(1),
        params: &[p("t", false, true)],
        use_base: None,
    },
    MethodSpec {
        name: "nuslerp",
        base: BaseRole::Optional,
        min_models: 2,
        max_models: Some(2),
        params: &[
            WEIGHT,
            p("nuslerp_flatten", false, false),
            p("nuslerp_row_wise", false, false),
        ],
        use_base: Some("use_base"),
    },
    MethodSpec {
        name: "multislerp",
        base: BaseRole::Optional,
        min_models: 1,
        max_models: None,
        params: &[
            WEIGHT,
            p("normalize_weights", false, false),
            p("eps", false, false),
        ],
        use_base: Some("use_base"),
    },
    MethodSpec {
        name: "karcher",
        base: BaseRole::Input,
        min_models: 1,
        max_models: None,
        params: &[p("max_iter", false, false), p("tol", false, false)],
        use_base: None,
    },
];

/// mergekit's methods that mergec's stdlib does not have.
pub const NOT_IN_STDLIB: &[&str] = &["arcee_fusion", "ram", "ramplus_tl"];

/// mergekit's `passthrough`: one model's tensors, copied (times `scale` where set). Not a
/// stdlib method (it merges nothing): the config reader gives it this program, and copies
/// the layers of `slices:` whose `scale` is not set without running it.
pub static PASSTHROUGH: MethodSpec = MethodSpec {
    name: "passthrough",
    base: BaseRole::Input,
    min_models: 1,
    max_models: Some(1),
    params: &[p("scale", true, false)],
    use_base: None,
};

pub const PASSTHROUGH_PROGRAM: &str = "\
# mergekit 0.1.5 `passthrough`: the one model's tensor, times `scale` where the config sets it.
merge passthrough(base: Tensor, models: [Tensor], scale: [f32] = 1.0) -> Tensor {
    return models[0] * scale[0]
}
";

/// Every parameter name some mergekit method reads. mergekit ignores names a method
/// does not read; so does mergec (with a note) for these, and refuses any other.
pub const MERGEKIT_PARAMS: &[&str] = &[
    "weight",
    "density",
    "gamma",
    "epsilon",
    "lambda",
    "normalize",
    "rescale",
    "int8_mask",
    "t",
    "filter_wise",
    "select_topk",
    "nuslerp_row_wise",
    "nuslerp_flatten",
    "normalize_weights",
    "eps",
    "max_iter",
    "tol",
];

pub fn spec(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ty::Ty;

    /// The table agrees with the stdlib's signatures: every target exists, with the
    /// scope (list = per model) the table says.
    #[test]
    fn table_matches_stdlib() {
        for m in METHODS {
            let method = crate::stdlib::method(m.name)
                .unwrap_or_else(|| panic!("stdlib has no `{}`", m.name));
            for mp in m.params {
                if let Target::Param(t) = mp.target {
                    let sp = method
                        .sig
                        .params
                        .iter()
                        .find(|sp| sp.name == t)
                        .unwrap_or_else(|| panic!("`{}` has no parameter `{t}`", m.name));
                    assert_eq!(matches!(sp.ty, Ty::List(_)), mp.per_model, "{}.{t}", m.name);
                }
            }
            if let Some(u) = m.use_base {
                assert!(
                    method
                        .sig
                        .params
                        .iter()
                        .any(|sp| sp.name == u && sp.ty == Ty::Bool),
                    "{}.{u}",
                    m.name
                );
            }
            assert!(MERGEKIT_PARAMS.iter().all(|n| !n.is_empty()));
            for mp in m.params {
                assert!(MERGEKIT_PARAMS.contains(&mp.name), "{}", mp.name);
            }
        }
    }
}
