//! `openai:URL`: programs from any OpenAI-compatible completion endpoint (vLLM, the
//! llama.cpp server, Ollama, hosted APIs). `URL` is the API base, e.g.
//! `http://localhost:8000/v1`; requests go to `URL/completions`, or to
//! `URL/chat/completions` with `openai-chat:URL` (the prompt becomes one user message).
//! The model name comes from `--generator-model` / `generator_model` (else the server's
//! first model); `OPENAI_API_KEY`, when set, is sent as a bearer token.
//!
//! Remote guidance: with `generator_grammar` (default `auto`) each request carries the
//! loop's grammar (`mergec grammar --shape loop`), so the server decodes only programs the
//! loop can run: `gbnf` sends the GBNF form as `grammar` (llama.cpp's server and
//! llama-cpp-python's), `lark` sends the Lark form as `structured_outputs: {grammar}`
//! (vLLM >= 0.12), `none` sends neither, and `auto` asks the server what it is (vLLM
//! answers `/version`, llama.cpp `/props`, llama-cpp-python lists its models as owned by
//! `me`; anything else gets no grammar). Type errors are still repaired by the loop.
//!
//! Learning happens outside: each iteration's preference pairs are written as TRL-format
//! JSONL (`prompt`, `chosen`, `rejected`) and an optional hook command trains on them
//! (scripts/dpo_train.py: TRL's DPO trainer) and reloads the server; if the hook's last
//! output lines are `endpoint: URL` and/or `model: NAME`, the next iteration samples from
//! that URL and/or asks for that model (examples/hooks/vllm-lora.sh loads the new adapter
//! into vLLM and names it).

use super::generator::GeneratorSpec;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

pub struct OpenAiGenerator {
    pub base: String,
    pub chat: bool,
    pub model: Option<String>,
    pub max_tokens: usize,
    pub top_p: f64,
    /// Shell command run after the pairs are written; `{pairs}`, `{iteration}` and
    /// `{endpoint}` are replaced.
    pub hook: Option<String>,
    /// Which grammar requests carry (`Auto`: decided on the first request; `None` for
    /// a generator made with [`Self::new`]).
    pub grammar: RemoteGrammar,
    agent: ureq::Agent,
    /// The largest reply read, in bytes.
    max_reply: u64,
}

/// The grammar an `openai:` generator sends with its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteGrammar {
    None,
    /// GBNF as `grammar` (llama.cpp, llama-cpp-python).
    Gbnf,
    /// Lark as `structured_outputs: {grammar}` (vLLM).
    Lark,
    /// Ask the server.
    Auto,
}

impl std::str::FromStr for RemoteGrammar {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => RemoteGrammar::None,
            "gbnf" => RemoteGrammar::Gbnf,
            "lark" => RemoteGrammar::Lark,
            "auto" => RemoteGrammar::Auto,
            _ => {
                return Err(format!(
                    "generator_grammar `{s}`: expected auto, gbnf, lark or none"
                ));
            }
        })
    }
}

impl RemoteGrammar {
    pub fn name(self) -> &'static str {
        match self {
            RemoteGrammar::None => "none",
            RemoteGrammar::Gbnf => "gbnf",
            RemoteGrammar::Lark => "lark",
            RemoteGrammar::Auto => "auto",
        }
    }
}

/// How long an `openai:` generator waits, and how much it reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HttpLimits {
    /// To connect.
    pub connect: Duration,
    /// For a whole request and its reply (a server that hangs or trickles bytes ends
    /// here).
    pub overall: Duration,
    /// The largest reply body, in bytes.
    pub max_reply: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect: Duration::from_secs(10),
            overall: Duration::from_secs(600),
            max_reply: 64 << 20,
        }
    }
}

impl HttpLimits {
    /// From a run's settings (`http_connect_timeout_s`, `http_timeout_s`,
    /// `http_max_reply_mb`; range-checked by the config).
    pub fn from_config(cfg: &super::config::RunConfig) -> Result<HttpLimits, String> {
        let secs = |key: &str, v: f64| {
            Duration::try_from_secs_f64(v).map_err(|_| format!("{key}: {v} is not a duration"))
        };
        Ok(HttpLimits {
            connect: secs("http_connect_timeout_s", cfg.http_connect_timeout_s)?,
            overall: secs("http_timeout_s", cfg.http_timeout_s)?,
            max_reply: (cfg.http_max_reply_mb as u64) << 20,
        })
    }
}

