//! Version ordering for OSV `ranges`, and whether a version falls inside one.
//!
//! What is supported (anything else is not evaluated, so only an exact match in
//! `affected[].versions` makes such a version affected):
//!
//! - `SEMVER` ranges, in any ecosystem: SemVer 2.0 with the `semver` crate. A leading `v` is
//!   dropped (Go writes `v1.2.3`) and a short core is padded (`1.2` is `1.2.0`).
//! - `ECOSYSTEM` ranges of `npm`, `crates.io` and `Go`: the same SemVer ordering, which is what
//!   those ecosystems use.
//! - `ECOSYSTEM` ranges of `PyPI`: PEP 440 ordering (epoch, release, `a`/`b`/`rc` pre-releases
//!   with their spelling variants, `.post`, `.dev`, local versions), see [`Pep440`].
//! - `GIT` ranges are ignored (the simulator does not know commit graphs), and so are
//!   `ECOSYSTEM` ranges of other ecosystems.
//!
//! An ecosystem with a suffix (`Debian:12`) is judged by its base name.

use std::cmp::Ordering;

/// How the versions of a range compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Semver,
    Pep440,
}

/// The ordering for a range of `range_type` in `ecosystem`; `None` when it is not evaluated.
pub fn scheme_for(range_type: &str, ecosystem: &str) -> Option<Scheme> {
    let base = ecosystem.split(':').next().unwrap_or(ecosystem);
    match (range_type, base) {
        ("SEMVER", _) => Some(Scheme::Semver),
        ("ECOSYSTEM", "npm" | "crates.io" | "Go") => Some(Scheme::Semver),
        ("ECOSYSTEM", "PyPI") => Some(Scheme::Pep440),
        _ => None,
    }
}

/// A parsed version of one scheme.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Semver(semver::Version),
    Pep440(Pep440),
}

/// Parses `v` under `scheme`; `None` when it is not a version of that scheme.
pub fn parse(scheme: Scheme, v: &str) -> Option<Key> {
    match scheme {
        Scheme::Semver => parse_semver(v).map(Key::Semver),
        Scheme::Pep440 => Pep440::parse(v).map(Key::Pep440),
    }
}

/// SemVer, leniently: a leading `v` dropped, a core of one or two numbers padded with zeros.
pub fn parse_semver(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let parts = core.split('.').count();
    if core.is_empty() || parts >= 3 {
        return None;
    }
    let padded = format!("{core}{}{rest}", ".0".repeat(3 - parts));
    semver::Version::parse(&padded).ok()
}

/// Whether `version` is inside a range with `events` (`introduced`, `fixed`, `last_affected`;
/// `limit` is ignored), as the OSV schema's evaluation algorithm has it: events sorted by
/// version, `introduced: "0"` first. `None` when a version cannot be parsed under `scheme`.
pub fn in_range(scheme: Scheme, version: &str, events: &[Event]) -> Option<bool> {
    let v = parse(scheme, version)?;
    let mut parsed = Vec::with_capacity(events.len());
    for e in events {
        let key = match e {
            Event::Introduced(s) if s == "0" => None,
            Event::Introduced(s) | Event::Fixed(s) | Event::LastAffected(s) => {
                Some(parse(scheme, s)?)
            }
        };
        parsed.push((key, e));
    }
    // `None` (the "0" introduced) sorts first.
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut affected = false;
    for (key, event) in parsed {
        match (event, key) {
            (Event::Introduced(_), None) => affected = true,
            (Event::Introduced(_), Some(k)) if v >= k => affected = true,
            (Event::Fixed(_), Some(k)) if v >= k => affected = false,
            (Event::LastAffected(_), Some(k)) if v > k => affected = false,
            _ => {}
        }
    }
    Some(affected)
}

/// One event of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
}

/// A PEP 440 version, ordered as PEP 440 (and `packaging`) order them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440 {
    epoch: u64,
    /// Release numbers, trailing zeros removed (`1.0` equals `1`).
    release: Vec<u64>,
    /// (phase, number): phase 0 `a`, 1 `b`, 2 `rc`.
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Option<Vec<LocalSegment>>,
}

/// A segment of a local version label: alphanumeric segments sort before numeric ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalSegment {
    Text(String),
    Number(u64),
}

