//! Synthetic grade-school word problems for the testbed zoo, in GSM8K format.
//!
//! Every problem is a short chain of worked steps, and every step is one fact from a
//! small table: how many things a container holds (`A box of pens has 6 pens.`), what a
//! thing costs, a times-table product (`4 * 6 = 24`), a quotient (`24 / 3 = 8`) or a
//! small sum. A family's *skills* are such tables; each expert masters one, the base
//! knows only a seeded part of each (it never sees the other facts), and the mixed
//! problems of the dev and test sets need facts from several skills at once: no single
//! model knows them all, a good merge can.

use crate::semantics::rng::SplitMix64;
use std::collections::BTreeSet;

/// One fact a step uses. Items index the family's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fact {
    /// How many things the container of item `i` holds.
    Pack(u8),
    /// What item `i` costs.
    Price(u8),
    /// `a * b`, both in 2..=9.
    Mul(u8, u8),
    /// `t / k` with `t = k * q`, `k` and `q` in 2..=9.
    Div(u8, u8),
    /// `a + b`, both in 1..=9.
    Add(u8, u8),
}

/// A skill: one table of facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skill {
    Packs,
    Prices,
    Times,
    Share,
    Add,
}

impl Skill {
    pub fn name(self) -> &'static str {
        match self {
            Skill::Packs => "packs",
            Skill::Prices => "prices",
            Skill::Times => "times",
            Skill::Share => "share",
            Skill::Add => "add",
        }
    }
}

impl Fact {
    pub fn skill(self) -> Skill {
        match self {
            Fact::Pack(_) => Skill::Packs,
            Fact::Price(_) => Skill::Prices,
            Fact::Mul(..) => Skill::Times,
            Fact::Div(..) => Skill::Share,
            Fact::Add(..) => Skill::Add,
        }
    }
}

/// The kinds of problem: which steps, in which words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// How many things in one container (packs).
    PackCount,
    /// One container and some loose things (packs, add).
    PackPlus,
    /// What one thing costs (prices).
    PriceOne,
    /// One thing and some money more (prices, add).
    PricePlus,
    /// Containers with a stated count each (times).
    Times,
    /// Things shared equally (share).
    Share,
    /// Several containers of a known count (packs, times).
    PackTimes,
    /// Stated containers, then shared (times, share).
    TimesShare,
    /// Containers of a known count, then shared (packs, times, share).
    PackTimesShare,
    /// Containers bought in two lots (add, packs, times).
    AddPackTimes,
    /// Several things of a known price (prices, times).
    PriceTimes,
    /// The price of a whole container (packs, prices, times).
    PackPrice,
    /// Things bought in two lots, at a known price (add, prices, times).
    AddPriceTimes,
}

/// A problem with its worked solution and the facts it uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub question: String,
    /// Steps, one a line, then `#### N` (GSM8K's format).
    pub solution: String,
    pub answer: u32,
    pub kind: Kind,
    pub facts: Vec<Fact>,
}

impl Problem {
    /// The JSONL record `{"question", "answer"}` (GSM8K's field names).
    pub fn to_json(&self) -> String {
        serde_json::json!({"question": self.question, "answer": self.solution}).to_string()
    }
}

const NAMES: [&str; 16] = [
    "Tom", "Ann", "Sam", "Mia", "Ben", "Zoe", "Max", "Eva", "Leo", "Ivy", "Kai", "Amy", "Jay",
    "Liz", "Ned", "Ola",
];

/// (container, its plural, one thing, things).
const ITEMS: [(&str, &str, &str, &str); 16] = [
    ("box", "boxes", "pen", "pens"),
    ("bag", "bags", "apple", "apples"),
    ("pack", "packs", "card", "cards"),
    ("jar", "jars", "cookie", "cookies"),
    ("crate", "crates", "melon", "melons"),
    ("tray", "trays", "egg", "eggs"),
    ("bucket", "buckets", "shell", "shells"),
    ("basket", "baskets", "plum", "plums"),
    ("case", "cases", "can", "cans"),
    ("sack", "sacks", "onion", "onions"),
    ("tin", "tins", "mint", "mints"),
    ("roll", "rolls", "stamp", "stamps"),
    ("bowl", "bowls", "grape", "grapes"),
    ("carton", "cartons", "juice", "juices"),
    ("bundle", "bundles", "stick", "sticks"),
    ("kit", "kits", "tool", "tools"),
];

