//! A YAML document as a tree whose every node knows its line and column
//! (serde-saphyr's `Spanned`), and errors that point at them.

use super::error::{ConfigError, Located};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a node starts (1-based; line 0 means unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// One YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Key/value pairs in document order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What the node is, for messages ("a string `abc`", "a list", ...).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (null)".into(),
            Kind::Bool(b) => format!("the boolean `{b}`"),
            Kind::Int(i) => format!("the number `{i}`"),
            Kind::Float(x) => format!("the number `{x}`"),
            Kind::Str(s) => format!("the string `{s}`"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping (key: value pairs)".into(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number, as mergekit (pydantic) accepts one: an int, a float, or a numeric string.
    pub fn as_number(&self) -> Option<f64> {
        match &self.kind {
            Kind::Int(i) => Some(*i as f64),
            Kind::Float(x) => Some(*x),
            Kind::Str(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Kind>::deserialize(d)?;
        Ok(Node {
            kind: s.value,
            pos: Pos {
                line: s.referenced.line(),
                column: s.referenced.column(),
            },
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(i64::try_from(v).map_or(Kind::Float(v as f64), Kind::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        Ok(i64::try_from(v).map_or(Kind::Float(v as f64), Kind::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(i64::try_from(v).map_or(Kind::Float(v as f64), Kind::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Kind::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            out.push((k, v));
        }
        Ok(Kind::Map(out))
    }
}

/// The config file's text and name, to turn positions into messages.
pub struct Source {
    pub label: String,
    pub text: String,
}

impl Source {
    /// `FILE, line L, column C: MESSAGE` and the line with a caret under the column.
    pub fn error(&self, pos: Pos, msg: impl std::fmt::Display) -> ConfigError {
        let excerpt = (pos.line > 0)
            .then(|| self.text.lines().nth(pos.line as usize - 1))
            .flatten()
            .map(|line| {
                let num = pos.line.to_string();
                let pad = " ".repeat(num.len());
                let col = (pos.column.max(1) - 1) as usize;
                let lead: String = line
                    .chars()
                    .take(col)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                // Underline the word that starts there (a key, a scalar), at least one column.
                let width = line
                    .chars()
                    .skip(col)
                    .take_while(|c| !matches!(c, ':' | ',' | ']' | '}' | '#') && !c.is_whitespace())
                    .count()
                    .max(1);
                let marks = "^".repeat(width);
                format!(" {num} | {line}\n {pad} | {lead}{marks}")
            });
        ConfigError::At(Located {
            label: self.label.clone(),
            line: pos.line,
            column: pos.column,
            message: msg.to_string(),
            excerpt,
        })
    }

    /// Parses the text into a tree; a syntax error names its line and column.
    pub fn parse(&self) -> Result<Node, ConfigError> {
        serde_saphyr::from_str::<Node>(&self.text).map_err(|e| {
            let pos = e.location().map_or(Pos::default(), |l| Pos {
                line: l.line(),
                column: l.column(),
            });
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid YAML");
            // serde-saphyr says "error: line L column C: what"; the position is ours to give.
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let first = match first.split_once(": ") {
                Some((at, rest)) if at.starts_with("line ") => rest,
                _ => first,
            };
            self.error(pos, format!("not valid YAML: {first}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, String> {
        Source {
            label: "t.yml".into(),
            text: text.into(),
        }
        .parse()
        .map_err(String::from)
    }

    #[test]
    fn positions_and_kinds() {
        let n = parse("a: 1\nb:\n  - 0.5\n  - x\nc: true\nd: ~\n").expect("parses");
        let Kind::Map(m) = &n.kind else {
            panic!("a map: {n:?}")
        };
        assert_eq!(m[0].0.as_str(), Some("a"));
        assert_eq!(m[0].1.kind, Kind::Int(1));
        assert_eq!(m[0].1.pos, Pos { line: 1, column: 4 });
        let Kind::Seq(s) = &m[1].1.kind else {
            panic!("a list")
        };
        assert_eq!(s[0].kind, Kind::Float(0.5));
        assert_eq!(s[1].pos.line, 4);
        assert_eq!(s[1].kind, Kind::Str("x".into()));
        assert_eq!(m[2].1.kind, Kind::Bool(true));
        assert_eq!(m[3].1.kind, Kind::Null);
        assert_eq!(m[3].0.pos, Pos { line: 6, column: 1 });
    }

    #[test]
    fn errors_keep_their_place() {
        let src = Source {
            label: "t.yml".into(),
            text: "a: 1\na: 2\n".into(),
        };
        let e = src.parse().expect_err("duplicate key");
        let at = e.location().expect("a place in the file");
        assert_eq!((at.label.as_str(), at.line), ("t.yml", 2));
        assert!(
            at.excerpt.as_deref().is_some_and(|x| x.contains("a: 2")),
            "{at:?}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("a: 1\nb: [1, 2\n").expect_err("bad yaml");
        assert!(e.contains("line"), "{e}");
        let e = parse("a: 1\na: 2\n").expect_err("duplicate key");
        assert!(e.contains("line 2"), "{e}");
    }
}
