//! MLflow's search grammar as its clients send it, pure: filters (`name`, `tags.k`, and for
//! versions `run_id`, `source_path`, `version_number`) joined by `AND`, `order_by` clauses, and
//! offset page tokens. Anything else is refused by name (`INVALID_PARAMETER_VALUE`), never
//! ignored.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// What a search is over: the keys each accepts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Models,
    Versions,
}

/// A parsed filter: every clause must hold.
#[derive(Debug, PartialEq, Eq)]
pub struct Filter(Vec<Clause>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Name,
    Tag(String),
    RunId,
    SourcePath,
    VersionNumber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Like,
    ILike,
    In,
    NotIn,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, PartialEq, Eq)]
struct Clause {
    key: Key,
    op: Op,
    values: Vec<String>,
}

/// What one model or version offers a filter.
#[derive(Debug, Default)]
pub struct Subject<'a> {
    pub name: &'a str,
    pub tags: Option<&'a BTreeMap<String, String>>,
    pub run_id: &'a str,
    pub source: &'a str,
    pub version: &'a str,
}

/// Split on `AND` outside quotes and parentheses.
fn clauses(f: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote, mut depth) = (Vec::new(), String::new(), None::<char>, 0usize);
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' || c == '`' => quote = Some(c),
            None if c == '(' => depth += 1,
            None if c == ')' => depth = depth.saturating_sub(1),
            None if depth == 0 => {
                let rest: String = chars[i..].iter().take(5).collect();
                if rest.eq_ignore_ascii_case(" and ") {
                    out.push(std::mem::take(&mut cur));
                    i += 5;
                    continue;
                }
            }
            None => {}
        }
        cur.push(c);
        i += 1;
    }
    out.push(cur);
    out
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    ['\'', '"'].into_iter().find_map(|q| s.strip_prefix(q)?.strip_suffix(q)).map(str::to_owned)
}

/// `('a', 'b')` → the values.
fn list(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    let mut out = Vec::new();
    let (mut cur, mut quote) = (String::new(), None::<char>);
    for c in inner.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c == ',' => out.push(unquote(&std::mem::take(&mut cur))?),
            None => cur.push(c),
        }
    }
    out.push(unquote(&cur)?);
    Some(out)
}

impl Filter {
    /// # Errors
    /// A clause this grammar does not have, named.
    pub fn parse(filter: &str, over: Over) -> Result<Self, String> {
        let f = filter.trim();
        if f.is_empty() {
            return Ok(Self(vec![]));
        }
        clauses(f).iter().map(|c| Clause::parse(c.trim(), over)).collect::<Result<_, _>>().map(Self)
    }

    /// The model a filter pins with `name = '…'`, if any (a version search then reads one model).
    pub fn pinned_name(&self) -> Option<&str> {
        self.0.iter().find_map(|c| (c.key == Key::Name && c.op == Op::Eq).then(|| c.values[0].as_str()))
    }

    /// Whether any clause reads tags (so a caller fetches them only then).
    pub fn uses_tags(&self) -> bool {
        self.0.iter().any(|c| matches!(c.key, Key::Tag(_)))
    }

    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.0.iter().all(|c| c.holds(s))
    }
}

impl Clause {
    fn parse(c: &str, over: Over) -> Result<Self, String> {
        let unsupported = || match over {
            Over::Models => format!(
                "unsupported filter clause {c:?}: name or tags.<key> with =, !=, LIKE or ILIKE and a quoted value"
            ),
            Over::Versions => format!(
                "unsupported filter clause {c:?}: name, run_id, source_path, version_number or tags.<key> \
                 with =, !=, LIKE, ILIKE, IN, NOT IN (version_number: =, !=, <, <=, >, >=) and quoted values"
            ),
        };
        // The identifier: up to the first space or operator character, backticks kept together.
        let mut end = 0;
        let mut in_tick = false;
        for (i, ch) in c.char_indices() {
            if ch == '`' {
                in_tick = !in_tick;
            } else if !in_tick && (ch.is_whitespace() || matches!(ch, '=' | '!' | '<' | '>')) {
                break;
            }
            end = i + ch.len_utf8();
        }
        let ident = c[..end].replace('`', "");
        let rest = c[end..].trim_start();
        let key = match (ident.as_str(), over) {
            ("name", _) => Key::Name,
            ("run_id", Over::Versions) => Key::RunId,
            ("source_path", Over::Versions) => Key::SourcePath,
            ("version_number", Over::Versions) => Key::VersionNumber,
            (i, _) => Key::Tag(
                i.strip_prefix("tags.")
                    .or_else(|| i.strip_prefix("tag."))
                    .filter(|k| !k.is_empty())
                    .ok_or_else(unsupported)?
                    .to_owned(),
            ),
        };
        let word = |w: &str| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w);
        let (op, value) = if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Op::Gt, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else if word("ILIKE ") {
            (Op::ILike, &rest[5..])
        } else if word("LIKE ") {
            (Op::Like, &rest[4..])
        } else if word("NOT IN ") || word("NOT IN(") {
            (Op::NotIn, &rest[6..])
        } else if word("IN ") || word("IN(") {
            (Op::In, &rest[2..])
        } else {
            return Err(unsupported());
        };
        let numeric = key == Key::VersionNumber;
        let ordered = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
        let listed = matches!(op, Op::In | Op::NotIn);
        if (ordered && !numeric) || (numeric && matches!(op, Op::Like | Op::ILike | Op::In | Op::NotIn)) {
            return Err(unsupported());
        }
        if listed && matches!(key, Key::Tag(_)) {
            return Err(unsupported());
        }
        let values = if listed {
            list(value).ok_or_else(unsupported)?
        } else if numeric {
            let v = value.trim();
            let v = unquote(v).unwrap_or_else(|| v.to_owned());
            v.parse::<u64>().map_err(|_| unsupported())?;
            vec![v]
        } else {
            vec![unquote(value).ok_or_else(unsupported)?]
        };
        Ok(Self { key, op, values })
    }

    fn holds(&self, s: &Subject<'_>) -> bool {
        let have = match &self.key {
            Key::Name => Some(s.name),
            Key::Tag(k) => s.tags.and_then(|t| t.get(k)).map(String::as_str),
            Key::RunId => Some(s.run_id),
            Key::SourcePath => Some(s.source),
            Key::VersionNumber => {
                let (Ok(have), Ok(want)) = (s.version.parse::<u64>(), self.values[0].parse::<u64>()) else {
                    return false;
                };
                return match self.op {
                    Op::Eq => have == want,
                    Op::Ne => have != want,
                    Op::Lt => have < want,
                    Op::Le => have <= want,
                    Op::Gt => have > want,
                    Op::Ge => have >= want,
                    _ => false,
                };
            }
        };
        let v = &self.values[0];
        match (self.op, have) {
            (Op::Eq, Some(h)) => h == v,
            (Op::Ne, h) => h != Some(v.as_str()),
            (Op::Like, Some(h)) => like(v, h),
            (Op::ILike, Some(h)) => like(&v.to_lowercase(), &h.to_lowercase()),
            (Op::In, Some(h)) => self.values.iter().any(|x| x == h),
            (Op::NotIn, h) => h.is_none_or(|h| self.values.iter().all(|x| x != h)),
            _ => false,
        }
    }
}