/// One thing of the family's world: its container, how many the container holds, and
/// what one costs.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub container: &'static str,
    pub containers: &'static str,
    pub one: &'static str,
    pub many: &'static str,
    pub count: u8,
    pub price: u8,
}

/// "a" or "an" before a word.
pub fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A family's tables (seeded), its experts' skills, and which facts the base knows.
#[derive(Clone, Debug)]
pub struct World {
    pub items: Vec<Item>,
    /// The experts' skills, in order.
    pub experts: Vec<Skill>,
    /// Problem kinds of each expert's fine-tuning data (parallel to `experts`).
    pub expert_kinds: Vec<Vec<Kind>>,
    /// The mixed kinds of the dev and test sets.
    pub mixed_kinds: Vec<Kind>,
    /// The kinds the base is pretrained on.
    pub base_kinds: Vec<Kind>,
    /// Facts of the experts' skills that the base sees (it sees every fact of other skills).
    pub base_known: BTreeSet<Fact>,
}

/// Every fact of a skill in this world.
pub fn all_facts(w: &World, s: Skill) -> Vec<Fact> {
    match s {
        Skill::Packs => (0..w.items.len() as u8).map(Fact::Pack).collect(),
        Skill::Prices => (0..w.items.len() as u8).map(Fact::Price).collect(),
        Skill::Times => (2..=9u8)
            .flat_map(|a| (2..=9u8).map(move |b| Fact::Mul(a, b)))
            .collect(),
        Skill::Share => (2..=9u8)
            .flat_map(|k| (2..=9u8).map(move |q| Fact::Div(k * q, k)))
            .collect(),
        Skill::Add => (1..=9u8)
            .flat_map(|a| (1..=9u8).map(move |b| Fact::Add(a, b)))
            .collect(),
    }
}

/// Which family: 1 (packs, times, share) or 2 (packs, prices, times; other tables).
pub fn world(family: u32, seed: u64, base_known_frac: f64) -> World {
    let mut rng = SplitMix64::new(seed ^ 0x05EE_D0F7_A5C5);
    let mut order: Vec<usize> = (0..ITEMS.len()).collect();
    shuffle(&mut rng, &mut order);
    let items: Vec<Item> = order[..12]
        .iter()
        .map(|&i| {
            let (container, containers, one, many) = ITEMS[i];
            Item {
                container,
                containers,
                one,
                many,
                count: 2 + rng.below(8) as u8,
                price: 2 + rng.below(8) as u8,
            }
        })
        .collect();
    use Kind::*;
    let (experts, expert_kinds, mixed_kinds) = match family {
        1 => (
            vec![Skill::Packs, Skill::Times, Skill::Share],
            vec![vec![PackCount, PackPlus], vec![Times], vec![Share]],
            vec![PackTimes, TimesShare, PackTimesShare, AddPackTimes],
        ),
        _ => (
            vec![Skill::Packs, Skill::Prices, Skill::Times],
            vec![
                vec![PackCount, PackPlus],
                vec![PriceOne, PricePlus],
                vec![Times],
            ],
            vec![PackTimes, PriceTimes, PackPrice, AddPriceTimes],
        ),
    };
    let mut base_kinds: Vec<Kind> = expert_kinds.iter().flatten().copied().collect();
    base_kinds.extend(&mixed_kinds);
    let mut w = World {
        items,
        experts,
        expert_kinds,
        mixed_kinds,
        base_kinds,
        base_known: BTreeSet::new(),
    };
    let mut known = BTreeSet::new();
    for s in w.experts.clone() {
        let mut facts = all_facts(&w, s);
        shuffle(&mut rng, &mut facts);
        let n = (facts.len() as f64 * base_known_frac).round() as usize;
        known.extend(facts.into_iter().take(n));
    }
    w.base_known = known;
    w
}

fn shuffle<T>(rng: &mut SplitMix64, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        let j = rng.below(i + 1);
        xs.swap(i, j);
    }
}

/// Which facts a generated problem may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facts {
    /// Any fact.
    All,
    /// Facts the base knows, and for `Some(skill)` any fact of that skill too.
    Known(Option<Skill>),
}

impl World {
    pub fn allows(&self, f: Fact, which: Facts) -> bool {
        match which {
            Facts::All => true,
            Facts::Known(s) => {
                !self.experts.contains(&f.skill())
                    || Some(f.skill()) == s
                    || self.base_known.contains(&f)
            }
        }
    }