/// The result of one iteration's learning step.
#[derive(Clone, Debug, Default)]
pub struct Exported {
    pub pairs_file: std::path::PathBuf,
    pub pairs: usize,
    pub hook_output: String,
    pub new_endpoint: Option<String>,
    /// The model name the hook's `model: NAME` line switched to.
    pub new_model: Option<String>,
}

impl OpenAiGenerator {
    /// From a generator spec `openai:URL` or `openai-chat:URL`.
    pub fn from_spec(spec: &str, model: Option<String>) -> Result<OpenAiGenerator, String> {
        match spec.parse()? {
            GeneratorSpec::OpenAi { url, chat } => Ok(OpenAiGenerator::new(&url, chat, model)),
            _ => Err(format!(
                "generator `{spec}`: expected openai:URL or openai-chat:URL"
            )),
        }
    }

    /// A client of the server at `url` (`/chat/completions` with `chat`).
    pub fn new(url: &str, chat: bool, model: Option<String>) -> OpenAiGenerator {
        let limits = HttpLimits::default();
        OpenAiGenerator {
            base: url.trim_end_matches('/').to_string(),
            chat,
            model,
            max_tokens: 768,
            top_p: 0.95,
            hook: None,
            // No grammar unless asked (a run's `generator_grammar` defaults to auto).
            grammar: RemoteGrammar::None,
            agent: agent(&limits),
            max_reply: limits.max_reply,
        }
    }

    /// The same generator with other timeouts and reply size limit.
    pub fn with_limits(mut self, limits: HttpLimits) -> OpenAiGenerator {
        self.agent = agent(&limits);
        self.max_reply = limits.max_reply;
        self
    }

