//! Grammar-guided choice of the next token: [`Guide`] (what fits, how hard to look,
//! the llguidance mask) and the per-step [`Choice`] it judges. The decoding loop that uses
//! them is [`super::sample`].

use super::mask::GrammarMask;
use super::sample::{SampleOptions, nucleus, pick_from};
use crate::semantics::rng::SplitMix64;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Whether a text may still be continued to a valid output, for guided decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// No continuation is valid.
    No,
    /// A valid output may follow.
    Prefix,
    /// A whole valid output: the completion ends here.
    Whole,
    /// No continuation is valid, and what went wrong starts at this byte: the text up
    /// to there may still go on (a completion is sampled again from there).
    Lost(usize),
}

/// Times a completion samples again from one place (see [`Guide::regroups`]).
pub const REGROUP_SAME: usize = 2;

/// A guided choice: a token (and whether the text is then whole), a place to sample
/// again from (a token's text went wrong for good there, see [`Fit::Lost`]), or a
/// dead end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chosen {
    Token(u32, bool),
    Lost(usize),
    Dead,
}

/// Grammar-guided decoding: every sampled token keeps the completion's text a valid
/// prefix (checked by `fit` on the text so far plus the token's text).
///
/// A token is drawn from the usual distribution (temperature, top-p); one that does not
/// fit is removed and another drawn, up to `tries` times; then the most likely tokens
/// (up to `scan`) are tried in order. A completion with no fitting token ends
/// unfinished. The end token is allowed only when the text is whole; a whole text ends
/// the completion at once.
pub struct Guide<'a> {
    /// Each token's text; None for tokens never emitted under guidance (special
    /// tokens, byte fragments).
    pub pieces: &'a [Option<String>],
    pub fit: &'a (dyn Fn(&str) -> Fit + Sync),
    /// The grammar's token mask (llguidance): tokens are drawn only from the tokens it
    /// allows, renormalized; `fit` then judges only what a context-free grammar cannot
    /// say (names, types, layout).
    pub mask: Option<&'a GrammarMask>,
    pub tries: usize,
    pub scan: usize,
    /// At a dead end, a completion drops its current line and samples it again, at
    /// most this many times; then it ends unfinished.
    pub backtracks: usize,
    /// A completion whose text went wrong for good mid-line ([`Fit::Lost`]) samples
    /// again from where it went wrong, at most this many times (and at most
    /// [`REGROUP_SAME`] times from one place); then it is at a dead end.
    pub regroups: usize,
    /// A line but the first (a header) at least this long (leading blanks aside) ends
    /// as soon as it can: the tokens that end it (their text holds a newline) or end the
    /// completion are tried first, the same way, and the line goes on only if none
    /// fits. 0: no limit. (Trying bracket-closing tokens next made SmolLM2's programs
    /// less often valid: 75-81% against 88-97%.) A closing completion's lines end as
    /// soon as they can, whatever their length.
    pub soft_line: usize,
    /// The first line (a header) at least this long closes its parentheses as soon as
    /// it can: tokens holding `)` are tried first, the same way. 0: no limit.
    pub soft_header: usize,
    /// A word (letters, digits, `_`) this long ends as soon as it can: tokens whose text
    /// starts with anything else are tried first, the same way. 0: no limit. (A word at
    /// a fit's length limit can only end, but the tokens that end it may all be less
    /// likely than the 512 that the scan tries: SmolLM2 ended merge headers at
    /// `merge user_func_min_max_mixed_100s_in_`.)
    pub soft_word: usize,
    /// Closing: a completion whose backtracks are spent, or with fewer than `reserve`
    /// tokens left (or forward passes: a redone line's cost them too), drops its
    /// current line and goes on under this stricter fit (which should only let it
    /// finish: for programs, the next line must be the `return`), with twice its
    /// backtracks anew. None: such a completion ends unfinished. Whatever happens, a
    /// completion ends after `2 * max_new_tokens` forward passes.
    pub closing: Option<&'a (dyn Fn(&str) -> Fit + Sync)>,
    pub reserve: usize,
    /// Logits rows each completion keeps, of its current line's places: a line redone
    /// (or redone from its error) to one of them picks from its row, without a forward
    /// pass to feed a token again; 0: it always feeds one again. The same tokens either
    /// way. (A vocabulary of 49,152 takes 192 KiB a row: 64 rows are 12 MiB.)
    pub rows: usize,
    /// The token whose text is a newline: a line at a dead end that could have ended
    /// earlier is cut there and ended with it, not redone (see [`super::sample`]).
    pub newline: Option<u32>,
    /// What happened while it sampled, all completions together.
    pub counts: Counts,
}