/// SQL `LIKE`: `%` any run, `_` one character.
pub fn like(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    // reach[j]: the pattern so far can match the first j text characters.
    let mut reach = vec![false; t.len() + 1];
    reach[0] = true;
    for c in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            match c {
                '%' => next[j] = reach[j] || (j > 0 && next[j - 1]),
                '_' => next[j] = j > 0 && reach[j - 1],
                c => next[j] = j > 0 && reach[j - 1] && t[j - 1] == *c,
            }
        }
        reach = next;
    }
    reach[t.len()]
}

/// A column results may be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    VersionNumber,
    Created,
    Updated,
}

/// What one result offers an ordering.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub name: String,
    pub version: String,
    pub created: i64,
    pub updated: i64,
}

/// `order_by` clauses, then MLflow's natural order for ties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy(Vec<(Column, bool)>);

impl OrderBy {
    /// # Errors
    /// A column this search cannot order by, or a direction other than `ASC`/`DESC`.
    pub fn parse(clauses: &[String], over: Over) -> Result<Self, String> {
        let mut out = Vec::new();
        for c in clauses {
            let mut words = c.split_whitespace();
            let col = words.next().unwrap_or_default().replace('`', "");
            let asc = match words.next().map(str::to_ascii_uppercase).as_deref() {
                None | Some("ASC") => true,
                Some("DESC") => false,
                Some(d) => return Err(format!("invalid order_by direction {d:?} in {c:?}: ASC or DESC")),
            };
            if words.next().is_some() {
                return Err(format!("invalid order_by clause {c:?}"));
            }
            let column = match (col.as_str(), over) {
                ("name", _) => Column::Name,
                ("timestamp" | "creation_timestamp", _) => Column::Created,
                ("last_updated_timestamp", _) => Column::Updated,
                ("version_number", Over::Versions) => Column::VersionNumber,
                _ => {
                    return Err(format!(
                        "invalid order_by key {col:?}: name, timestamp, last_updated_timestamp{}",
                        if over == Over::Versions { ", version_number" } else { "" }
                    ));
                }
            };
            out.push((column, asc));
        }
        // MLflow's defaults: models by name; versions newest-updated first, then name, then
        // the highest number.
        if out.is_empty() && over == Over::Versions {
            out.push((Column::Updated, false));
        }
        for natural in [(Column::Name, true), (Column::VersionNumber, false)] {
            if !out.iter().any(|(c, _)| *c == natural.0) {
                out.push(natural);
            }
        }
        Ok(Self(out))
    }

