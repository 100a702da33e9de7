//! Kubernetes label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`): parse, match, echo.
//!
//! The grammar is apimachinery's `labels.Parse` (R1.10): requirements joined by commas (AND),
//! operators `=`, `==`, `!=`, `in`, `notin`, `>`/`<` (integers), bare key (exists), `!key`
//! (does not exist). Keys are qualified names (`prefix/name`), values are label values.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

/// Why a selector string was rejected; becomes a 400 `BadRequest` (R1.44).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {why} in selector {input:?}")]
pub struct SelectorError {
    /// The selector text.
    pub input: String,
    /// What was wrong.
    pub why: String,
}

/// A requirement's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
    /// `in (…)`.
    In,
    /// `notin (…)`.
    NotIn,
    /// Bare key.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key > n` (integer comparison).
    GreaterThan,
    /// `key < n` (integer comparison).
    LessThan,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub op: Op,
    /// Values (one for `=`/`!=`/`>`/`<`, several for `in`/`notin`, none for exists).
    pub values: Vec<String>,
}

/// A parsed selector: every requirement must hold. Empty selects everything (R1.12).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

fn lex(input: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '>' => {
                out.push(Token::Gt);
                i += 1;
            }
            '<' => {
                out.push(Token::Lt);
                i += 1;
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::DoubleEq);
                    i += 2;
                } else {
                    out.push(Token::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::NotEq);
                    i += 2;
                } else {
                    out.push(Token::Bang);
                    i += 1;
                }
            }
            c if is_ident_char(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn valid_name_part(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let dns_ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !dns_ok {
            return Err(format!("invalid label key {key:?}: bad prefix {p:?}"));
        }
    }
    if !valid_name_part(name, 63) {
        return Err(format!(
            "invalid label key {key:?}: a name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() || valid_name_part(v, 63) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {v:?}: at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = if self.peek() == Some(&Token::Bang) {
            self.pos += 1;
            true
        } else {
            false
        };
        let key = match self.next() {
            Some(Token::Ident(k)) => k,
            other => return Err(format!("found {other:?}, expected a label key")),
        };
        check_key(&key)?;
        if negated {
            return match self.peek() {
                None | Some(Token::Comma) => Ok(Requirement {
                    key,
                    op: Op::DoesNotExist,
                    values: vec![],
                }),
                Some(t) => Err(format!("found {t:?} after !{key}, expected ',' or end")),
            };
        }
        let op = match self.peek() {
            None | Some(Token::Comma) => {
                return Ok(Requirement {
                    key,
                    op: Op::Exists,
                    values: vec![],
                });
            }
            Some(Token::Eq | Token::DoubleEq) => Op::Equals,
            Some(Token::NotEq) => Op::NotEquals,
            Some(Token::Gt) => Op::GreaterThan,
            Some(Token::Lt) => Op::LessThan,
            Some(Token::Ident(w)) if w == "in" => Op::In,
            Some(Token::Ident(w)) if w == "notin" => Op::NotIn,
            Some(t) => return Err(format!("found {t:?}, expected an operator after {key}")),
        };
        self.pos += 1;
        let values = match op {
            Op::In | Op::NotIn => self.value_set()?,
            _ => {
                let v = match self.peek() {
                    Some(Token::Ident(v)) => {
                        let v = v.clone();
                        self.pos += 1;
                        v
                    }
                    None | Some(Token::Comma) if matches!(op, Op::Equals | Op::NotEquals) => {
                        String::new()
                    }
                    other => return Err(format!("found {other:?}, expected a value for {key}")),
                };
                if matches!(op, Op::GreaterThan | Op::LessThan) && v.parse::<i64>().is_err() {
                    return Err(format!("value {v:?} for {key} must be an integer"));
                }
                vec![v]
            }
        };
        for v in &values {
            check_value(v)?;
        }
        Ok(Requirement { key, op, values })
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Token::Open) {
            return Err("expected '(' after in/notin".into());
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Some(Token::Ident(v)) if expect_value => {
                    values.push(v);
                    expect_value = false;
                }
                Some(Token::Comma) if !expect_value => expect_value = true,
                Some(Token::Comma) => values.push(String::new()),
                Some(Token::Close) => {
                    if expect_value {
                        values.push(String::new());
                    }
                    break;
                }
                other => return Err(format!("found {other:?} in a value set")),
            }
        }
        if values.len() == 1 && values[0].is_empty() && self.tokens[self.pos - 2] == Token::Open {
            return Err("a value set must not be empty".into());
        }
        Ok(values)
    }
}