/// What a [`Guide`] counts while it samples ([`Counts::tally`] reads them).
#[derive(Debug, Default)]
pub struct Counts {
    /// Tokens drawn and refused.
    pub refused: AtomicUsize,
    /// Lines cut short, redone whole, and sampled again from where they went wrong.
    pub cut: AtomicUsize,
    pub backtracked: AtomicUsize,
    pub regrouped: AtomicUsize,
    /// The tokens that cuts, lines redone and redos from an error dropped (each
    /// cost a forward pass).
    pub cut_tokens: AtomicUsize,
    pub backtracked_tokens: AtomicUsize,
    pub regrouped_tokens: AtomicUsize,
    /// Forward passes whose logits the guide judged (a token's, or a line's redo), and
    /// redos that picked from the kept logits of the place they went back to.
    pub passes: AtomicUsize,
    pub reused: AtomicUsize,
    /// Choices with no fitting token, and completions that went closing.
    pub dead_ends: AtomicUsize,
    pub closed: AtomicUsize,
}

/// [`Counts`] read at one time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub refused: usize,
    pub cut: usize,
    pub backtracked: usize,
    pub regrouped: usize,
    pub cut_tokens: usize,
    pub backtracked_tokens: usize,
    pub regrouped_tokens: usize,
    pub passes: usize,
    pub reused: usize,
    pub dead_ends: usize,
    pub closed: usize,
}

impl Counts {
    pub fn tally(&self) -> Tally {
        let get = |a: &AtomicUsize| a.load(Relaxed);
        Tally {
            refused: get(&self.refused),
            cut: get(&self.cut),
            backtracked: get(&self.backtracked),
            regrouped: get(&self.regrouped),
            cut_tokens: get(&self.cut_tokens),
            backtracked_tokens: get(&self.backtracked_tokens),
            regrouped_tokens: get(&self.regrouped_tokens),
            passes: get(&self.passes),
            reused: get(&self.reused),
            dead_ends: get(&self.dead_ends),
            closed: get(&self.closed),
        }
    }

    /// Adds `n` to one count.
    pub(super) fn add(count: &AtomicUsize, n: usize) {
        count.fetch_add(n, Relaxed);
    }
}

impl std::fmt::Display for Tally {
    /// The guided summary line's counts (after "N tokens from").
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} forward passes, {} drawn tokens refused, {} lines cut short ({} tokens dropped), \
             {} lines redone ({} tokens), {} redone from their type error ({} tokens), \
             {} redos from kept logits, {} dead ends",
            self.passes,
            self.refused,
            self.cut,
            self.cut_tokens,
            self.backtracked,
            self.backtracked_tokens,
            self.regrouped,
            self.regrouped_tokens,
            self.reused,
            self.dead_ends
        )
    }
}

impl<'a> Guide<'a> {
    pub fn new(pieces: &'a [Option<String>], fit: &'a (dyn Fn(&str) -> Fit + Sync)) -> Self {
        Guide {
            pieces,
            fit,
            mask: None,
            tries: 32,
            scan: 512,
            backtracks: 8,
            regroups: 16,
            soft_line: 0,
            soft_header: 0,
            soft_word: 0,
            closing: None,
            reserve: 64,
            rows: 64,
            newline: pieces
                .iter()
                .position(|p| p.as_deref() == Some("\n"))
                .map(|i| i as u32),
            counts: Counts::default(),
        }
    }

