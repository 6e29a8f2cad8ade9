//! Guided decoding's handling of one completion: its pick under the guide, and what
//! happens at a dead end (a line cut, redone from its error or whole, closing).

use super::super::guide::{Choice, Chosen, Counts, Guide, REGROUP_SAME};
use super::{InARow, SampleOptions, Seq};

/// Whether guided decoding prints the text it drops (`MERGEC_DEBUG=guide`), to see
/// where its forward passes go.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("MERGEC_DEBUG").is_ok_and(|v| v.split(',').any(|p| p == "guide"))
    })
}

/// Backtracking of guided decoding at a dead end: drops the tokens of the current
/// line (at least one token) and drops their cache entries, and the entry of the token
/// before them, which is fed again for fresh logits. A line dropped [`ESCALATE`] times
/// in a row takes the line before it along (not the first line): what trapped it may
/// have been decided there. The tokens dropped; None when only the first line (the
/// header) is left to drop.
fn backtrack(s: &mut Seq) -> Option<usize> {
    let mut line_start = s.text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    if s.dropped.count(line_start) > ESCALATE
        && let Some(prev) = s.text[..line_start.saturating_sub(1)].rfind('\n')
    {
        line_start = prev + 1;
        s.dropped = InARow::default();
        s.dropped.count(line_start);
    }
    if tracing() {
        eprintln!("guide: line dropped: {:?}", &s.text[line_start..]);
    }
    // Keep the tokens that end at or before the line's start.
    let keep = s.ends.iter().take_while(|&&e| e <= line_start).count();
    if keep == 0 || keep == s.out.len() {
        return None;
    }
    s.backtracks -= 1;
    let dropped = s.out.len() - keep;
    feed_again(s, keep).then_some(dropped)
}

/// Keeps completion `s`'s first `keep` tokens (at least one, fewer than it has) and
/// feeds the last of them again for fresh logits: the cache entries from its own on
/// and the grammar's steps after it go. If the logits after it are kept (see
/// `Seq::rows`), its cache entry stays and no token is fed again: the next pick is
/// from them. False if the grammar cannot roll back.
fn feed_again(s: &mut Seq, keep: usize) -> bool {
    if let Some(g) = s.grammar.as_mut()
        && !g.rollback(s.out.len() - keep)
    {
        return false;
    }
    let again = !s.has_row(keep) as usize;
    s.cache.truncate(s.own_from + keep - again);
    s.keep_only(keep);
    true
}

/// A guided completion whose text went wrong for good at byte `at` of its current
/// line ([`super::Fit::Lost`]): drops the tokens that end after `at` (and the
/// cache entry of the last one kept, which is fed again), so it samples again from
/// there, without the first token it dropped (the same logits would draw it again
/// first: SmolLM2 wrote `return mixed` three times running with `mixed` a float, and
/// the line was then redone whole). The tokens dropped; None when its regroups are
/// spent, or spent at that place ([`REGROUP_SAME`]): it is at a dead end.
fn regroup(s: &mut Seq, at: usize) -> Option<usize> {
    let line_start = s.text.rfind('\n').map_or(0, |i| i + 1);
    let times = s.regrouped.count(at);
    let keep = s.ends.iter().take_while(|&&e| e <= at).count();
    if s.regroups == 0
        || times > REGROUP_SAME
        || at < line_start
        || keep == 0
        || keep >= s.out.len()
    {
        return None;
    }
    if tracing() {
        let (kept, dropped) = (&s.text[line_start..at], &s.text[at..]);
        eprintln!("guide: line redone from its error: {kept:?} dropped {dropped:?}");
    }
    let (end_at, dropped) = (s.end_at, s.out.len() - keep);
    let first = s.out[keep];
    if !feed_again(s, keep) {
        return None;
    }
    s.banned.push((s.text.len(), first));
    s.regroups -= 1;
    // Where the line could have ended is kept if it still can.
    if end_at <= keep {
        s.end_at = end_at;
    }
    Some(dropped)
}

/// A guided completion at a dead end in a line that could have ended earlier (after
/// its `end_at` tokens): the tokens after that are dropped (their cache entries
/// dropped) and the line ends there with the guide's newline token, which is fed next.
/// Lines that ran on past every place they could end (a sum of the same name to the
/// line limit, a type error no later token mends) are kept up to there, not redone.
/// Some(false) when the line could not have ended; None if the grammar refused the
/// cut (it allowed the newline there, so this cannot happen): the completion must end.
fn cut_line(s: &mut Seq, g: &Guide) -> Option<bool> {
    let Some(nl) = g.newline else {
        return Some(false);
    };
    let keep = s.end_at;
    if keep == 0 || keep > s.out.len() {
        return Some(false);
    }
    if let Some(m) = s.grammar.as_mut()
        && !(m.rollback(s.out.len() - keep) && m.consume(nl))
    {
        return None;
    }
    Counts::add(&g.counts.cut, 1);
    Counts::add(&g.counts.cut_tokens, s.out.len() - keep);
    s.cache.truncate(s.own_from + keep);
    s.keep_only(keep);
    push_guided(s, g, nl);
    Some(true)
}