    /// A problem of `kind` using only facts `which` allows (rejection sampling).
    pub fn problem(&self, rng: &mut SplitMix64, kind: Kind, which: Facts) -> Problem {
        loop {
            let p = self.draft(rng, kind);
            if p.facts.iter().all(|&f| self.allows(f, which)) {
                return p;
            }
        }
    }

    /// The skills a kind of problem uses.
    pub fn kind_skills(&self, kind: Kind) -> BTreeSet<Skill> {
        let mut rng = SplitMix64::new(0);
        self.draft(&mut rng, kind)
            .facts
            .iter()
            .map(|f| f.skill())
            .collect()
    }

    /// The mixed kinds that use expert skill `s`.
    pub fn mixed_kinds_with(&self, s: Skill) -> Vec<Kind> {
        self.mixed_kinds
            .iter()
            .copied()
            .filter(|&k| self.kind_skills(k).contains(&s))
            .collect()
    }

    /// A problem whose kind is drawn uniformly from `kinds`.
    pub fn problem_of(&self, rng: &mut SplitMix64, kinds: &[Kind], which: Facts) -> Problem {
        let k = kinds[rng.below(kinds.len())];
        self.problem(rng, k, which)
    }

    fn draft(&self, rng: &mut SplitMix64, kind: Kind) -> Problem {
        let name = NAMES[rng.below(NAMES.len())];
        let ii = rng.below(self.items.len());
        let s = Scene::new(name, ii, &self.items[ii]);
        let body = match kind {
            Kind::PackCount | Kind::PackPlus | Kind::PriceOne | Kind::PricePlus => {
                s.lookup(rng, kind)
            }
            Kind::Times | Kind::Share => s.times_or_share(rng, kind),
            Kind::PackTimes | Kind::PriceTimes | Kind::PackPrice => s.table_times(rng, kind),
            Kind::TimesShare | Kind::PackTimesShare => s.times_then_share(rng, kind),
            Kind::AddPackTimes | Kind::AddPriceTimes => s.add_then_times(rng, kind),
        };
        let mut solution = body.steps.join("\n");
        solution.push_str(&format!("\n#### {}", body.answer));
        Problem {
            question: body.question,
            solution,
            answer: body.answer,
            kind,
            facts: body.facts,
        }
    }
}

/// A digit for a product or a quotient: 2..=9.
fn digit(rng: &mut SplitMix64) -> u32 {
    2 + rng.below(8) as u32
}

/// What a drafted problem is about: who, which item, and the table steps and phrases
/// its kinds share.
struct Scene {
    name: &'static str,
    /// The item's index in the world's tables.
    ic: u8,
    c: &'static str,
    cs: &'static str,
    one: &'static str,
    t: &'static str,
    n: u32,
    p: u32,
    /// "a" or "an" before `one`.
    a1: &'static str,
    pack_step: String,
    price_step: String,
    pay: String,
}

/// A problem before its solution is joined: the question, facts, steps and answer.
struct Body {
    question: String,
    facts: Vec<Fact>,
    steps: Vec<String>,
    answer: u32,
}

impl Scene {
    fn new(name: &'static str, ii: usize, it: &Item) -> Scene {
        let (c, cs, one, t) = (it.container, it.containers, it.one, it.many);
        let (n, p) = (it.count as u32, it.price as u32);
        let a1 = article(one);
        Scene {
            name,
            ic: ii as u8,
            c,
            cs,
            one,
            t,
            n,
            p,
            a1,
            pack_step: format!("{n} {t} per {c}."),
            price_step: format!("{}{} {one} costs ${p}.", a1[..1].to_uppercase(), &a1[1..]),
            pay: format!("How much does {name} pay?"),
        }
    }