    /// Whether token `t` may follow `text`: the fit of the text with it (for an end
    /// token, Whole if the text may end here, else No).
    pub(super) fn judge(&self, at: &Choice, t: u32) -> Fit {
        let Choice { text, eos, .. } = *at;
        let fit = match self.closing {
            Some(f) if at.closing => f,
            _ => self.fit,
        };
        if eos.contains(&t) {
            return match fit(text) {
                Fit::Whole => Fit::Whole,
                _ => Fit::No,
            };
        }
        let Some(Some(piece)) = self.pieces.get(t as usize) else {
            return Fit::No;
        };
        let mut next = String::with_capacity(text.len() + piece.len());
        next.push_str(text);
        next.push_str(piece);
        fit(&next)
    }

    /// Whether the current line (not the first, not blank) could end here: the
    /// newline token is allowed and fits.
    pub(super) fn line_ends(&self, at: &Choice) -> bool {
        let Some(nl) = self.newline else { return false };
        let Some(i) = at.text.rfind('\n') else {
            return false;
        };
        !at.text[i + 1..].trim().is_empty()
            && at.allowed.is_none_or(|a| a.get(nl as usize) == Some(&true))
            && matches!(self.judge(at, nl), Fit::Prefix | Fit::Whole)
    }

    /// The guided choice for one completion: the token and whether the completion is
    /// then whole, where to sample again from, or a dead end.
    pub(super) fn choose(&self, at: &Choice, rng: &mut SplitMix64) -> Chosen {
        let text = at.text;
        let line_start = text.rfind('\n').map(|i| i + 1);
        let line = text[line_start.unwrap_or(0)..].trim_start();
        let piece = |t: u32| self.pieces.get(t as usize).and_then(|p| p.as_deref());
        let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let word = text.len() - text.trim_end_matches(word_char).len();
        if self.soft_word > 0 && word >= self.soft_word {
            let ends_word = |t: u32| piece(t).is_some_and(|p| !p.starts_with(word_char));
            let c = self.search(at, rng, &ends_word);
            if c != Chosen::Dead {
                return c;
            }
        }
        // A closing completion ends its line as soon as it can.
        let soft = if at.closing { 1 } else { self.soft_line };
        if soft > 0 && line_start.is_some() && line.len() >= soft {
            let ends = |t: u32| at.eos.contains(&t) || piece(t).is_some_and(|p| p.contains('\n'));
            let c = self.search(at, rng, &ends);
            if c != Chosen::Dead {
                return c;
            }
        }
        if self.soft_header > 0 && line_start.is_none() && text.len() >= self.soft_header {
            let closes = |t: u32| piece(t).is_some_and(|p| p.contains(')'));
            let c = self.search(at, rng, &closes);
            if c != Chosen::Dead {
                return c;
            }
        }
        let c = self.search(at, rng, &|_| true);
        if c == Chosen::Dead {
            Counts::add(&self.counts.dead_ends, 1);
        }
        c
    }

    /// [`Self::choose`] among the tokens `allowed` says: draws, then the most likely.
    /// The first token whose text goes wrong for good ends the search.
    fn search(&self, at: &Choice, rng: &mut SplitMix64, allowed: &dyn Fn(u32) -> bool) -> Chosen {
        let (logits, opts) = (at.logits, at.opts);
        // The model's own nucleus, less what the mask forbids; only when none of it is
        // allowed, the nucleus of the masked distribution. (Renormalizing first widens
        // the nucleus into tokens the model barely wants, e.g. names spelled letter by
        // letter, which the names check then refuses: 0.91 valid against 0.95 for the
        // tiny generator at temperature 1.0.)
        let mut cand = nucleus(logits, opts.temperature, opts.top_p);
        let masked: Vec<f32>;
        let logits = match at.allowed {
            Some(a) => {
                cand.retain(|c| a.get(c.0 as usize).copied().unwrap_or(false));
                masked = logits
                    .iter()
                    .zip(a)
                    .map(|(&l, &ok)| if ok { l } else { f32::NEG_INFINITY })
                    .collect();
                if masked.iter().all(|l| !l.is_finite()) {
                    return Chosen::Dead;
                }
                if cand.is_empty() {
                    cand = nucleus(&masked, opts.temperature, opts.top_p);
                }
                &masked[..]
            }
            None => logits,
        };
        let allowed = |t: u32| allowed(t) && !at.banned.contains(&t);
        cand.retain(|c| allowed(c.0));
        for _ in 0..self.tries {
            if cand.is_empty() {
                break;
            }
            let t = pick_from(&cand, rng.unit());
            if let Some(c) = chosen(self.judge(at, t), t, at) {
                return c;
            }
            Counts::add(&self.counts.refused, 1);
            cand.retain(|c| c.0 != t);
        }
        let mut order: Vec<u32> = (0..logits.len() as u32)
            .filter(|&i| logits[i as usize].is_finite() && allowed(i))
            .collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order
            .iter()
            .take(self.scan)
            .find_map(|&t| chosen(self.judge(at, t), t, at))
            .unwrap_or(Chosen::Dead)
    }
}