    /// Whether the order reads this column (so a caller computes it only then).
    pub fn uses(&self, col: Column) -> bool {
        self.0.iter().any(|(c, _)| *c == col)
    }

    pub fn cmp(&self, a: &SortKey, b: &SortKey) -> Ordering {
        for (col, asc) in &self.0 {
            let o = match col {
                Column::Name => a.name.cmp(&b.name),
                Column::Created => a.created.cmp(&b.created),
                Column::Updated => a.updated.cmp(&b.updated),
                Column::VersionNumber => number_order(&a.version, &b.version),
            };
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

/// Numeric labels by number, before any other label (those by text).
fn number_order(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// A page token: the offset of the next page, as decimal text.
///
/// # Errors
/// A token this registry did not give.
pub fn offset_of(token: &str) -> Result<usize, String> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| "page_token is not one this registry gave".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(name: &'a str, tags: &'a BTreeMap<String, String>) -> Subject<'a> {
        Subject { name, tags: Some(tags), run_id: "r1", source: "models:/m-1", version: "3" }
    }

    #[test]
    fn the_filters_mlflow_clients_send() {
        let tags: BTreeMap<String, String> = [("team".to_owned(), "risk".to_owned())].into();
        let none = BTreeMap::new();
        let m = |s: &str| Filter::parse(s, Over::Models).unwrap();
        let v = |s: &str| Filter::parse(s, Over::Versions).unwrap();
        assert!(m("").matches(&subject("x", &none)));
        assert_eq!(m("name = 'fraud'").pinned_name(), Some("fraud"));
        assert_eq!(m("name='fraud'").pinned_name(), Some("fraud"));
        assert!(m("name LIKE 'fra%'").matches(&subject("fraud", &none)));
        assert!(!m("name LIKE 'fra%'").matches(&subject("Fraud", &none)));
        assert!(m("name ILIKE '%AUD'").matches(&subject("fraud", &none)));
        assert!(!m("name ILIKE '%AUD'").matches(&subject("frauds", &none)));
        assert!(m("name like 'f_aud'").matches(&subject("fraud", &none)));
        // What the client sends for every model search.
        let client = m("name LIKE 'fra%' AND tag.`mlflow.prompt.is_prompt` != 'true'");
        assert!(client.matches(&subject("fraud", &none)) && !client.matches(&subject("churn", &none)));
        assert!(m("tags.team = 'risk'").matches(&subject("a", &tags)));
        assert!(m("tags.team = 'risk'").uses_tags() && !m("name = 'a'").uses_tags());
        assert!(!m("tags.team = 'risk'").matches(&subject("a", &none)));
        assert!(m("`tags`.`team` != 'ops' and name = 'a'").matches(&subject("a", &tags)));
        assert!(m("name = 'a AND b'").matches(&subject("a AND b", &none)), "AND inside quotes is a value");
        // Versions: run ids, sources, numbers, lists.
        assert!(v("run_id = 'r1'").matches(&subject("a", &none)));
        assert!(v("run_id IN ('r0', 'r1')").matches(&subject("a", &none)));
        assert!(!v("run_id NOT IN ('r0','r1')").matches(&subject("a", &none)));
        assert!(v("source_path LIKE 'models:/%'").matches(&subject("a", &none)));
        assert!(v("version_number >= 3 AND version_number < '4'").matches(&subject("a", &none)));
        assert!(!v("version_number > 3").matches(&subject("a", &none)));
        assert!(v("name = 'a' AND tags.team = 'risk'").matches(&subject("a", &tags)));
        for bad in ["run_id = 'x'", "name = fraud", "name > 'x'", "name", "tags.k IN ('a')", "version_number = 1"] {
            assert!(Filter::parse(bad, Over::Models).is_err(), "models: {bad}");
        }
        for bad in ["version_number LIKE '1'", "version_number = 'x'", "run_id > 'a'", "stage = 'x'", "tags. = 'a'"] {
            assert!(Filter::parse(bad, Over::Versions).is_err(), "versions: {bad}");
        }
    }

    #[test]
    fn orderings_follow_mlflow_and_refuse_unknown_columns() {
        let k = |name: &str, version: &str, created: i64, updated: i64| SortKey {
            name: name.into(),
            version: version.into(),
            created,
            updated,
        };
        let rows = [k("b", "2", 1, 5), k("a", "10", 2, 5), k("a", "9", 3, 7)];
        let sorted = |o: &OrderBy| {
            let mut r = rows.to_vec();
            r.sort_by(|x, y| o.cmp(x, y));
            r.iter().map(|x| format!("{}/{}", x.name, x.version)).collect::<Vec<_>>()
        };
        let versions = OrderBy::parse(&[], Over::Versions).unwrap();
        assert_eq!(sorted(&versions), ["a/9", "a/10", "b/2"], "newest update first, then name, then number desc");
        let by_number = OrderBy::parse(&["version_number ASC".into()], Over::Versions).unwrap();
        assert_eq!(sorted(&by_number), ["b/2", "a/9", "a/10"], "numbers as numbers");
        let models = OrderBy::parse(&["timestamp DESC".into()], Over::Models).unwrap();
        assert!(models.uses(Column::Created) && !models.uses(Column::Updated));
        assert_eq!(sorted(&models), ["a/9", "a/10", "b/2"]);
        assert!(OrderBy::parse(&["version_number".into()], Over::Models).is_err());
        assert!(OrderBy::parse(&["name SIDEWAYS".into()], Over::Models).is_err());
        assert!(OrderBy::parse(&["stage".into()], Over::Versions).is_err());
        assert_eq!(offset_of("").unwrap(), 0);
        assert_eq!(offset_of("40").unwrap(), 40);
        assert!(offset_of("abc").is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text: a filter or an order either parses or is refused with a reason; nothing
        /// panics, and a parsed filter can be evaluated.
        #[test]
        fn untrusted_text_never_panics(f in ".{0,200}", o in ".{0,60}") {
            for over in [Over::Models, Over::Versions] {
                if let Ok(parsed) = Filter::parse(&f, over) {
                    let tags = BTreeMap::new();
                    let _ = parsed.matches(&Subject { name: "n", tags: Some(&tags), ..Subject::default() });
                    let _ = parsed.pinned_name();
                }
                let _ = OrderBy::parse(std::slice::from_ref(&o), over);
            }
            let _ = offset_of(&o);
        }

        /// A quoted name compares equal to itself, and `LIKE` of a literal without wildcards is
        /// equality.
        #[test]
        fn quoted_names_match_themselves(name in "[a-zA-Z0-9 _.-]{1,40}") {
            let f = Filter::parse(&format!("name = '{name}'"), Over::Models).unwrap();
            let holds = f.matches(&Subject { name: &name, ..Subject::default() });
            prop_assert!(holds);
            prop_assert_eq!(f.pinned_name(), Some(name.as_str()));
            let literal = name.replace(['%', '_'], "");
            prop_assert!(like(&literal, &literal));
        }
    }
}