impl Pep440 {
    /// Parses a version in any spelling PEP 440 normalizes (case, `v` prefix, separators,
    /// `alpha`/`beta`/`c`/`pre`/`preview`, `rev`/`r`, implicit numbers, `-N` post releases).
    pub fn parse(input: &str) -> Option<Pep440> {
        let lower = input.trim().to_ascii_lowercase();
        let s = lower.strip_prefix('v').unwrap_or(&lower);
        let (s, local) = match s.split_once('+') {
            Some((head, label)) => (head, Some(parse_local(label)?)),
            None => (s, None),
        };
        let mut c = Cursor {
            s: s.as_bytes(),
            i: 0,
        };
        let mut epoch = 0;
        let first = c.number()?;
        let mut release = vec![first];
        if c.eat("!") {
            epoch = first;
            release = vec![c.number()?];
        }
        while c.peek() == Some(b'.') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            c.i += 1;
            release.push(c.number()?);
        }
        let pre = {
            let save = c.i;
            c.separator();
            let phase = [
                ("alpha", 0),
                ("beta", 1),
                ("preview", 2),
                ("pre", 2),
                ("rc", 2),
                ("a", 0),
                ("b", 1),
                ("c", 2),
            ]
            .into_iter()
            .find(|(word, _)| c.eat(word));
            match phase {
                Some((_, phase)) => {
                    c.separator();
                    Some((phase, c.number().unwrap_or(0)))
                }
                None => {
                    c.i = save;
                    None
                }
            }
        };
        let post = {
            let save = c.i;
            if c.peek() == Some(b'-') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
                c.i += 1;
                c.number()
            } else {
                c.separator();
                if ["post", "rev", "r"].into_iter().any(|w| c.eat(w)) {
                    c.separator();
                    Some(c.number().unwrap_or(0))
                } else {
                    c.i = save;
                    None
                }
            }
        };
        let dev = {
            let save = c.i;
            c.separator();
            if c.eat("dev") {
                c.separator();
                Some(c.number().unwrap_or(0))
            } else {
                c.i = save;
                None
            }
        };
        if c.i != c.s.len() {
            return None;
        }
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        Some(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// `packaging`'s comparison key.
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        u64,
        &[u64],
        (i8, u8, u64),
        (u8, u64),
        (u8, u64),
        Option<&[LocalSegment]>,
    ) {
        let pre = match (self.pre, self.post, self.dev) {
            // A dev release of a final version sorts before its pre-releases.
            (None, None, Some(_)) => (-1, 0, 0),
            (None, _, _) => (1, 0, 0),
            (Some((phase, n)), _, _) => (0, phase, n),
        };
        let post = self.post.map_or((0, 0), |n| (1, n));
        let dev = self.dev.map_or((1, 0), |n| (0, n));
        (
            self.epoch,
            &self.release,
            pre,
            post,
            dev,
            self.local.as_deref(),
        )
    }
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn parse_local(label: &str) -> Option<Vec<LocalSegment>> {
    label
        .split(['.', '-', '_'])
        .map(|seg| {
            if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                None
            } else if seg.bytes().all(|b| b.is_ascii_digit()) {
                seg.parse().ok().map(LocalSegment::Number)
            } else {
                Some(LocalSegment::Text(seg.to_string()))
            }
        })
        .collect()
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.s.get(self.i + n).copied()
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .filter(|d| !d.is_empty())?
            .parse()
            .ok()
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn separator(&mut self) {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pep(v: &str) -> Pep440 {
        Pep440::parse(v).unwrap_or_else(|| panic!("{v} parses"))
    }

    #[test]
    fn pep440_orders_as_the_spec_does() {
        let ordered = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0b2",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+5",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.1",
            "1.10",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            assert!(pep(pair[0]) < pep(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(pep("1.0"), pep("1.0.0"));
        assert_eq!(pep("1.0-alpha.1"), pep("1.0a1"));
        assert_eq!(pep("1.0c1"), pep("1.0rc1"));
        assert_eq!(pep("1.0-1"), pep("1.0.post1"));
        assert_eq!(pep("V2.0.DEV"), pep("2.0.dev0"));
        assert!(Pep440::parse("not-a-version").is_none());
        assert!(Pep440::parse("1.0x").is_none());
    }

    #[test]
    fn semver_is_lenient_about_prefix_and_short_cores() {
        assert_eq!(parse_semver("v1.2.3"), parse_semver("1.2.3"));
        assert_eq!(parse_semver("1.2"), parse_semver("1.2.0"));
        assert_eq!(parse_semver("1-rc.1"), parse_semver("1.0.0-rc.1"));
        assert!(parse_semver("1.2.3.4").is_none());
        assert!(parse_semver("").is_none());
    }

    #[test]
    fn ranges_follow_the_schema_algorithm() {
        let ev = |i: &str, f: &str| {
            vec![
                Event::Introduced(i.to_string()),
                Event::Fixed(f.to_string()),
            ]
        };
        let s = Scheme::Semver;
        assert_eq!(in_range(s, "4.17.20", &ev("0", "4.17.21")), Some(true));
        assert_eq!(in_range(s, "4.17.21", &ev("0", "4.17.21")), Some(false));
        assert_eq!(in_range(s, "1.0.0", &ev("2.0.0", "3.0.0")), Some(false));
        // Two ranges in one event list.
        let two = [
            Event::Introduced("1.0.0".into()),
            Event::Fixed("1.2.0".into()),
            Event::Introduced("2.0.0".into()),
            Event::Fixed("2.1.0".into()),
        ];
        assert_eq!(in_range(s, "1.5.0", &two), Some(false));
        assert_eq!(in_range(s, "2.0.5", &two), Some(true));
        let last = [
            Event::Introduced("0".into()),
            Event::LastAffected("1.4.0".into()),
        ];
        assert_eq!(in_range(s, "1.4.0", &last), Some(true));
        assert_eq!(in_range(s, "1.4.1", &last), Some(false));
        assert_eq!(in_range(s, "garbage", &last), None);
        let p = Scheme::Pep440;
        assert_eq!(in_range(p, "2.0rc1", &ev("1.0", "2.0")), Some(true));
        assert_eq!(in_range(p, "2.0", &ev("1.0", "2.0")), Some(false));
        assert_eq!(scheme_for("ECOSYSTEM", "Debian:12"), None);
        assert_eq!(scheme_for("GIT", "npm"), None);
        assert_eq!(scheme_for("ECOSYSTEM", "PyPI"), Some(Scheme::Pep440));
    }
}
