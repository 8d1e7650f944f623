//! Fixtures and input mangling for the parsers' tests.

use super::Dependency;

pub(super) fn fixture(rel: &str) -> Vec<u8> {
    let path = format!(
        "{}/{rel}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/deps")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(super) fn fixture_text(rel: &str) -> String {
    String::from_utf8(fixture(rel)).unwrap()
}

/// The dependency's line exists and holds `needle`.
pub(super) fn assert_declared(text: &str, dep: &Dependency, needle: &str) {
    let line = usize::try_from(dep.line)
        .ok()
        .and_then(|n| text.lines().nth(n.checked_sub(1)?))
        .unwrap_or_else(|| panic!("{dep:?}: no such line"));
    assert!(
        line.contains(needle),
        "{dep:?}: line {line:?} lacks {needle:?}"
    );
}

fn next(seed: &mut u64) -> u64 {
    // xorshift64*: deterministic, so a failure reproduces.
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn below(seed: &mut u64, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (next(seed) % n as u64) as usize
    }
}

/// `original` damaged the way round `round` picks: truncated, bytes flipped, spans deleted or
/// repeated, syntax characters inserted, or random bytes.
pub(super) fn mangle(original: &[u8], seed: &mut u64, round: usize) -> Vec<u8> {
    const SYNTAX: [&[u8]; 18] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b"\\",
        b"\n",
        b"(",
        b")",
        b"=",
        b"==",
        b"=>",
        b"#",
        b"`",
        b",",
        b":",
        b"\\\n",
        b"\xc3\xa9",
    ];
    let mut v = original.to_vec();
    match round % 6 {
        0 => v.truncate(below(seed, v.len() + 1)),
        1 => {
            for _ in 0..=below(seed, 8) {
                let i = below(seed, v.len());
                if let Some(b) = v.get_mut(i) {
                    *b = (next(seed) % 128) as u8;
                }
            }
        }
        2 => {
            let a = below(seed, v.len() + 1);
            let b = (a + below(seed, 200)).min(v.len());
            v.drain(a..b);
        }
        3 => {
            let a = below(seed, v.len() + 1);
            let b = (a + below(seed, 400)).min(v.len());
            let copy = v[a..b].to_vec();
            let at = below(seed, v.len() + 1);
            v.splice(at..at, copy);
        }
        4 => {
            for _ in 0..=below(seed, 10) {
                let at = below(seed, v.len() + 1);
                let s = SYNTAX[below(seed, SYNTAX.len())];
                v.splice(at..at, s.iter().copied());
            }
        }
        _ => {
            const CHARS: &[u8] = b" \n\"{}[]()=<>~^!#;,:@/\\.-_`av019";
            v = (0..below(seed, 300))
                .map(|_| CHARS[below(seed, CHARS.len())])
                .collect();
        }
    }
    v
}
