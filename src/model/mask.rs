//! Token masks from a grammar with llguidance: which tokens may come next so that the
//! text stays a prefix of the grammar's language, for every token of the vocabulary at
//! once (the engine behind structured outputs in vLLM, SGLang and llama.cpp).
//!
//! The vocabulary is given as each token's text ([`super::tokenizer::Tok::pieces`], or a
//! built-in vocabulary's): llguidance's token trie is built from those bytes, so any
//! tokenizer works the same way. (llguidance's own Hugging Face bridge,
//! `toktrie_hf_tokenizers`, needs tokenizers 0.21; this project uses 0.23, and the
//! pieces are what guided decoding appends to its text anyway.) Tokens without a
//! piece (special tokens, byte fragments) are never allowed, but the end tokens, which
//! are allowed where the grammar accepts the text.

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a grammar could not be used for masks.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("the vocabulary has no tokens")]
    NoVocabulary,
    #[error("llguidance: {0}")]
    Engine(String),
}

/// A compiled grammar over one vocabulary; [`GrammarMask::start`] gives each completion
/// its own state.
///
/// With [`GrammarMask::with_lines`], the grammar may change at each line start: the
/// hook sees the text so far (ending in a newline and blanks) and whether the completion
/// is closing, and gives the grammar of the rest of the text (or None: keep the current
/// one). Those grammars are compiled once per text of grammar.
pub struct GrammarMask {
    template: Matcher,
    vocab: usize,
    factory: ParserFactory,
    lines: Option<Box<LineGrammar>>,
    compiled: Mutex<HashMap<String, Matcher>>,
}

/// A grammar for the rest of a text from a line start (see [`GrammarMask::with_lines`]).
pub type LineGrammar = dyn Fn(&str, bool) -> Option<String> + Send + Sync;