impl Selector {
    /// Parses a selector; the empty string (or only spaces) selects everything.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let err = |why: String| SelectorError {
            input: input.to_string(),
            why,
        };
        let tokens = lex(input).map_err(err)?;
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if p.peek().is_none() {
            return Ok(Self::default());
        }
        loop {
            requirements.push(p.requirement().map_err(err)?);
            match p.next() {
                None => break,
                Some(Token::Comma) => {
                    if p.peek().is_none() {
                        return Err(err("trailing ','".into()));
                    }
                }
                Some(t) => return Err(err(format!("found {t:?}, expected ','"))),
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when this selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = labels.get(&r.key);
            match r.op {
                Op::Equals => have == Some(&r.values[0]),
                Op::NotEquals => have != Some(&r.values[0]),
                Op::In => have.is_some_and(|v| r.values.contains(v)),
                Op::NotIn => have.is_none_or(|v| !r.values.contains(v)),
                Op::Exists => have.is_some(),
                Op::DoesNotExist => have.is_none(),
                Op::GreaterThan | Op::LessThan => {
                    let (Some(h), Ok(want)) = (
                        have.and_then(|v| v.parse::<i64>().ok()),
                        r.values[0].parse::<i64>(),
                    ) else {
                        return false;
                    };
                    if r.op == Op::GreaterThan {
                        h > want
                    } else {
                        h < want
                    }
                }
            }
        })
    }

    /// The `metav1.LabelSelector` form echoed in metric values (R1.20), or `None` when empty.
    pub fn to_label_selector(&self) -> Option<Value> {
        if self.is_empty() {
            return None;
        }
        let mut match_labels = serde_json::Map::new();
        let mut exprs = Vec::new();
        for r in &self.requirements {
            let op = match r.op {
                Op::Equals => {
                    match_labels.insert(r.key.clone(), Value::from(r.values[0].clone()));
                    continue;
                }
                Op::NotEquals | Op::NotIn => "NotIn",
                Op::In => "In",
                Op::Exists => "Exists",
                Op::DoesNotExist => "DoesNotExist",
                Op::GreaterThan => "Gt",
                Op::LessThan => "Lt",
            };
            let mut e = json!({"key": r.key, "operator": op});
            if !r.values.is_empty() {
                e["values"] = json!(r.values);
            }
            exprs.push(e);
        }
        let mut out = serde_json::Map::new();
        if !match_labels.is_empty() {
            out.insert("matchLabels".into(), Value::Object(match_labels));
        }
        if !exprs.is_empty() {
            out.insert("matchExpressions".into(), Value::Array(exprs));
        }
        Some(Value::Object(out))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r.op {
                Op::Equals => format!("{}={}", r.key, r.values[0]),
                Op::NotEquals => format!("{}!={}", r.key, r.values[0]),
                Op::In => format!("{} in ({})", r.key, r.values.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::GreaterThan => format!("{}>{}", r.key, r.values[0]),
                Op::LessThan => format!("{}<{}", r.key, r.values[0]),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_parses_and_matches() {
        let s = Selector::parse("app=web,tier==front,env!=dev,zone in (a, b),rack notin (r1),canary,!legacy,gen>2,gen<9").unwrap();
        assert_eq!(s.requirements().len(), 9);
        let ok = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("zone", "b"),
            ("canary", ""),
            ("gen", "3"),
        ]);
        assert!(s.matches(&ok));
        let mut bad = ok.clone();
        bad.insert("legacy".into(), "1".into());
        assert!(!s.matches(&bad));
        let mut bad = ok.clone();
        bad.insert("zone".into(), "c".into());
        assert!(!s.matches(&bad));
        let mut bad = ok;
        bad.insert("gen".into(), "9".into());
        assert!(!s.matches(&bad));
    }

    #[test]
    fn empty_selects_everything_and_display_round_trips() {
        assert!(Selector::parse("").unwrap().matches(&labels(&[("a", "b")])));
        assert!(Selector::parse("  ").unwrap().is_empty());
        let s = Selector::parse("tier in (a,b),app=web").unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (a,b)");
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
        assert!(
            Selector::parse("a=")
                .unwrap()
                .matches(&labels(&[("a", "")]))
        );
        assert!(Selector::parse("example.com/app=x").is_ok());
    }

    #[test]
    fn bad_selectors_name_the_problem() {
        for bad in [
            "a in ()",
            "=b",
            "a=b,",
            "a b",
            "a in (x",
            "a>x",
            "!a=b",
            "a=b c",
            "-a=b",
            "a=(b)",
            "a=b;c",
            "a=b)",
            "UPPER.com/x=1",
        ] {
            let e = Selector::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("unable to parse requirement"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn echo_form_is_a_label_selector() {
        let s = Selector::parse("app=web,zone in (a,b),!old").unwrap();
        assert_eq!(
            s.to_label_selector().unwrap(),
            json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "old", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "In", "values": ["a", "b"]}]})
        );
        assert_eq!(Selector::default().to_label_selector(), None);
    }
}
