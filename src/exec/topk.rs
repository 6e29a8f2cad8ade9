//! Top-k cut points over keys that are recomputed chunk by chunk (no buffer of the
//! tensor's size): an O(n) radix select over the bits of the magnitude key, in as few
//! passes over the input as the keys allow.
//!
//! Large tensors first *sample*: every 8th key of a sixteenth of the chunks, spread
//! evenly, gives an estimate of the threshold and a band of keys around it wide enough
//! to hold it (the sample's rank, give or take several standard errors). One pass then
//! counts the keys above the band and gathers those in it, comparisons only (no
//! histogram scatter); when the band holds the requested rank, which it does unless the
//! sampled chunks are unlike the rest, the threshold is selected among the gathered
//! keys. Otherwise (or when the band would be too large to gather) the radix select
//! below runs as if there had been no sample. Either way the cut is exact: the sample
//! only decides how much work finding it takes.
//!
//! Pass 1 histograms the top 12 bits of every key (a request for one element takes
//! the largest key of each chunk instead); the bucket holding each requested rank is
//! then known with its size. Tensors of at most [`GATHER_ALL_MAX`] keys gather them all
//! in pass 1. A pass *gathers* the keys sharing a bucket when
//! there are at most [`GATHER_MAX`] of them (the usual case: one more pass, then the
//! rest is done in memory); a larger bucket gets a histogram of the next 10 bits
//! instead. Once the threshold key `t` is known, the element of `t` that is the last
//! taken is found from per-chunk counts, recomputing only the chunk that holds it.
//!
//! Every pass runs over contiguous groups of chunks in parallel, each group with its
//! own key buffers and counts; counts are integers and gathered keys stay in chunk
//! order, so the result is the same for any number of threads.

use super::select::TopkCut;
use crate::ir::reference::magnitude_key;
use rayon::prelude::*;

/// Key digits after the first: (shift, width), most significant first.
const DIGITS: [(u32, u32); 3] = [(20, 12), (10, 10), (0, 10)];
/// A pass gathers the keys sharing a prefix once at most this many share it (4 bytes
/// each, per request).
const GATHER_MAX: u64 = 1 << 23;
/// Tensors of at most this many keys skip the first histogram and gather every key.
const GATHER_ALL_MAX: u64 = 1 << 18;
/// Tensors of more keys than this (in at least [`SAMPLE_MIN_CHUNKS`] chunks) are sampled
/// first.
const BAND_MIN: u64 = 1 << 20;
const SAMPLE_MIN_CHUNKS: usize = 16;
/// One chunk in this many is sampled, and one key in [`SAMPLE_STEP`] of each.
const SAMPLE_CHUNKS: usize = 16;
const SAMPLE_STEP: usize = 8;

/// When a selection samples and how much it gathers (tests shrink them).
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Most keys one pass gathers for one request.
    gather_max: u64,
    /// Sample tensors of more keys than this.
    band_min: u64,
}

/// One request: the first `count` elements of key `key` in the order (magnitude
/// descending, index ascending).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub key: usize,
    pub count: usize,
}

/// Writes chunk `c`'s keys into the buffers (one per key, resized by the callee) and
/// returns the index of the chunk's first element. Called from several threads at once
/// when the selection runs in parallel.
pub type Fill<'a, E> = dyn Fn(usize, &mut [Vec<f32>]) -> Result<usize, E> + Sync + 'a;

#[derive(Clone, Copy, Debug)]
enum State {
    Done(TopkCut),
    /// Wanted: the `rank`-th largest key; a sample of the keys comes first.
    Sample {
        rank: u64,
    },
    /// Wanted: the `rank`-th largest key, which the sample puts between `lo` and `hi`.
    Band {
        rank: u64,
        lo: u32,
        hi: u32,
    },
    /// Wanted: the `rank`-th largest (1-based) of the `count` keys whose bits from
    /// `shift` up equal `prefix`.
    Open {
        shift: u32,
        prefix: u32,
        rank: u64,
        count: u64,
    },
    /// The threshold key is `t`; the `m`-th of its elements (in index order) is the
    /// last one taken.
    Tie {
        t: u32,
        m: u64,
    },
}

