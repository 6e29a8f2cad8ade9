//! The tiny generator's vocabulary: bytes, then word tokens for the language's
//! keywords, builtins and common names.

/// Beginning of a program.
pub const BOS: u32 = 256;
/// End of a program.
pub const EOS: u32 = 257;
/// Padding (never scored, never generated in practice).
pub const PAD: u32 = 258;
/// The first word token's id.
pub(super) const FIRST_WORD: u32 = 259;

/// Multi-byte tokens besides the checker's builtin and tensor-fact names: keywords,
/// types, common names and layout of the corpus. Part of [`super::FORMAT`].
const WORDS: &[&str] = &[
    "merge ",
    "fn ",
    "    let ",
    "    return ",
    "(base: Tensor, models: [Tensor]",
    ") -> Tensor {\n",
    "\n}\n",
    ": f32 = ",
    ": bool = ",
    ": [f32] = ",
    ": int = ",
    ": [int] = ",
    ": [bool] = ",
    ": Tensor",
    ": [Tensor]",
    ": Mask",
    ": f32",
    ": bool",
    ": int",
    "axis=0",
    "axis=-1",
    " } else { ",
    " else { ",
    " { ",
    " }",
    "if ",
    " and ",
    " or ",
    "not ",
    " + ",
    " - ",
    " * ",
    " / ",
    " >= ",
    " > ",
    " <= ",
    " < ",
    " == ",
    " = ",
    ", ",
    "1.0",
    "0.0",
    "0.5",
    "1e-",
    "models - base",
    "))",
    ")\n",
    "true",
    "false",
    "Tensor",
    "Mask",
    "f32",
    "bool",
    "int",
    "models",
    "base",
    "return",
    "let",
    "merge",
    "tau",
    "weight",
    "density",
    "lambda",
    "normalize",
    "rescale",
    "merged",
    "kept",
    "mixed",
    "divisor",
    "total",
    "before",
    "after",
    "agree",
    "elected",
    "acc",
    "trimmed",
    "dropped",
    "epsilon",
    "gamma",
    "theta",
    "other",
    "mlp",
    "attention",
];

/// The token vocabulary: ids 0..=255 are bytes, then [`BOS`], [`EOS`], [`PAD`], then
/// word tokens (whole keywords, builtin names and common phrases of the corpus, about
/// three bytes per token on average). Text is encoded greedily, longest word first,
/// falling back to bytes, so every text has an encoding and decoding is concatenation.
/// A saved generator keeps its word list (`meta.json`), so a later change of the
/// builtin table does not break it.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    pub(super) words: Vec<String>,
    /// Word ids by first byte, longest first.
    by_first: Vec<Vec<u32>>,
}

impl Vocab {
    /// A vocabulary of `words` (duplicates and words shorter than 2 bytes dropped).
    pub fn new(words: &[String]) -> Vocab {
        let mut kept: Vec<String> = vec![];
        for w in words {
            if w.len() >= 2 && !kept.contains(w) {
                kept.push(w.clone());
            }
        }
        let mut by_first: Vec<Vec<u32>> = vec![vec![]; 256];
        for (i, w) in kept.iter().enumerate() {
            by_first[w.as_bytes()[0] as usize].push(FIRST_WORD + i as u32);
        }
        for ids in &mut by_first {
            ids.sort_by_key(|&id| {
                (
                    std::cmp::Reverse(kept[(id - FIRST_WORD) as usize].len()),
                    id,
                )
            });
        }
        Vocab {
            words: kept,
            by_first,
        }
    }

    /// The shipped vocabulary: [`WORDS`], then the checker's builtin names (REPL-only
    /// ones left out) and the tensor facts.
    pub fn builtin() -> Vocab {
        use crate::types::builtins::{BUILTINS, Group};
        let mut w: Vec<String> = WORDS.iter().map(|s| s.to_string()).collect();
        w.extend(
            BUILTINS
                .iter()
                .filter(|b| b.group != Group::Repl)
                .map(|b| b.name.to_string()),
        );
        w.extend(
            crate::types::tast::Fact::ALL
                .iter()
                .map(|f| f.0.to_string()),
        );
        Vocab::new(&w)
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The model's vocabulary size: every id, rounded up to a multiple of 8.
    pub fn size(&self) -> usize {
        (FIRST_WORD as usize + self.words.len()).div_ceil(8) * 8
    }

    /// The token ids of `text` (no specials).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let b = text.as_bytes();
        let mut out = Vec::with_capacity(b.len() / 2 + 1);
        let mut i = 0;
        while i < b.len() {
            let hit = self.by_first[b[i] as usize]
                .iter()
                .find(|&&id| b[i..].starts_with(self.words[(id - FIRST_WORD) as usize].as_bytes()));
            match hit {
                Some(&id) => {
                    out.push(id);
                    i += self.words[(id - FIRST_WORD) as usize].len();
                }
                None => {
                    out.push(b[i] as u32);
                    i += 1;
                }
            }
        }
        out
    }

    /// `BOS tokens EOS`.
    pub fn encode_program(&self, text: &str) -> Vec<u32> {
        let mut v = vec![BOS];
        v.extend(self.encode(text));
        v.push(EOS);
        v
    }

    /// Each id's text for guided decoding: ASCII bytes and words; None for specials
    /// and bytes that are not text alone.
    pub fn pieces(&self) -> Vec<Option<String>> {
        (0..self.size() as u32)
            .map(|id| {
                if id < 128 {
                    Some((id as u8 as char).to_string())
                } else if id >= FIRST_WORD {
                    self.words.get((id - FIRST_WORD) as usize).cloned()
                } else {
                    None
                }
            })
            .collect()
    }

    /// The text of `ids` (specials and unknown ids dropped; invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes: Vec<u8> = Vec::with_capacity(ids.len() * 3);
        for &id in ids {
            if id < 256 {
                bytes.push(id as u8);
            } else if id >= FIRST_WORD
                && let Some(w) = self.words.get((id - FIRST_WORD) as usize)
            {
                bytes.extend(w.as_bytes());
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
