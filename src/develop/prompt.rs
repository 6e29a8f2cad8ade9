//! The generation prompt: one fixed template (`prompts/develop.md`) holding the language
//! reference card, generated from the checker's builtin table so it never drifts, and one
//! example program (task arithmetic from the standard library).

/// The template as shipped.
pub const TEMPLATE: &str = include_str!("../../prompts/develop.md");

/// The prompt: `template` with `{{card}}` and `{{example}}` filled in.
pub fn render(template: &str) -> String {
    let example = crate::stdlib::method("task_arithmetic")
        .map(|m| strip_comments(m.source))
        .unwrap_or_default();
    template
        .replace("{{card}}", &crate::card::builtins_text())
        .replace("{{example}}", example.trim())
}

/// The default prompt.
pub fn default_prompt() -> String {
    render(TEMPLATE)
}

/// The short template for small local models (`prompts/develop-compact.md`): the card
/// as signatures only, so the prompt stays near a thousand tokens (it is prefilled for
/// every sample batch and under every DPO step).
pub const COMPACT_TEMPLATE: &str = include_str!("../../prompts/develop-compact.md");

/// The compact prompt.
pub fn compact_prompt() -> String {
    let example = crate::stdlib::method("task_arithmetic")
        .map(|m| strip_comments(m.source))
        .unwrap_or_default();
    COMPACT_TEMPLATE
        .replace("{{card}}", crate::card::builtins_compact().trim_end())
        .replace("{{example}}", example.trim())
}

/// The prompt of a run: its `prompt` setting (`auto` is `compact` for `local:`
/// generators, else `full`; anything else names a template file).
pub fn for_run(cfg: &super::config::RunConfig) -> Result<String, String> {
    match cfg.prompt.as_str() {
        "auto" if matches!(cfg.generator, super::generator::GeneratorSpec::Local(_)) => {
            Ok(compact_prompt())
        }
        "auto" | "full" => Ok(default_prompt()),
        "compact" => Ok(compact_prompt()),
        file => {
            let path = std::path::Path::new(file);
            let t = crate::files::read_text(path, "a prompt file", crate::files::limit::CONFIG)
                .map_err(|e| format!("prompt: {e} (use auto, full, compact or a file)"))?;
            Ok(render(&t))
        }
    }
}

/// A program without its `#` comment lines (the example's header documents sources,
/// which a generator should not copy).
fn strip_comments(src: &str) -> String {
    src.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_prompt_holds_the_card_and_a_checking_example() {
        let p = super::default_prompt();
        assert!(!p.contains("{{"), "unfilled placeholder");
        assert!(p.contains("merge task_arithmetic("));
        assert!(p.contains(crate::card::builtins_text().trim()));
        let start = p.find("```merge\n").unwrap() + 9;
        let end = start + p[start..].find("```").unwrap();
        crate::types::check_source(&p[start..end]).expect("the example checks");
    }
}