/// A guided completion at a dead end, or short of tokens: backtracks; once its
/// backtracks are spent (or it is short of tokens) it first goes closing, if the guide
/// can. False: it ends unfinished.
fn recover(s: &mut Seq, g: &Guide, short: bool) -> bool {
    if s.backtracks == 0 || short {
        go_closing(s, g);
    }
    let dropped = if s.backtracks > 0 { backtrack(s) } else { None };
    if let Some(n) = dropped {
        Counts::add(&g.counts.backtracked, 1);
        Counts::add(&g.counts.backtracked_tokens, n);
    }
    dropped.is_some()
}

/// A guided completion goes on under the guide's closing fit (if it has one), with
/// twice its backtracks anew; at a line start, under the closing grammar at once.
fn go_closing(s: &mut Seq, g: &Guide) {
    if g.closing.is_none() || s.closing {
        return;
    }
    s.closing = true;
    s.backtracks = 2 * g.backtracks;
    Counts::add(&g.counts.closed, 1);
    at_line_start(s, g);
}

/// A guided completion's grammar mask at a new line (only blanks after its last
/// newline): it may take up the grammar of the rest of the text.
fn at_line_start(s: &mut Seq, g: &Guide) {
    let blank = blank_line(&s.text);
    if let (Some(m), Some(mask), true) = (s.grammar.as_mut(), g.mask, blank) {
        m.line_start(mask, &s.text, s.closing);
    }
}

/// Appends token `t` to guided completion `s` (its grammar already past it): its
/// text, and at a newline a new line.
pub(super) fn push_guided(s: &mut Seq, g: &Guide, t: u32) {
    s.out.push(t);
    s.pos += 1;
    if let Some(Some(p)) = g.pieces.get(t as usize) {
        s.text.push_str(p);
        if p.contains('\n') {
            s.end_at = 0;
            s.new_line();
            at_line_start(s, g);
        }
    }
    s.ends.push(s.text.len());
}

/// Whether `text`'s last line holds only blanks (a line start).
fn blank_line(text: &str) -> bool {
    text.rsplit('\n')
        .next()
        .is_some_and(|l| l.trim().is_empty())
}

/// What guided decoding does with one completion's logits.
pub(super) enum Pick {
    /// Emit this token (and whether the completion is then whole).
    Token(u32, bool),
    /// A line was cut or is redone: the completion is fed again, no token emitted.
    Again,
    /// The completion ends unfinished.
    Unfinished,
}

/// The guided choice for completion `s` from its logits `l` (from a forward pass if
/// `fresh`, else kept from an earlier one): a token, a line cut or redone at a dead
/// end, or the end.
pub(super) fn guided_pick(
    s: &mut Seq,
    g: &Guide,
    l: &[f32],
    eos: &[u32],
    opts: &SampleOptions,
    fresh: bool,
) -> Pick {
    // Too few tokens or picks left to go on: close now. Lines redone cost picks too,
    // so a completion closes after as many picks as an unguided one makes, less
    // `reserve`, and ends after twice that many.
    s.steps += 1;
    Counts::add(
        if fresh {
            &g.counts.passes
        } else {
            &g.counts.reused
        },
        1,
    );
    let short = s.out.len().max(s.steps) + g.reserve >= opts.max_new_tokens;
    if s.steps >= 2 * opts.max_new_tokens {
        return Pick::Unfinished;
    }
    // At a line start there is no line to drop: close from here.
    if short && s.text.contains('\n') && blank_line(&s.text) {
        go_closing(s, g);
    }
    let closing = s.closing;
    let choice = if short && g.closing.is_some() && !closing {
        Chosen::Dead
    } else {
        // An engine in an error state allows nothing: a dead end.
        let allowed = s.grammar.as_mut().map(|g| {
            g.allowed().unwrap_or_else(|| {
                if tracing() {
                    eprintln!("guide: the mask's engine stopped: {:?}", g.error());
                }
                vec![false; l.len()]
            })
        });
        let here = s.text.len();
        let banned: Vec<u32> = s
            .banned
            .iter()
            .filter(|&&(at, _)| at == here)
            .map(|&(_, t)| t)
            .collect();
        let at = Choice {
            logits: l,
            allowed: allowed.as_deref(),
            text: &s.text,
            eos,
            opts,
            closing,
            banned: &banned,
        };
        if g.line_ends(&at) {
            s.end_at = s.out.len();
        }
        g.choose(&at, &mut s.rng)
    };
    match choice {
        Chosen::Token(t, whole) => return Pick::Token(t, whole),
        Chosen::Lost(k) => {
            if let Some(n) = regroup(s, k) {
                Counts::add(&g.counts.regrouped, 1);
                Counts::add(&g.counts.regrouped_tokens, n);
                return Pick::Again;
            }
        }
        Chosen::Dead => {}
    }
    match cut_line(s, g) {
        Some(true) => Pick::Again,
        Some(false) if recover(s, g, short) => {
            // Redo the current line: the token before it is fed again.
            at_line_start(s, g);
            Pick::Again
        }
        _ => Pick::Unfinished,
    }
}

/// Drops of one line in a row before [`backtrack`] drops the line before it too.
const ESCALATE: usize = 2;