    pub fn id(&self) -> String {
        format!(
            "openai{}:{}#{}",
            if self.chat { "-chat" } else { "" },
            self.base,
            self.model.as_deref().unwrap_or("default")
        )
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.post(&url);
        if let Ok(key) = std::env::var("OPENAI_API_KEY") {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        self.reply(&url, req.send_json(body))
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Ok(key) = std::env::var("OPENAI_API_KEY") {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        self.reply(&url, req.call())
    }

    /// The JSON of a reply, read up to the size limit; a status other than success is
    /// an error with the start of the body.
    fn reply(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, String> {
        let mut resp = sent.map_err(|e| match e {
            ureq::Error::Timeout(_) => format!("{url}: {e} (the server did not answer in time)"),
            e => format!("{url}: {e} (is the server running?)"),
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(self.max_reply)
            .read_to_string()
            .map_err(|e| format!("{url}: reading the reply (HTTP {}): {e}", status.as_u16()))?;
        if !status.is_success() {
            return Err(format!(
                "HTTP {} from {url}: {}",
                status.as_u16(),
                crate::runtime::child::cut(text.trim(), 200)
            ));
        }
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{url}: the reply is not JSON ({e}): {}",
                crate::runtime::child::cut(text.trim(), 200)
            )
        })
    }

    /// The server's root (the API base without its `/v1`).
    fn root(&self) -> &str {
        self.base.strip_suffix("/v1").unwrap_or(&self.base)
    }

    /// `Auto` resolved by asking the server what it is (once).
    fn resolve_grammar(&mut self) -> RemoteGrammar {
        if self.grammar != RemoteGrammar::Auto {
            return self.grammar;
        }
        let ok = |path: &str| {
            let url = format!("{}{path}", self.root());
            self.agent
                .get(&url)
                .call()
                .is_ok_and(|r| r.status().is_success())
        };
        // llama.cpp's server answers `/props`; llama-cpp-python's lists its models as
        // owned by "me".
        let llama_cpp = || {
            ok("/props")
                || self
                    .get("/models")
                    .is_ok_and(|v| v["data"][0]["owned_by"] == "me")
        };
        let g = if ok("/version") {
            RemoteGrammar::Lark
        } else if llama_cpp() {
            RemoteGrammar::Gbnf
        } else {
            RemoteGrammar::None
        };
        eprintln!(
            "openai generator: {} gets grammar `{}` (generator_grammar = auto)",
            self.base,
            g.name()
        );
        self.grammar = g;
        g
    }

    /// The request fields that carry the grammar, if any.
    fn grammar_fields(&mut self) -> Result<Option<(&'static str, Value)>, String> {
        use crate::syntax::forms::{Shape, derive, gbnf, lark};
        let g = self.resolve_grammar();
        if g == RemoteGrammar::None {
            return Ok(None);
        }
        let d = derive(Shape::Loop).map_err(|e| e.to_string())?;
        Ok(Some(match g {
            RemoteGrammar::Gbnf => ("grammar", json!(gbnf::render(&d))),
            _ => ("structured_outputs", json!({"grammar": lark::render(&d)})),
        }))
    }

    fn model_name(&mut self) -> Result<String, String> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        let v = self.get("/models")?;
        let m = v["data"][0]["id"]
            .as_str()
            .ok_or_else(|| {
                format!(
                    "{}/models: no model listed; pass --generator-model",
                    self.base
                )
            })?
            .to_string();
        self.model = Some(m.clone());
        Ok(m)
    }

    /// `n` completions at `temperature`. Servers that return fewer choices than asked
    /// (some ignore `n`) are asked again with the next seeds until there are `n`.
    pub fn sample(
        &mut self,
        prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>, String> {
        let model = self.model_name()?;
        let grammar = self.grammar_fields()?;
        let mut out = Vec::with_capacity(n);
        let mut round = 0u64;
        while out.len() < n {
            let want = (n - out.len()).min(16);
            let mut body = json!({
                "model": model, "n": want, "temperature": temperature,
                "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": seed.wrapping_add(round),
            });
            if let Some((key, value)) = &grammar {
                body[*key] = value.clone();
            }
            let path = if self.chat {
                body["messages"] = json!([{"role": "user", "content": prompt}]);
                "/chat/completions"
            } else {
                body["prompt"] = json!(prompt);
                "/completions"
            };
            let v = self.post(path, &body)?;
            let choices = v["choices"]
                .as_array()
                .ok_or_else(|| format!("{}{path}: no `choices` in the reply: {v}", self.base))?;
            if choices.is_empty() {
                return Err(format!("{}{path}: empty `choices`", self.base));
            }
            for c in choices.iter().take(n - out.len()) {
                let text = if self.chat {
                    c["message"]["content"].as_str()
                } else {
                    c["text"].as_str()
                };
                out.push(text.unwrap_or_default().to_string());
            }
            round += 1;
        }
        Ok(out)
    }

    /// Writes the pairs as TRL-format JSONL under `dir` and runs the hook, if any.
    pub fn export(
        &mut self,
        pairs: &[(String, String, String)],
        iteration: usize,
        dir: &Path,
    ) -> Result<Exported, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(format!("dpo-pairs-iter{iteration}.jsonl"));
        let mut text = String::new();
        for (prompt, chosen, rejected) in pairs {
            text.push_str(
                &json!({"prompt": prompt, "chosen": chosen, "rejected": rejected}).to_string(),
            );
            text.push('\n');
        }
        crate::files::write_atomic(&file, text.as_bytes())?;
        let mut ex = Exported {
            pairs_file: file.clone(),
            pairs: pairs.len(),
            ..Exported::default()
        };
        if let Some(hook) = &self.hook {
            let cmd = hook
                .replace("{pairs}", &file.display().to_string())
                .replace("{iteration}", &iteration.to_string())
                .replace("{endpoint}", &self.base);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .output()
                .map_err(|e| format!("hook `{cmd}`: {e}"))?;
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            if !out.status.success() {
                return Err(format!(
                    "hook `{cmd}` failed ({}): {}{}",
                    out.status,
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            // The hook's closing lines may move the generator: `endpoint: URL` (a new
            // server) and `model: NAME` (e.g. an adapter loaded into vLLM).
            for l in stdout
                .lines()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .take_while(|l| l.trim().starts_with("endpoint:") || l.trim().starts_with("model:"))
            {
                let l = l.trim();
                if let Some(url) = l.strip_prefix("endpoint:") {
                    let url = url.trim().trim_end_matches('/').to_string();
                    if ex.new_endpoint.is_none() {
                        self.base = url.clone();
                        ex.new_endpoint = Some(url);
                    }
                } else if let Some(name) = l.strip_prefix("model:")
                    && ex.new_model.is_none()
                {
                    self.model = Some(name.trim().to_string());
                    ex.new_model = Some(name.trim().to_string());
                }
            }
            ex.hook_output = stdout;
        }
        Ok(ex)
    }
}

fn agent(l: &HttpLimits) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(l.connect))
        .timeout_global(Some(l.overall))
        .http_status_as_error(false)
        .build()
        .into()
}
