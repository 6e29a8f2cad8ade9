//! Where programs come from: the [`Generator`] interface, shared by the built-in `tiny`
//! model and the `openai:URL` client.

use std::path::Path;

/// One preference pair: for the same prompt, a program that scored well and one that
/// scored badly.
#[derive(Clone, Debug)]
pub struct Pair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// What learning from one iteration's pairs did.
#[derive(Clone, Debug, Default)]
pub struct LearnReport {
    pub steps: usize,
    pub losses: Vec<f64>,
    /// Mean chosen-minus-rejected log-ratio per step.
    pub margins: Vec<f64>,
    pub note: String,
}

impl LearnReport {
    /// Records one step's DPO loss and mean margin.
    pub fn record_step(
        &mut self,
        loss: &candle_core::Tensor,
        margin: &candle_core::Tensor,
    ) -> Result<(), String> {
        let e = |e: candle_core::Error| format!("learning: {e}");
        self.steps += 1;
        self.losses.push(loss.to_scalar::<f32>().map_err(e)? as f64);
        self.margins.push(
            margin
                .mean_all()
                .and_then(|m| m.to_scalar::<f32>())
                .map_err(e)? as f64,
        );
        Ok(())
    }
}

/// Which generator a run uses, as written in a config or on the command line:
/// `tiny`, `random`, `local:PATH`, `openai:URL` or `openai-chat:URL`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GeneratorSpec {
    Tiny,
    Random,
    Local(std::path::PathBuf),
    /// An OpenAI-compatible server: `/completions`, or `/chat/completions` with `chat`.
    OpenAi {
        url: String,
        chat: bool,
    },
}

impl std::str::FromStr for GeneratorSpec {
    type Err = String;

    fn from_str(g: &str) -> Result<GeneratorSpec, String> {
        let openai = |url: &str, chat: bool| {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(GeneratorSpec::OpenAi {
                    url: url.to_string(),
                    chat,
                })
            } else {
                Err(format!(
                    "generator `{g}`: the URL must start with http:// or https:// \
                     (e.g. openai:http://localhost:8000/v1)"
                ))
            }
        };
        match g {
            "tiny" => Ok(GeneratorSpec::Tiny),
            "random" => Ok(GeneratorSpec::Random),
            _ if g.starts_with("local:") => Ok(GeneratorSpec::Local(g["local:".len()..].into())),
            _ if g.starts_with("openai-chat:") => openai(&g["openai-chat:".len()..], true),
            _ if g.starts_with("openai:") => openai(&g["openai:".len()..], false),
            _ => Err(format!(
                "generator `{g}`: use tiny, random, local:PATH, openai:URL or openai-chat:URL"
            )),
        }
    }
}

impl std::fmt::Display for GeneratorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GeneratorSpec::Tiny => f.write_str("tiny"),
            GeneratorSpec::Random => f.write_str("random"),
            GeneratorSpec::Local(p) => write!(f, "local:{}", p.display()),
            GeneratorSpec::OpenAi { url, chat: false } => write!(f, "openai:{url}"),
            GeneratorSpec::OpenAi { url, chat: true } => write!(f, "openai-chat:{url}"),
        }
    }
}

impl TryFrom<String> for GeneratorSpec {
    type Error = String;
    fn try_from(s: String) -> Result<GeneratorSpec, String> {
        s.parse()
    }
}

impl From<GeneratorSpec> for String {
    fn from(g: GeneratorSpec) -> String {
        g.to_string()
    }
}

pub trait Generator {
    /// Name and version recorded with every program (e.g. `tiny-v1@<hash>`).
    fn id(&self) -> String;
    /// `n` completions of `prompt` at `temperature`, deterministic for a seed.
    fn sample(
        &mut self,
        prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>, String>;
    /// Whether the prompt is a parent program to write a child of (`""`: from
    /// nothing) rather than instructions (see [`super::archive`]).
    fn conditioned(&self) -> bool {
        false
    }
    /// The tokens of the completions the last `sample` returned, where the generator
    /// counts them (the `local:` one).
    fn last_tokens(&self) -> Option<usize> {
        None
    }
    /// Learns from preference pairs (DPO); `dir` is where this iteration's weights or
    /// exports go.
    fn learn(
        &mut self,
        pairs: &[Pair],
        iteration: usize,
        dir: &Path,
    ) -> Result<LearnReport, String>;
}

impl Generator for super::openai::OpenAiGenerator {
    fn id(&self) -> String {
        super::openai::OpenAiGenerator::id(self)
    }

    fn sample(
        &mut self,
        prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>, String> {
        super::openai::OpenAiGenerator::sample(self, prompt, n, temperature, seed)
    }

    fn learn(
        &mut self,
        pairs: &[Pair],
        iteration: usize,
        dir: &Path,
    ) -> Result<LearnReport, String> {
        let triples: Vec<(String, String, String)> = pairs
            .iter()
            .map(|p| (p.prompt.clone(), p.chosen.clone(), p.rejected.clone()))
            .collect();
        let ex = self.export(&triples, iteration, dir)?;
        Ok(LearnReport {
            steps: 0,
            losses: vec![],
            margins: vec![],
            note: format!(
                "{} pairs written to {}{}",
                ex.pairs,
                ex.pairs_file.display(),
                match (&ex.new_endpoint, &ex.new_model) {
                    (Some(u), _) => format!(
                        "; the hook moved the endpoint to {u}{}",
                        ex.new_model
                            .as_ref()
                            .map(|m| format!(" and the model to {m}"))
                            .unwrap_or_default()
                    ),
                    (None, Some(m)) => format!("; the hook moved the model to {m}"),
                    (None, None) if self.hook.is_some() => "; hook ran".to_string(),
                    (None, None) => {
                        "; no hook configured (train with scripts/dpo_train.py)".to_string()
                    }
                }
            ),
        })
    }
}