    /// One table fact (a pack or a price), alone or plus a small number.
    fn lookup(&self, rng: &mut SplitMix64, kind: Kind) -> Body {
        let Scene {
            name,
            ic,
            c,
            one,
            t,
            n,
            p,
            a1,
            ..
        } = *self;
        let (pack_step, price_step) = (self.pack_step.clone(), self.price_step.clone());
        match kind {
            Kind::PackCount => Body {
                question: format!("How many {t} are in a {c}?"),
                facts: vec![Fact::Pack(ic)],
                steps: vec![pack_step],
                answer: n,
            },
            Kind::PackPlus => {
                let x = 1 + rng.below(9) as u32;
                Body {
                    question: format!("{name} has a {c} of {t} and {x} more. How many {t}?"),
                    facts: vec![Fact::Pack(ic), Fact::Add(n as u8, x as u8)],
                    steps: vec![pack_step, format!("{n} + {x} = {}.", n + x)],
                    answer: n + x,
                }
            }
            Kind::PriceOne => Body {
                question: format!("How much is {a1} {one}?"),
                facts: vec![Fact::Price(ic)],
                steps: vec![price_step],
                answer: p,
            },
            Kind::PricePlus => {
                let x = 1 + rng.below(9) as u32;
                Body {
                    question: format!("{name} buys {a1} {one} and a ${x} card. {}", self.pay),
                    facts: vec![Fact::Price(ic), Fact::Add(p as u8, x as u8)],
                    steps: vec![price_step, format!("{p} + {x} = {}.", p + x)],
                    answer: p + x,
                }
            }
            _ => unreachable!("lookup: {kind:?}"),
        }
    }

    /// A product or a quotient of stated numbers, no table.
    fn times_or_share(&self, rng: &mut SplitMix64, kind: Kind) -> Body {
        let Scene { name, cs, t, .. } = *self;
        match kind {
            Kind::Times => {
                let (a, b) = (digit(rng), digit(rng));
                Body {
                    question: format!("{name} has {a} {cs} with {b} {t} each. How many {t}?"),
                    facts: vec![Fact::Mul(a as u8, b as u8)],
                    steps: vec![format!("{a} * {b} = {}.", a * b)],
                    answer: a * b,
                }
            }
            Kind::Share => {
                let (k, q) = (digit(rng), digit(rng));
                let tot = k * q;
                Body {
                    question: format!("{name} shares {tot} {t} among {k} kids. How many each?"),
                    facts: vec![Fact::Div(tot as u8, k as u8)],
                    steps: vec![format!("{tot} / {k} = {q}.")],
                    answer: q,
                }
            }
            _ => unreachable!("times_or_share: {kind:?}"),
        }
    }

    /// A product with a table fact: several packs, several priced things, or the price
    /// of a whole pack.
    fn table_times(&self, rng: &mut SplitMix64, kind: Kind) -> Body {
        let Scene {
            name,
            ic,
            c,
            cs,
            t,
            n,
            p,
            ..
        } = *self;
        let (pack_step, price_step, pay) =
            (self.pack_step.clone(), self.price_step.clone(), &self.pay);
        match kind {
            Kind::PackTimes => {
                let a = digit(rng);
                Body {
                    question: format!("{name} buys {a} {cs} of {t}. How many {t}?"),
                    facts: vec![Fact::Pack(ic), Fact::Mul(a as u8, n as u8)],
                    steps: vec![pack_step, format!("{a} * {n} = {}.", a * n)],
                    answer: a * n,
                }
            }
            Kind::PriceTimes => {
                let a = digit(rng);
                Body {
                    question: format!("{name} buys {a} {t}. {pay}"),
                    facts: vec![Fact::Price(ic), Fact::Mul(a as u8, p as u8)],
                    steps: vec![price_step, format!("{a} * {p} = {}.", a * p)],
                    answer: a * p,
                }
            }
            Kind::PackPrice => Body {
                question: format!("{name} buys a {c} of {t}. {pay}"),
                facts: vec![Fact::Pack(ic), Fact::Price(ic), Fact::Mul(n as u8, p as u8)],
                steps: vec![pack_step, price_step, format!("{n} * {p} = {}.", n * p)],
                answer: n * p,
            },
            _ => unreachable!("table_times: {kind:?}"),
        }
    }