/// What one pass computes for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    /// Histogram of the digit `(dshift, width)` of the keys with `prefix` above `shift`.
    Hist {
        key: usize,
        shift: u32,
        prefix: u32,
        dshift: u32,
        width: u32,
    },
    /// The keys with `prefix` above `shift`, their low `shift` bits, chunk by chunk.
    Gather { key: usize, shift: u32, prefix: u32 },
    /// How many keys equal `t`, chunk by chunk.
    Count { key: usize, t: u32 },
    /// The largest key, chunk by chunk (for a request of one element: ties asks for the
    /// top 1 of each task vector beside its top `density`).
    Max { key: usize },
    /// Every [`SAMPLE_STEP`]th key of the sampled chunks.
    Sample { key: usize },
    /// How many keys are above `hi`, and the keys from `lo` to `hi`, chunk by chunk.
    Band { key: usize, lo: u32, hi: u32 },
}

/// A job's result.
enum Acc {
    Hist(Vec<u64>),
    Gather(Vec<Vec<u32>>),
    Count(Vec<u64>),
    Max(Vec<u32>),
    Sample(Vec<u32>),
    Band(Band),
}

/// A band pass's result.
struct Band {
    above: u64,
    /// Keys in the band, counted even once they are no longer kept.
    inside: u64,
    /// The band's keys per chunk, while at most `cap` of them.
    parts: Vec<Vec<u32>>,
    cap: u64,
}

/// The smallest and largest key with `prefix` in its bits from `shift` up.
fn prefix_range(shift: u32, prefix: u32) -> (u32, u32) {
    let lo = (prefix as u64) << shift;
    (lo as u32, (lo | ((1u64 << shift) - 1)) as u32)
}

#[inline(always)]
fn low_bits(k: u32, shift: u32) -> u32 {
    ((k as u64) & ((1u64 << shift) - 1)) as u32
}

impl Job {
    fn of(r: &Request, s: &State, gather_max: u64) -> Option<Job> {
        let key = r.key;
        match *s {
            State::Done(_) => None,
            State::Sample { .. } => Some(Job::Sample { key }),
            State::Band { lo, hi, .. } => Some(Job::Band { key, lo, hi }),
            State::Tie { t, .. } => Some(Job::Count { key, t }),
            State::Open {
                shift: 32, rank: 1, ..
            } => Some(Job::Max { key }),
            // Every key is gathered at once only for small tensors: selecting in memory
            // among millions of keys (twice for ties' two requests) costs more than the
            // histogram pass it saves.
            State::Open {
                shift,
                prefix,
                count,
                ..
            } if count <= gather_max && (shift < 32 || count <= GATHER_ALL_MAX) => {
                Some(Job::Gather { key, shift, prefix })
            }
            State::Open { shift, prefix, .. } => {
                let &(dshift, width) = DIGITS.iter().find(|d| d.0 < shift)?;
                Some(Job::Hist {
                    key,
                    shift,
                    prefix,
                    dshift,
                    width,
                })
            }
        }
    }

    fn key(&self) -> usize {
        match *self {
            Job::Hist { key, .. }
            | Job::Gather { key, .. }
            | Job::Count { key, .. }
            | Job::Max { key }
            | Job::Sample { key }
            | Job::Band { key, .. } => key,
        }
    }

    fn empty(&self, gather_max: u64) -> Acc {
        match *self {
            Job::Hist { width, .. } => Acc::Hist(vec![0; 1 << width]),
            Job::Gather { .. } => Acc::Gather(Vec::new()),
            Job::Count { .. } => Acc::Count(Vec::new()),
            Job::Max { .. } => Acc::Max(Vec::new()),
            Job::Sample { .. } => Acc::Sample(Vec::new()),
            Job::Band { .. } => Acc::Band(Band {
                above: 0,
                inside: 0,
                parts: Vec::new(),
                cap: gather_max,
            }),
        }
    }