impl GrammarMask {
    /// The grammar `lark` (llguidance's Lark syntax) over the vocabulary `pieces`
    /// (token `i`'s text, None where it has none) with end tokens `eos`.
    pub fn new(lark: &str, pieces: &[Option<String>], eos: &[u32]) -> Result<Self, MaskError> {
        if pieces.is_empty() {
            return Err(MaskError::NoVocabulary);
        }
        let words: Vec<Vec<u8>> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Some(s) if !eos.contains(&(i as u32)) => s.as_bytes().to_vec(),
                // A special token: llguidance's marker, so no text ever matches it.
                _ => {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(format!("[{i}]").as_bytes());
                    w
                }
            })
            .collect();
        Self::from_words(lark, words, eos)
    }

    /// A grammar over single bytes (every byte a token, end token 0), to check whole texts
    /// with [`Self::accepts`].
    pub fn bytes(lark: &str) -> Result<Self, MaskError> {
        let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        words[0] = vec![TokTrie::SPECIAL_TOKEN_MARKER, b'[', b'0', b']'];
        Self::from_words(lark, words, &[0])
    }

    fn from_words(lark: &str, words: Vec<Vec<u8>>, eos: &[u32]) -> Result<Self, MaskError> {
        let eos_in: Vec<u32> = eos
            .iter()
            .copied()
            .filter(|&e| (e as usize) < words.len())
            .collect();
        let first_eos = eos_in.first().copied().unwrap_or(words.len() as u32 - 1);
        let info = TokRxInfo::new(words.len() as u32, first_eos);
        let mut trie = TokTrie::from(&info, &words);
        if !eos_in.is_empty() {
            trie = trie.with_eos_tokens(&eos_in);
        }
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(engine)?;
        factory.quiet();
        let template = matcher(&factory, lark)?;
        Ok(GrammarMask {
            template,
            vocab: words.len(),
            factory,
            lines: None,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// This grammar for the start of the text, and `lines`' grammars from each line
    /// start on.
    pub fn with_lines(mut self, lines: Box<LineGrammar>) -> Self {
        self.lines = Some(lines);
        self
    }

    /// A fresh state at the start of the text.
    pub fn start(&self) -> MaskState {
        MaskState {
            frames: vec![Frame {
                start: 0,
                count: 0,
                m: self.template.deep_clone(),
            }],
            vocab: self.vocab,
        }
    }

    /// A fresh matcher of the grammar `lark` (compiled once).
    fn fresh(&self, lark: &str) -> Option<Matcher> {
        let mut cache = self.compiled.lock().ok()?;
        if let Some(m) = cache.get(lark) {
            return Some(m.deep_clone());
        }
        let m = matcher(&self.factory, lark).ok()?;
        // One grammar per scope seen: a long develop run would gather them forever.
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(lark.to_string(), m.deep_clone());
        Some(m)
    }
}

/// Compiled line grammars kept at most (then the cache starts again).
const MAX_CACHED: usize = 512;

fn matcher(factory: &ParserFactory, lark: &str) -> Result<Matcher, MaskError> {
    // Whitespace and comments may also open the text (llguidance allows `%ignore`d
    // text only after the first lexeme unless told).
    let lark = format!("%llguidance {{\"allow_initial_skip\": true}}\n{lark}");
    let parser = factory
        .create_parser(TopLevelGrammar::from_lark(lark))
        .map_err(engine)?;
    let m = Matcher::new(Ok(parser));
    match m.get_error() {
        Some(e) => Err(MaskError::Engine(e)),
        None => Ok(m),
    }
}

/// One completion's place in the grammar: a matcher per grammar it went through, each
/// with the tokens it took (`count`, from the completion's token `start` on).
pub struct MaskState {
    frames: Vec<Frame>,
    vocab: usize,
}

struct Frame {
    start: usize,
    count: usize,
    m: Matcher,
}

impl MaskState {
    fn top(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("a frame")
    }

    fn consumed(&self) -> usize {
        self.frames.last().map_or(0, |f| f.start + f.count)
    }

    /// The tokens allowed next (end tokens where the text is whole); None if the
    /// engine is in an error state (a token it did not allow was consumed).
    pub fn allowed(&mut self) -> Option<Vec<bool>> {
        // A grammar that cannot go on allows only the end tokens.
        let v = self.top().m.compute_mask_or_eos().ok()?;
        Some((0..self.vocab).map(|t| v.is_allowed(t as u32)).collect())
    }

    /// The engine's error, if it is in an error state.
    pub fn error(&self) -> Option<String> {
        self.frames.last().and_then(|f| f.m.get_error())
    }

    /// Takes token `t`; false if the grammar does not allow it.
    pub fn consume(&mut self, t: u32) -> bool {
        let f = self.top();
        let ok = f.m.consume_token(t).is_ok() && !f.m.is_error();
        f.count += ok as usize;
        ok
    }

    /// Forgets the last `n` tokens (and the grammars taken up after them).
    pub fn rollback(&mut self, n: usize) -> bool {
        let Some(target) = self.consumed().checked_sub(n) else {
            return false;
        };
        while self.frames.len() > 1 && self.top().start > target {
            self.frames.pop();
        }
        let f = self.top();
        let back = f.start + f.count - target;
        f.count -= back;
        back == 0 || f.m.rollback(back).is_ok()
    }

    /// At a line start (the text so far ends in a newline and blanks): the grammar of
    /// the rest from here on, if the mask has one for this text.
    pub fn line_start(&mut self, g: &GrammarMask, text: &str, closing: bool) {
        let Some(lark) = g.lines.as_ref().and_then(|f| f(text, closing)) else {
            return;
        };
        let Some(m) = g.fresh(&lark) else { return };
        let start = self.consumed();
        // A grammar taken up here before (then not closing) is replaced.
        if self.frames.len() > 1 && self.top().start == start {
            self.frames.pop();
        }
        self.frames.push(Frame { start, count: 0, m });
    }

    /// Whether the text so far is a whole sentence of the grammar.
    pub fn accepting(&mut self) -> bool {
        self.top().m.is_accepting().unwrap_or(false)
    }
}

impl GrammarMask {
    /// Whether the grammar accepts `text` exactly (a [`Self::bytes`] grammar).
    pub fn accepts(&self, text: &str) -> bool {
        self.explain(text).is_ok()
    }

    /// [`Self::accepts`], with where and why a rejected text stops: the byte offset and
    /// the engine's message.
    pub fn explain(&self, text: &str) -> Result<(), (usize, String)> {
        let mut s = self.start();
        for (i, b) in text.bytes().enumerate() {
            // A grammar that cannot go on stops its engine: generation ends there, and
            // only whitespace and comments may follow in a whole text.
            let m = &s.top().m;
            if m.is_stopped() && !m.is_error() && only_skip(&text[i..]) {
                return Ok(());
            }
            if b == 0 || !s.consume(b as u32) {
                let why = s.top().m.get_error();
                return Err((i, why.unwrap_or_else(|| "not allowed".into())));
            }
        }
        if s.accepting() {
            Ok(())
        } else {
            Err((text.len(), "the text is not complete".into()))
        }
    }
}

/// Only whitespace and `#` comments.
fn only_skip(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

fn engine<E: std::fmt::Display>(e: E) -> MaskError {
    MaskError::Engine(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::GrammarMask;

    const LARK: &str = "start: \"ab\" \"c\"\nSKIP: /(?: )+/\n%ignore SKIP\n";

    fn ascii() -> Vec<Option<String>> {
        (0u8..128).map(|b| Some((b as char).to_string())).collect()
    }

    #[test]
    fn the_mask_allows_exactly_the_grammars_next_bytes() {
        let pieces = ascii();
        let g = GrammarMask::new(LARK, &pieces, &[0]).expect("grammar");
        let mut s = g.start();
        let ok: Vec<u8> = (0u8..128)
            .filter(|&b| s.allowed().expect("mask")[b as usize])
            .collect();
        assert_eq!(ok, b" a".to_vec());
        assert!(s.consume(b'a' as u32) && s.consume(b'b' as u32));
        let ok: Vec<u8> = (0u8..128)
            .filter(|&b| s.allowed().expect("mask")[b as usize])
            .collect();
        assert_eq!(ok, b" c".to_vec());
        assert!(s.consume(b' ' as u32) && s.rollback(1));
        assert!(s.consume(b'c' as u32));
        let ok: Vec<u32> = (0u32..128)
            .filter(|&b| s.allowed().expect("mask")[b as usize])
            .collect();
        assert_eq!(ok, vec![0], "only the end token once whole");
    }

    #[test]
    fn line_grammars_take_over_at_line_starts_and_roll_back() {
        // The text: lines of `a`s; from the second line on, only `b`s (then `.`).
        let lark = "start: LINE+\nLINE: /[ab]+\\n/\n";
        let rest = "start: BS \".\"\nBS: /(?:b+\\n)+/\n";
        let g = GrammarMask::new(lark, &ascii(), &[0])
            .expect("grammar")
            .with_lines(Box::new(move |text: &str, _| {
                text.ends_with('\n').then(|| rest.to_string())
            }));
        let allowed = |s: &mut super::MaskState, b: u8| s.allowed().expect("mask")[b as usize];
        let mut s = g.start();
        assert!(allowed(&mut s, b'a') && s.consume(b'a' as u32) && s.consume(b'\n' as u32));
        s.line_start(&g, "a\n", false);
        assert!(!allowed(&mut s, b'a') && allowed(&mut s, b'b'));
        assert!(s.consume(b'b' as u32) && s.consume(b'\n' as u32));
        s.line_start(&g, "a\nb\n", false);
        // A fresh grammar of the rest again: a line of `b`s first.
        assert!(allowed(&mut s, b'b') && !allowed(&mut s, b'.'));
        // Back into the first line: its grammar again.
        assert!(s.rollback(3));
        assert!(allowed(&mut s, b'a') && allowed(&mut s, b'\n'));
        assert!(s.consume(b'\n' as u32));
        s.line_start(&g, "a\n", false);
        assert!(!allowed(&mut s, b'a'));
    }
}