    /// A product (of stated numbers, or packs of a known count) shared among kids.
    fn times_then_share(&self, rng: &mut SplitMix64, kind: Kind) -> Body {
        let Scene {
            name, ic, cs, t, n, ..
        } = *self;
        let mut facts = Vec::new();
        let mut steps = Vec::new();
        // a * b always splits as a parts of b; pick any split into 2..=9 parts of 2..=9.
        let with_pack = kind == Kind::PackTimesShare;
        let (a, b) = if with_pack {
            (digit(rng), n)
        } else {
            (digit(rng), digit(rng))
        };
        let tot = a * b;
        let ks: Vec<u32> = (2..=9)
            .filter(|k| tot % k == 0 && (2..=9).contains(&(tot / k)))
            .collect();
        let k = ks[rng.below(ks.len())];
        let q = tot / k;
        let question = if with_pack {
            format!("{name} buys {a} {cs} of {t} to share among {k} kids. How many each?")
        } else {
            format!("{name} has {a} {cs} with {b} {t} each to share among {k} kids. How many each?")
        };
        if with_pack {
            facts.push(Fact::Pack(ic));
            steps.push(self.pack_step.clone());
        }
        facts.extend([Fact::Mul(a as u8, b as u8), Fact::Div(tot as u8, k as u8)]);
        steps.push(format!("{a} * {b} = {tot}."));
        steps.push(format!("{tot} / {k} = {q}."));
        Body {
            question,
            facts,
            steps,
            answer: q,
        }
    }

    /// Things bought in two lots, then counted by the pack or priced.
    fn add_then_times(&self, rng: &mut SplitMix64, kind: Kind) -> Body {
        let Scene {
            name,
            ic,
            cs,
            t,
            n,
            p,
            ..
        } = *self;
        let x = 2 + rng.below(6) as u32;
        let y = 1 + rng.below((8 - x) as usize) as u32;
        let a = x + y;
        let mut facts = vec![Fact::Add(x as u8, y as u8)];
        let mut steps = vec![format!("{x} + {y} = {a}.")];
        let question;
        let answer;
        if kind == Kind::AddPackTimes {
            question = format!("{name} buys {x} {cs} of {t}, then {y} more. How many {t}?");
            facts.extend([Fact::Pack(ic), Fact::Mul(a as u8, n as u8)]);
            steps.push(self.pack_step.clone());
            steps.push(format!("{a} * {n} = {}.", a * n));
            answer = a * n;
        } else {
            question = format!("{name} buys {x} {t}, then {y} more. {}", self.pay);
            facts.extend([Fact::Price(ic), Fact::Mul(a as u8, p as u8)]);
            steps.push(self.price_step.clone());
            steps.push(format!("{a} * {p} = {}.", a * p));
            answer = a * p;
        }
        Body {
            question,
            facts,
            steps,
            answer,
        }
    }
}

/// Checks a problem's arithmetic and tables from its text alone: every `a op b = c`
/// step is right, every table step matches the world, and the final line is the last
/// step's result. For the tests.
pub fn verify(w: &World, p: &Problem) -> Result<(), String> {
    let lines: Vec<&str> = p.solution.lines().collect();
    let (last, steps) = lines.split_last().ok_or("empty solution")?;
    let ans: u32 = last
        .strip_prefix("#### ")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad final line `{last}`"))?;
    if ans != p.answer {
        return Err(format!("final {ans} != answer {}", p.answer));
    }
    let mut result = None;
    for s in steps {
        let s = s
            .strip_suffix('.')
            .ok_or_else(|| format!("step `{s}` lacks a period"))?;
        if let Some((lhs, rhs)) = s.split_once(" = ") {
            let parts: Vec<&str> = lhs.split(' ').collect();
            let [a, op, b] = parts[..] else {
                return Err(format!("bad step `{s}`"));
            };
            let (a, b, c): (u32, u32, u32) = (
                a.parse().map_err(|_| format!("bad number in `{s}`"))?,
                b.parse().map_err(|_| format!("bad number in `{s}`"))?,
                rhs.parse().map_err(|_| format!("bad number in `{s}`"))?,
            );
            let want = match op {
                "+" => a + b,
                "*" => a * b,
                "/" if b != 0 && a % b == 0 => a / b,
                _ => return Err(format!("bad operator in `{s}`")),
            };
            if want != c {
                return Err(format!("wrong step `{s}`"));
            }
            result = Some(c);
        } else {
            let ok = w.items.iter().any(|i| {
                s == format!("{} {} per {}", i.count, i.many, i.container)
                    || s.ends_with(&format!(" {} costs ${}", i.one, i.price))
            });
            if !ok {
                return Err(format!("step `{s}` is not in the world's tables"));
            }
            let n: u32 = s
                .split(' ')
                .find_map(|x| x.trim_start_matches('$').parse().ok())
                .ok_or_else(|| format!("no number in `{s}`"))?;
            result = Some(n);
        }
    }
    if result != Some(ans) {
        return Err(format!("the last step gives {result:?}, not {ans}"));
    }
    Ok(())
}