    /// Adds one chunk's keys to the job's result (`scratch`: a zeroed histogram of the
    /// job's width, returned zeroed).
    #[inline(always)]
    fn add(&self, keys: &[f32], acc: &mut Acc, scratch: &mut [u32]) {
        match (*self, acc) {
            (
                Job::Hist {
                    shift,
                    prefix,
                    dshift,
                    width,
                    ..
                },
                Acc::Hist(h),
            ) => {
                let mask = (1u32 << width) - 1;
                if shift == 32 {
                    count4(keys, scratch, |x| {
                        ((magnitude_key(x) >> dshift) & mask) as usize
                    });
                } else {
                    let (lo, hi) = prefix_range(shift, prefix);
                    for &x in keys {
                        let k = magnitude_key(x);
                        if lo <= k && k <= hi {
                            scratch[((k >> dshift) & mask) as usize] += 1;
                        }
                    }
                }
                // A chunk has fewer than 2^32 elements; the u64 totals take each chunk.
                for (t, s) in h.iter_mut().zip(scratch.iter_mut()) {
                    *t += *s as u64;
                    *s = 0;
                }
            }
            (Job::Gather { shift, prefix, .. }, Acc::Gather(g)) => {
                let (lo, hi) = prefix_range(shift, prefix);
                let mut out = Vec::new();
                // A bit mask of the matches per 64 keys, then the matches.
                scan::range_masks(keys, lo, hi, &mut |block, mut bits, _| {
                    while bits != 0 {
                        let k = magnitude_key(block[bits.trailing_zeros() as usize]);
                        out.push(low_bits(k, shift));
                        bits &= bits - 1;
                    }
                });
                g.push(out)
            }
            (Job::Band { lo, hi, .. }, Acc::Band(b)) => band_add(keys, lo, hi, b),
            (Job::Sample { .. }, Acc::Sample(v)) => {
                v.extend(keys.iter().step_by(SAMPLE_STEP).map(|&x| magnitude_key(x)))
            }
            (Job::Max { .. }, Acc::Max(m)) => {
                m.push(keys.iter().map(|&x| magnitude_key(x)).max().unwrap_or(0))
            }
            (Job::Count { t, .. }, Acc::Count(c)) => {
                c.push(keys.iter().filter(|&&x| magnitude_key(x) == t).count() as u64)
            }
            _ => unreachable!("topk: a job with another job's result"),
        }
    }
}

/// Adds one chunk's keys to a band pass: counts those above `hi`, keeps those from `lo`
/// to `hi` (until more than the cap are in the band: then the band is dropped).
#[inline(always)]
fn band_add(keys: &[f32], lo: u32, hi: u32, b: &mut Band) {
    let mut out = Vec::new();
    let mut above = 0u64;
    // Bit masks of the matches per 64 keys, then the matches.
    scan::range_masks(keys, lo, hi, &mut |block, mut inside, over| {
        above += over.count_ones() as u64;
        b.inside += inside.count_ones() as u64;
        if b.inside > b.cap {
            return;
        }
        while inside != 0 {
            out.push(magnitude_key(block[inside.trailing_zeros() as usize]));
            inside &= inside - 1;
        }
    });
    b.above += above;
    if b.inside > b.cap {
        b.parts = Vec::new();
    } else {
        b.parts.push(out);
    }
}

/// Adds 1 to `h[bin(x)]` for every `x` of `keys`, in four interleaved histograms summed
/// at the end: runs of equal bins (quantized weights give many) then do not wait on the
/// previous increment. `h` has `scratch.len()` bins.
#[inline(always)]
fn count4(keys: &[f32], h: &mut [u32], bin: impl Fn(f32) -> usize) {
    let bins = h.len();
    let mut four = vec![0u32; 3 * bins];
    let (h1, rest) = four.split_at_mut(bins);
    let (h2, h3) = rest.split_at_mut(bins);
    let mut quads = keys.chunks_exact(4);
    for q in &mut quads {
        h[bin(q[0])] += 1;
        h1[bin(q[1])] += 1;
        h2[bin(q[2])] += 1;
        h3[bin(q[3])] += 1;
    }
    for &x in quads.remainder() {
        h[bin(x)] += 1;
    }
    for i in 0..bins {
        h[i] += h1[i] + h2[i] + h3[i];
    }
}

/// [`Job::add`] as an operation pulp compiles for the CPU's instruction set.
struct Add<'a> {
    job: &'a Job,
    keys: &'a [f32],
    acc: &'a mut Acc,
    scratch: &'a mut [u32],
}

impl pulp::WithSimd for Add<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.job.add(self.keys, self.acc, self.scratch)
    }
}

/// Appends `b` (the next group's result) to `a`.
fn merge(a: &mut Acc, b: Acc) {
    match (a, b) {
        (Acc::Hist(a), Acc::Hist(b)) => a.iter_mut().zip(&b).for_each(|(x, y)| *x += y),
        (Acc::Gather(a), Acc::Gather(b)) => a.extend(b),
        (Acc::Count(a), Acc::Count(b)) => a.extend(b),
        (Acc::Max(a), Acc::Max(b)) => a.extend(b),
        (Acc::Sample(a), Acc::Sample(b)) => a.extend(b),
        (Acc::Band(a), Acc::Band(b)) => {
            a.above += b.above;
            a.inside += b.inside;
            if a.inside > a.cap {
                a.parts = Vec::new();
            } else {
                a.parts.extend(b.parts);
            }
        }
        _ => unreachable!("topk: results of different jobs"),
    }
}