/// What token `t`'s fit makes of it: chosen (or a place to sample again from), or None:
/// refused (also when the token's own text went wrong).
fn chosen(fit: Fit, t: u32, at: &Choice) -> Option<Chosen> {
    match fit {
        Fit::Prefix => Some(Chosen::Token(t, false)),
        Fit::Whole => Some(Chosen::Token(t, true)),
        Fit::Lost(k) if k < at.text.len() => Some(Chosen::Lost(k)),
        Fit::No | Fit::Lost(_) => None,
    }
}

/// What one guided choice sees: the completion's next-token logits and text, the end
/// tokens, the sampling options, and whether the completion is closing.
pub(super) struct Choice<'a> {
    pub(super) logits: &'a [f32],
    /// The grammar mask's allowed tokens, if the guide has one.
    pub(super) allowed: Option<&'a [bool]>,
    pub(super) text: &'a str,
    pub(super) eos: &'a [u32],
    pub(super) opts: &'a SampleOptions,
    pub(super) closing: bool,
    /// Tokens not to draw here (a redo from an error dropped them from this place).
    pub(super) banned: &'a [u32],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words of at most 8 characters, anything else after them.
    fn short_words(text: &str) -> Fit {
        let word = text.len()
            - text
                .trim_end_matches(|c: char| c.is_ascii_alphanumeric())
                .len();
        let longest = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::len)
            .max();
        if longest.unwrap_or(0) > 8 || word > 8 {
            Fit::No
        } else {
            Fit::Prefix
        }
    }

    #[test]
    fn a_word_at_its_limit_ends_even_when_its_end_is_unlikely() {
        // 600 one-letter tokens, most likely first, then `(`, the least likely.
        let mut pieces: Vec<Option<String>> = (0..600).map(|_| Some("a".to_string())).collect();
        pieces.push(Some("(".into()));
        let logits: Vec<f32> = (0..pieces.len()).map(|i| -(i as f32)).collect();
        let opts = SampleOptions {
            temperature: 1.0,
            top_p: 1.0,
            ..Default::default()
        };
        let at = Choice {
            logits: &logits,
            allowed: None,
            text: "merge abcdefgh",
            eos: &[],
            opts: &opts,
            closing: false,
            banned: &[],
        };
        let fit = short_words;
        let mut g = Guide::new(&pieces, &fit);
        let mut rng = SplitMix64::new(0);
        // `(` is beyond the scan's 512 most likely tokens.
        assert_eq!(g.choose(&at, &mut rng), Chosen::Dead);
        g.soft_word = 8;
        assert_eq!(g.choose(&at, &mut rng), Chosen::Token(600, false));
    }

    #[test]
    fn a_banned_token_is_not_drawn() {
        let pieces: Vec<Option<String>> = ["a", "b", "c"].map(|p| Some(p.to_string())).into();
        // Greedy: the most likely token, unless banned.
        let logits = [3.0, 2.0, 1.0];
        let opts = SampleOptions {
            temperature: 0.0,
            ..Default::default()
        };
        let fit = |_: &str| Fit::Prefix;
        let g = Guide::new(&pieces, &fit);
        let mut rng = SplitMix64::new(0);
        for (banned, want) in [(&[][..], 0), (&[0][..], 1), (&[0, 1][..], 2)] {
            let at = Choice {
                logits: &logits,
                allowed: None,
                text: "x",
                eos: &[],
                opts: &opts,
                closing: false,
                banned,
            };
            assert_eq!(
                g.choose(&at, &mut rng),
                Chosen::Token(want, false),
                "{banned:?}"
            );
        }
    }
}