/// One pass over every chunk: each job's result, in parallel over contiguous groups
/// of chunks when `parallel`.
fn pass<E: Send>(
    jobs: &[Job],
    n_keys: usize,
    list: &[usize],
    parallel: bool,
    gather_max: u64,
    fill: &Fill<E>,
) -> Result<Vec<Acc>, E> {
    let chunks = list.len();
    let groups = if parallel {
        (rayon::current_num_threads() * 4).min(chunks).max(1)
    } else {
        1
    };
    let per = chunks.div_ceil(groups);
    let group = |g: usize| -> Result<Vec<Acc>, E> {
        let mut bufs = vec![Vec::new(); n_keys];
        let mut acc: Vec<Acc> = jobs.iter().map(|j| j.empty(gather_max)).collect();
        let width = jobs
            .iter()
            .map(|j| match j {
                Job::Hist { width, .. } => 1usize << width,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let mut scratch = vec![0u32; width];
        let arch = pulp::Arch::new();
        for &c in &list[(g * per).min(chunks)..((g + 1) * per).min(chunks)] {
            fill(c, &mut bufs)?;
            for (j, a) in jobs.iter().zip(acc.iter_mut()) {
                // Compiled for the best instruction set the CPU has (AVX2 on x86-64).
                arch.dispatch(Add {
                    job: j,
                    keys: &bufs[j.key()],
                    acc: a,
                    scratch: &mut scratch,
                });
            }
        }
        Ok(acc)
    };
    let parts: Vec<Vec<Acc>> = if groups > 1 {
        (0..groups)
            .into_par_iter()
            .map(group)
            .collect::<Result<_, E>>()?
    } else {
        vec![group(0)?]
    };
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for p in parts {
        for (a, b) in total.iter_mut().zip(p) {
            merge(a, b);
        }
    }
    Ok(total)
}

/// The bin holding rank `r` (1-based, counting from the largest bin down) and the
/// rank within it.
fn locate(h: &[u64], r: u64) -> (u32, u64) {
    let mut above = 0u64;
    for b in (0..h.len()).rev() {
        if above + h[b] >= r {
            return (b as u32, r - above);
        }
        above += h[b];
    }
    (0, r)
}

/// The keys a selection reads: `n_keys` keys of `n` elements each in `chunks` chunks,
/// computed by `fill` (from several threads at once when `parallel`).
pub struct ChunkedKeys<'a, E> {
    pub n_keys: usize,
    pub n: usize,
    pub chunks: usize,
    pub parallel: bool,
    pub fill: &'a Fill<'a, E>,
}

/// Cut points for every request.
pub fn select_chunked<E: Send>(
    keys: &ChunkedKeys<E>,
    requests: &[Request],
) -> Result<Vec<TopkCut>, E> {
    let limits = Limits {
        gather_max: GATHER_MAX,
        band_min: BAND_MIN,
    };
    select_with(keys, requests, limits)
}

/// The chunks a sample reads: one in [`SAMPLE_CHUNKS`], spread evenly, at least 8.
fn sample_chunks(chunks: usize) -> Vec<usize> {
    let m = (chunks / SAMPLE_CHUNKS).max(8).min(chunks);
    (0..m).map(|i| i * chunks / m).collect()
}

/// [`select_chunked`] within `limits`.
fn select_with<E: Send>(
    keys: &ChunkedKeys<E>,
    requests: &[Request],
    limits: Limits,
) -> Result<Vec<TopkCut>, E> {
    let gather_max = limits.gather_max;
    let &ChunkedKeys {
        n_keys,
        n,
        chunks,
        parallel,
        fill,
    } = keys;
    let mut st: Vec<State> = requests
        .iter()
        .map(|r| match r.count {
            0 => State::Done(TopkCut {
                t: u32::MAX,
                cut: 0,
            }),
            c if c >= n => State::Done(TopkCut {
                t: 0,
                cut: n as u64,
            }),
            c if c > 1 && n as u64 > limits.band_min && chunks >= SAMPLE_MIN_CHUNKS.min(n) => {
                State::Sample { rank: c as u64 }
            }
            c => State::Open {
                shift: 32,
                prefix: 0,
                rank: c as u64,
                count: n as u64,
            },
        })
        .collect();
    let all: Vec<usize> = (0..chunks).collect();
    let sampled = sample_chunks(chunks);
    loop {
        let mut todo: Vec<(usize, Job)> = requests
            .iter()
            .zip(&st)
            .enumerate()
            .filter_map(|(i, (r, s))| Some((i, Job::of(r, s, gather_max)?)))
            .collect();
        if todo.is_empty() {
            break;
        }
        // A sample reads its chunks only: the other jobs wait for the next full pass.
        let sampling = todo.iter().any(|(_, j)| matches!(j, Job::Sample { .. }));
        if sampling {
            todo.retain(|(_, j)| matches!(j, Job::Sample { .. }));
        }
        // Requests wanting the same thing (the same key's first digit, say) share a job.
        let mut jobs: Vec<Job> = Vec::new();
        let which: Vec<usize> = todo
            .iter()
            .map(|&(_, job)| {
                jobs.iter().position(|&j| j == job).unwrap_or_else(|| {
                    jobs.push(job);
                    jobs.len() - 1
                })
            })
            .collect();
        let list = if sampling { &sampled } else { &all };
        let results = pass(&jobs, n_keys, list, parallel, gather_max, fill)?;
        // Each request's next state on its own thread: selecting among a band's keys
        // is a large in-memory select per request.
        let step = |&((i, job), w): &((usize, Job), usize)| {
            let how = Resolve {
                n,
                key: requests[i].key,
                n_keys,
                gather_max,
                fill,
            };
            how.step(st[i], job, &results[w]).map(|s| (i, s))
        };
        let todo: Vec<((usize, Job), usize)> = todo.into_iter().zip(which).collect();
        let next: Vec<(usize, State)> = if parallel {
            todo.par_iter().map(step).collect::<Result<_, E>>()?
        } else {
            todo.iter().map(step).collect::<Result<_, E>>()?
        };
        for (i, s) in next {
            st[i] = s;
        }
    }
    Ok(st
        .into_iter()
        .map(|s| match s {
            State::Done(c) => c,
            _ => unreachable!("topk: unresolved request"),
        })
        .collect())
}

/// What a request's next state is computed with.
struct Resolve<'a, 'f, E> {
    n: usize,
    key: usize,
    n_keys: usize,
    gather_max: u64,
    fill: &'a Fill<'f, E>,
}

impl<E: Send> Resolve<'_, '_, E> {
    /// A request's state after a pass gave its job's result.
    fn step(&self, s: State, job: Job, acc: &Acc) -> Result<State, E> {
        let n = self.n as u64;
        // The radix select from its first digit: where a sample or band did not help.
        let from_top = |rank: u64| State::Open {
            shift: 32,
            prefix: 0,
            rank,
            count: n,
        };
        Ok(match (s, job, acc) {
            (State::Open { prefix, rank, .. }, Job::Hist { dshift, width, .. }, Acc::Hist(h)) => {
                let (b, within) = locate(h, rank);
                let prefix = ((prefix as u64) << width | b as u64) as u32;
                let count = h[b as usize];
                if dshift == 0 {
                    self.resolved(prefix, within, count)
                } else {
                    State::Open {
                        shift: dshift,
                        prefix,
                        rank: within,
                        count,
                    }
                }
            }
            (
                State::Open {
                    shift,
                    prefix,
                    rank,
                    ..
                },
                Job::Gather { .. },
                Acc::Gather(parts),
            ) => self.among(parts, shift, prefix, rank)?,
            (State::Sample { rank }, Job::Sample { .. }, Acc::Sample(sample)) => {
                match band(sample, rank, n, self.gather_max) {
                    Some((lo, hi)) => State::Band { rank, lo, hi },
                    None => from_top(rank),
                }
            }
            (State::Band { rank, .. }, Job::Band { .. }, Acc::Band(b)) => {
                if b.inside > b.cap || rank <= b.above || rank > b.above + b.inside {
                    from_top(rank)
                } else {
                    self.among(&b.parts, 32, 0, rank - b.above)?
                }
            }
            (State::Open { rank: 1, .. }, Job::Max { .. }, Acc::Max(maxes)) => {
                // The first element of the largest key: in the first chunk whose largest it is.
                let t = maxes.iter().copied().max().unwrap_or(0);
                let holds: Vec<u64> = maxes.iter().map(|&m| (m == t) as u64).collect();
                State::Done(self.last_taken(t, 1, &holds)?)
            }
            (State::Tie { t, m }, Job::Count { .. }, Acc::Count(counts)) => {
                State::Done(self.last_taken(t, m, counts)?)
            }
            _ => unreachable!("topk: a result for another state"),
        })
    }

    /// Done when the `m`-th of the `equal` elements of key `t` is the last one, else a tie.
    fn resolved(&self, t: u32, m: u64, equal: u64) -> State {
        if m == equal {
            State::Done(TopkCut {
                t,
                cut: self.n as u64,
            })
        } else {
            State::Tie { t, m }
        }
    }

    /// The `rank`-th largest of the gathered keys (chunk by chunk, each the low `shift`
    /// bits of a key with `prefix` above them) and its cut.
    fn among(&self, parts: &[Vec<u32>], shift: u32, prefix: u32, rank: u64) -> Result<State, E> {
        let mut all: Vec<u32> = parts.iter().flatten().copied().collect();
        let v = *all
            .select_nth_unstable_by(rank as usize - 1, |a, b| b.cmp(a))
            .1;
        let greater = all.iter().filter(|&&x| x > v).count() as u64;
        let equal: Vec<u64> = parts
            .iter()
            .map(|p| p.iter().filter(|&&x| x == v).count() as u64)
            .collect();
        let t = (((prefix as u64) << shift) | v as u64) as u32;
        Ok(match self.resolved(t, rank - greater, equal.iter().sum()) {
            State::Tie { t, m } => State::Done(self.last_taken(t, m, &equal)?),
            done => done,
        })
    }

    /// [`last_taken`] for this request's key.
    fn last_taken(&self, t: u32, m: u64, per_chunk: &[u64]) -> Result<TopkCut, E> {
        last_taken(t, m, per_chunk, self.key, self.n_keys, self.fill)
    }
}

/// The band of keys that should hold the `rank`-th largest of `n`, from a sample of
/// them: its rank in the sample, give or take 8 standard errors (at least 1% of the
/// sample). None when the sample says the band would hold more than `gather_max` keys.
fn band(sample: &[u32], rank: u64, n: u64, gather_max: u64) -> Option<(u32, u32)> {
    let mut sample = sample.to_vec();
    let s = sample.len() as u64;
    if s == 0 {
        return None;
    }
    let p = rank as f64 / n as f64;
    let at = (p * s as f64).round() as i64;
    let margin = (8.0 * (s as f64 * p * (1.0 - p)).sqrt()).max(s as f64 / 100.0) as i64 + 1;
    // The key at index `i` of the sample in descending order (0: the largest).
    let mut nth_largest = |i: i64| *sample.select_nth_unstable(s as usize - 1 - i as usize).1;
    let hi = match at - margin {
        i if i < 0 => u32::MAX,
        i => nth_largest(i),
    };
    let lo = match at + margin {
        i if i >= s as i64 => 0,
        i => nth_largest(i),
    };
    let inside = sample.iter().filter(|&&k| lo <= k && k <= hi).count() as u64;
    // The band's expected size in the whole tensor, with room for the sample's error.
    let expect = (inside as f64 * n as f64 / s as f64 * 1.5) as u64;
    (expect <= gather_max).then_some((lo, hi))
}

/// The cut after the `m`-th element of key `t` (1-based, index order), given how many
/// each chunk has: the chunk holding it is recomputed and scanned.
fn last_taken<E: Send>(
    t: u32,
    m: u64,
    per_chunk: &[u64],
    key: usize,
    n_keys: usize,
    fill: &Fill<E>,
) -> Result<TopkCut, E> {
    let mut left = m;
    for (c, &k) in per_chunk.iter().enumerate() {
        if left <= k {
            let mut bufs = vec![Vec::new(); n_keys];
            let start = fill(c, &mut bufs)?;
            let (i, _) = bufs[key]
                .iter()
                .enumerate()
                .filter(|&(_, &x)| magnitude_key(x) == t)
                .nth(left as usize - 1)
                .expect("topk: the chunk's count of the threshold key");
            return Ok(TopkCut {
                t,
                cut: (start + i + 1) as u64,
            });
        }
        left -= k;
    }
    unreachable!("topk: fewer elements of the threshold key than counted")
}

mod scan;

#[cfg(test)]
mod tests;
