//! Minder's `homoglyphs` evaluator checks over one added line of a pull request:
//! `invisible_characters` and `mixed_scripts`.
//!
//! Both use Unicode 18 data from maintained crates (`unicode-security` for UTS #39,
//! `unicode-script`, `unicode-properties`), not hand-written ranges. Work per call is linear in
//! the line, and nothing is allocated but the findings (at most one per char of the line).
//!
//! # `invisible_characters`
//!
//! A char is reported when any of these holds:
//! - it is Default_Ignorable: UTS #39 identifier type `Default_Ignorable` (soft hyphen, ZWSP,
//!   ZWNJ/ZWJ, bidi marks, word joiner, invisible operators, Hangul fillers, Khmer inherent
//!   vowels, variation selectors U+FE00–FE0F and U+E0100–E01EF, Mongolian FVS, tag characters
//!   U+E0020–E007F, ...). That table holds one type per char, so a few default-ignorables are
//!   typed otherwise there (U+206A–206F and U+E0001 are `Deprecated`); they are format
//!   characters and are caught by the next rule;
//! - its General_Category is Format (Cf): bidi embeddings/overrides U+202A–202E and isolates
//!   U+2066–2069 ("Trojan Source", missing from Minder's list), U+FEFF, U+061C, U+180E,
//!   interlinear annotation, Egyptian hieroglyph format controls, ...;
//! - its General_Category is Unassigned (Cn, as of Unicode 18; also the noncharacters): beyond
//!   Minder's check, but the unassigned default-ignorable code points (U+2065,
//!   U+FFF0–FFF8, U+E0000, U+E0002–E001F, U+E0080–E0FFF) must render as nothing and the UTS #39
//!   table has no type for them, and an unassigned code point in a diff is never legible anyway;
//! - it is White_Space (`char::is_whitespace`) other than ' ', '\t', '\n', '\r', '\x0B', '\x0C':
//!   NBSP, the U+2000–200A spaces, U+2028/2029, U+3000, U+0085, ...;
//! - it is one of the graphic characters that render blank but have no Unicode property saying
//!   so: U+2800 BRAILLE PATTERN BLANK and U+1D159 MUSICAL SYMBOL NULL NOTEHEAD (both in
//!   Minder's list; its other blank graphic characters, the Hangul fillers U+115F, U+1160,
//!   U+3164, U+FFA0, are Default_Ignorable).
//!
//! Exceptions, so that ordinary emoji in documentation pass:
//! - U+FE0F or U+FE0E directly after a non-ASCII emoji character (Emoji=Yes), or after an ASCII
//!   one (`0-9`, `#`, `*`) when U+20E3 COMBINING ENCLOSING KEYCAP follows (a keycap sequence);
//! - U+200D ZWJ between two non-ASCII emoji characters, allowing one U+FE0F before the ZWJ (an
//!   emoji ZWJ sequence such as 👨‍👩‍👧 or 🏳️‍🌈).
//!
//! Only one selector is excused per emoji: a run of variation selectors, or selectors after
//! other characters, are reported, as that is how payloads were hidden (the 2025 "GlassWorm"
//! attacks). Tag characters are always reported, though this also flags the three subdivision
//! flag emoji (England, Scotland, Wales), since tags are the "ASCII smuggling" channel. ZWNJ and
//! ZWJ are reported in Persian or Indic text too, as in Minder.
//!
//! # `mixed_scripts`
//!
//! As in Minder, the line is split into words at White_Space (Go's `strings.Fields` and
//! `str::split_whitespace` split at the same characters); punctuation stays in the word. A word
//! is reported when it is not single-script by UTS #39 (its resolved augmented script set, over
//! Script_Extensions, is empty). That ignores Common and Inherited (digits, punctuation,
//! combining marks, so "café" with U+0301 passes, where Minder counted Inherited as a script)
//! and treats Han with Hiragana/Katakana, Hangul or Bopomofo as one writing system. Unlike
//! UTS #39, characters of script Unknown (private use, unassigned) are left out of the test, as
//! Minder's script table leaves them out; unassigned ones are reported by the invisible check.
//! The finding lists the distinct Script values of the word's characters other than Common,
//! Inherited and Unknown, by full name, sorted.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};
use unicode_script::{Script, UnicodeScript};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::mixed_script::AugmentedScriptSet;
use unicode_security::GeneralSecurityProfile;

/// One of the evaluator's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    InvisibleCharacters,
    MixedScripts,
}

impl Check {
    /// The name in a rule type's `def` (`invisible_characters`, `mixed_scripts`).
    pub fn as_str(self) -> &'static str {
        match self {
            Check::InvisibleCharacters => "invisible_characters",
            Check::MixedScripts => "mixed_scripts",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A check name that is neither of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown homoglyphs check {0:?}: expected \"invisible_characters\" or \"mixed_scripts\"")]
pub struct UnknownCheck(pub String);

impl FromStr for Check {
    type Err = UnknownCheck;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "invisible_characters" => Ok(Check::InvisibleCharacters),
            "mixed_scripts" => Ok(Check::MixedScripts),
            other => Err(UnknownCheck(other.to_string())),
        }
    }
}

/// Something a check found in a line. Invisible characters set `code_point`; mixed scripts set
/// `word` and `scripts`; the fields a check does not set are left out of the serialized form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// 1-based column, in chars: of the invisible character, or of the word's first char.
    pub column: usize,
    /// The invisible character as `U+XXXX` (at least four hex digits, upper case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_point: Option<String>,
    /// The word that mixes scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub word: Option<String>,
    /// The scripts in the word, by full name ("Cyrillic", "Latin"), sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<&'static str>,
}

/// What `check` finds in `line`, in the order of the line.
pub fn find(check: Check, line: &str) -> Vec<Finding> {
    find_at_most(check, line, usize::MAX)
}

/// Like [`find`], stopping after `max` findings (a line of millions of zero-width spaces must
/// not become millions of findings).
pub fn find_at_most(check: Check, line: &str, max: usize) -> Vec<Finding> {
    match check {
        Check::InvisibleCharacters => invisible_characters(line, max),
        Check::MixedScripts => mixed_scripts(line, max),
    }
}

/// Graphic characters that render blank and that no Unicode property identifies.
const BLANK_GRAPHIC: [char; 2] = [
    '\u{2800}',  // BRAILLE PATTERN BLANK
    '\u{1D159}', // MUSICAL SYMBOL NULL NOTEHEAD
];

/// Whether `c` is reported, before the emoji and line-end exceptions. Control characters
/// (other than tab) are reported: an escape sequence or a carriage return mid-line rewrites
/// what a terminal shows. Private-use characters render as whatever a font puts there, and
/// have carried hidden payloads.
pub(crate) fn is_invisible(c: char) -> bool {
    c.identifier_type() == Some(IdentifierType::Default_Ignorable)
        || matches!(
            c.general_category(),
            GeneralCategory::Format | GeneralCategory::Unassigned | GeneralCategory::PrivateUse
        )
        || (c.is_control() && c != '\t')
        || (c.is_whitespace() && !matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}'))
        || BLANK_GRAPHIC.contains(&c)
}

/// An emoji character that may carry a presentation selector or join an emoji ZWJ sequence.
fn is_non_ascii_emoji(c: Option<char>) -> bool {
    c.is_some_and(|c| !c.is_ascii() && c.is_emoji_char())
}

fn invisible_characters(line: &str, max: usize) -> Vec<Finding> {
    let mut found = Vec::new();
    // The two chars before the current one, and the ones after it.
    let (mut before, mut prev): (Option<char>, Option<char>) = (None, None);
    let mut chars = line.chars().peekable();
    let mut column = 0;
    while let Some(c) = chars.next() {
        column += 1;
        if is_invisible(c) {
            let next = chars.peek().copied();
            let excused = match c {
                '\u{FE0E}' | '\u{FE0F}' => {
                    is_non_ascii_emoji(prev)
                        || (prev.is_some_and(|p| p.is_ascii() && p.is_emoji_char())
                            && next == Some('\u{20E3}'))
                }
                '\u{200D}' => {
                    let left = if prev == Some('\u{FE0F}') {
                        before
                    } else {
                        prev
                    };
                    is_non_ascii_emoji(left) && is_non_ascii_emoji(next)
                }
                // A CRLF line ending.
                '\r' => next.is_none(),
                _ => false,
            };
            if !excused {
                if found.len() >= max {
                    break;
                }
                found.push(Finding {
                    column,
                    code_point: Some(format!("U+{:04X}", u32::from(c))),
                    word: None,
                    scripts: Vec::new(),
                });
            }
        }
        before = prev;
        prev = Some(c);
    }
    found
}

fn mixed_scripts(line: &str, max: usize) -> Vec<Finding> {
    let mut found = Vec::new();
    // Byte offset and column of the current word's first char.
    let mut start: Option<(usize, usize)> = None;
    let mut column = 0;
    for (offset, c) in line.char_indices() {
        column += 1;
        if found.len() >= max {
            return found;
        }
        if c.is_whitespace() {
            if let Some((from, at)) = start.take() {
                check_word(&line[from..offset], at, &mut found);
            }
        } else if start.is_none() {
            start = Some((offset, column));
        }
    }
    if let Some((from, at)) = start {
        if found.len() < max {
            check_word(&line[from..], at, &mut found);
        }
    }
    found
}

fn check_word(word: &str, column: usize, found: &mut Vec<Finding>) {
    // UTS #39's resolved script set (`MixedScript::is_single_script`), leaving out Unknown.
    let mut set = AugmentedScriptSet::default();
    for c in word.chars().filter(|c| c.script() != Script::Unknown) {
        set.intersect_with(AugmentedScriptSet::for_char(c));
    }
    if !set.is_empty() {
        return;
    }
    let mut scripts: Vec<&'static str> = word
        .chars()
        .map(|c| c.script())
        .filter(|s| !matches!(s, Script::Common | Script::Inherited | Script::Unknown))
        .map(Script::full_name)
        .collect();
    scripts.sort_unstable();
    scripts.dedup();
    found.push(Finding {
        column,
        code_point: None,
        word: Some(word.to_string()),
        scripts,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_security::MixedScript;

    fn invisible(line: &str) -> Vec<(usize, String)> {
        find(Check::InvisibleCharacters, line)
            .into_iter()
            .map(|f| (f.column, f.code_point.unwrap_or_default()))
            .collect()
    }

    fn mixed(line: &str) -> Vec<(String, Vec<&'static str>)> {
        find(Check::MixedScripts, line)
            .into_iter()
            .map(|f| (f.word.unwrap_or_default(), f.scripts))
            .collect()
    }

    /// The code points of Minder's `InvisibleCharacters`, from
    /// internal/engine/eval/homoglyphs/domain/resources/invisible_characters_dictionary.go in
    /// mindersec/minder (Copyright 2023 The Minder Authors, Apache-2.0).
    const MINDER_INVISIBLE: [u32; 52] = [
        0x00A0, 0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x2000, 0x2001,
        0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x200B, 0x200C,
        0x200D, 0x200E, 0x200F, 0x202F, 0x205F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0x206A,
        0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0x3000, 0x2800, 0x3164, 0xFEFF, 0xFFA0, 0x1D159,
        0x1D173, 0x1D174, 0x1D175, 0x1D176, 0x1D177, 0x1D178, 0x1D179, 0x1D17A,
    ];

    #[test]
    fn check_names() {
        assert_eq!(
            "invisible_characters".parse::<Check>(),
            Ok(Check::InvisibleCharacters)
        );
        assert_eq!("mixed_scripts".parse::<Check>(), Ok(Check::MixedScripts));
        let err = "homoglyphs".parse::<Check>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown homoglyphs check \"homoglyphs\": expected \"invisible_characters\" or \
             \"mixed_scripts\""
        );
        assert_eq!(Check::MixedScripts.to_string(), "mixed_scripts");
    }

    #[test]
    fn minder_invisible_characters_are_all_reported() {
        for cp in MINDER_INVISIBLE {
            let c = char::from_u32(cp).unwrap();
            // Between letters, so no emoji exception can apply.
            let line = format!("a{c}b");
            assert_eq!(
                invisible(&line),
                vec![(2, format!("U+{cp:04X}"))],
                "U+{cp:04X}"
            );
        }
    }

    #[test]
    fn what_the_uts39_table_says_for_tags_and_selectors() {
        use IdentifierType::{Default_Ignorable, Deprecated};
        let ty = |cp: u32| char::from_u32(cp).and_then(|c| c.identifier_type());
        // Tags: U+E0001 LANGUAGE TAG is typed Deprecated, U+E0020–E007F Default_Ignorable,
        // U+E0000 and U+E0002–E001F are unassigned (no type).
        assert_eq!(ty(0xE0001), Some(Deprecated));
        assert!((0xE0020..=0xE007F).all(|cp| ty(cp) == Some(Default_Ignorable)));
        assert!((0xE0002..=0xE001F)
            .chain([0xE0000])
            .all(|cp| ty(cp).is_none()));
        // Variation selectors (and the Mongolian free variation selectors): Default_Ignorable.
        assert!((0xFE00..=0xFE0F)
            .chain(0xE0100..=0xE01EF)
            .chain([0x180B, 0x180C, 0x180D, 0x180F])
            .all(|cp| ty(cp) == Some(Default_Ignorable)));
        // U+206A–206F: Deprecated in this table, found as format characters instead.
        assert!((0x206A..=0x206F).all(|cp| ty(cp) == Some(Deprecated)));
    }

    #[test]
    fn tags_selectors_and_unassigned_default_ignorables_are_reported() {
        for cp in (0xE0000..=0xE007F)
            .chain(0xFE00..=0xFE0F)
            .chain(0xE0100..=0xE01EF)
            .chain([0x2065, 0xFFF0, 0xE0FFF, 0x180B, 0x180F])
        {
            let c = char::from_u32(cp).unwrap();
            assert_eq!(invisible(&format!("a{c}b")).len(), 1, "U+{cp:04X}");
        }
    }

    #[test]
    fn trojan_source_bidi_controls_are_reported() {
        for c in ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'] {
            assert_eq!(invisible(&format!("x{c}")).len(), 1, "{:X}", u32::from(c));
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert_eq!(invisible(&format!("x{c}")).len(), 1, "{:X}", u32::from(c));
        }
        let line =
            "if access_level != \"user\u{202E} \u{2066}// Check if admin\u{2069} \u{2066}\" {";
        assert_eq!(
            invisible(line),
            vec![
                (25, "U+202E".to_string()),
                (27, "U+2066".to_string()),
                (45, "U+2069".to_string()),
                (47, "U+2066".to_string()),
            ]
        );
    }

    #[test]
    fn ordinary_emoji_are_not_reported() {
        for s in [
            "👍🏽",
            "❤️",
            "👨‍👩‍👧",
            "🏳️‍🌈",
            "❤️‍🔥",
            "👨🏽‍💻",
            "1️⃣",
            "#️⃣",
            "☺︎",
            "Great work ❤️ — ship it 👍🏽!",
        ] {
            assert_eq!(invisible(s), vec![], "{s:?}");
        }
    }

    #[test]
    fn selectors_and_joiners_outside_emoji_are_reported() {
        assert_eq!(invisible("a\u{FE0F}"), vec![(2, "U+FE0F".to_string())]);
        assert_eq!(
            invisible("\u{FE00}\u{FE01}"),
            vec![(1, "U+FE00".to_string()), (2, "U+FE01".to_string())]
        );
        // Only one selector is excused after an emoji.
        assert_eq!(
            invisible("❤\u{FE0F}\u{FE0F}"),
            vec![(3, "U+FE0F".to_string())]
        );
        // A non-presentation selector after an emoji.
        assert_eq!(invisible("❤\u{FE01}"), vec![(2, "U+FE01".to_string())]);
        // After an ASCII digit, only in a keycap sequence.
        assert_eq!(invisible("1\u{FE0F}"), vec![(2, "U+FE0F".to_string())]);
        // GlassWorm-style payload: a run of selectors after ASCII.
        assert_eq!(invisible("x\u{E0100}\u{E0101}\u{FE05}").len(), 3);
        // ZWJ next to anything but two emoji.
        assert_eq!(invisible("a\u{200D}b"), vec![(2, "U+200D".to_string())]);
        assert_eq!(invisible("👍\u{200D}a"), vec![(2, "U+200D".to_string())]);
        assert_eq!(invisible("1\u{200D}2"), vec![(2, "U+200D".to_string())]);
        assert_eq!(invisible("👍\u{200D}\u{200D}👍").len(), 2);
        // Tags after a flag are still reported (ASCII smuggling).
        assert_eq!(invisible("🏴\u{E0067}\u{E0062}\u{E007F}").len(), 3);
    }

    #[test]
    fn ordinary_text_is_not_reported() {
        for s in [
            "",
            "fn main() {\tprintln!(\"hello\");\r",
            "naïve café, São Paulo, Zürich, ½ ≠ ∞",
            "cafe\u{0301}",
            "日本語のテキスト、中文、한국어",
            "Ελληνικά Русский עברית العربية हिन्दी",
        ] {
            assert_eq!(invisible(s), vec![], "{s:?}");
        }
    }

    #[test]
    fn other_invisible_whitespace_and_blanks_are_reported() {
        for c in [
            '\u{0085}',
            '\u{1680}',
            '\u{2028}',
            '\u{2029}',
            '\u{2800}',
            '\u{1D159}',
        ] {
            assert_eq!(invisible(&format!("a{c}b")).len(), 1, "{:X}", u32::from(c));
        }
        // Columns count chars, not bytes.
        assert_eq!(invisible("日本\u{200B}語"), vec![(3, "U+200B".to_string())]);
    }

    #[test]
    fn controls_private_use_and_a_mid_line_carriage_return_are_reported() {
        // ESC (an ANSI sequence), BS, DEL, NUL, a C1 control, form feed, private use.
        for c in [
            '\u{1B}',
            '\u{8}',
            '\u{7F}',
            '\u{0}',
            '\u{85}',
            '\u{C}',
            '\u{E000}',
            '\u{F0001}',
        ] {
            assert_eq!(
                invisible(&format!("a{c}b")).len(),
                1,
                "U+{:04X}",
                u32::from(c)
            );
        }
        // A carriage return mid-line hides what came before it on a terminal; at the end it is
        // a CRLF line ending.
        assert_eq!(
            invisible("safe();\rrm -rf /;"),
            vec![(8, "U+000D".to_string())]
        );
        assert!(invisible("ok();\r").is_empty());
        assert!(invisible("\tindented").is_empty());
    }

    #[test]
    fn findings_stop_at_the_cap() {
        let line = "\u{200B}".repeat(10_000);
        assert_eq!(find_at_most(Check::InvisibleCharacters, &line, 7).len(), 7);
        let words = "pаypal ".repeat(1_000);
        assert_eq!(find_at_most(Check::MixedScripts, &words, 3).len(), 3);
        assert_eq!(find(Check::MixedScripts, &words).len(), 1_000);
    }

    #[test]
    fn mixed_scripts_are_reported() {
        assert_eq!(
            mixed("pаypal"),
            vec![("pаypal".to_string(), vec!["Cyrillic", "Latin"])]
        );
        assert_eq!(
            mixed("visit gοogle.com today"),
            vec![("gοogle.com".to_string(), vec!["Greek", "Latin"])]
        );
        let found = find(Check::MixedScripts, "  x pаypal");
        assert_eq!(found[0].column, 5);
    }

    #[test]
    fn single_script_words_are_not_reported() {
        for s in [
            "hello world",
            "café",
            "cafe\u{0301}",
            "日本語のテキスト",
            "Русский",
            "한국어 漢字한글",
            "注音ㄅㄆㄇ",
            "x1 = y2 + 3; // ok!",
            "\u{E000}abc",
            "",
            "   ",
        ] {
            assert_eq!(mixed(s), vec![], "{s:?}");
        }
        // The same decisions as UTS #39's own test, apart from Unknown.
        for w in ["pаypal", "gοogle", "café", "日本語のテキスト", "Русский"] {
            assert_eq!(mixed(w).is_empty(), w.is_single_script(), "{w:?}");
        }
    }

    #[test]
    fn findings_serialize_with_only_their_fields() {
        let inv = find(Check::InvisibleCharacters, "a\u{200B}");
        assert_eq!(
            serde_json::to_value(&inv).unwrap(),
            serde_json::json!([{"column": 2, "code_point": "U+200B"}])
        );
        let mix = find(Check::MixedScripts, "pаypal");
        assert_eq!(
            serde_json::to_value(&mix).unwrap(),
            serde_json::json!([{"column": 1, "word": "pаypal", "scripts": ["Cyrillic", "Latin"]}])
        );
    }

    #[test]
    fn random_lines_never_panic() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..5_000 {
            let mut line = String::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if let Some(c) = char::from_u32((x % 0x11_0000) as u32) {
                    line.push(c);
                }
            }
            for check in [Check::InvisibleCharacters, Check::MixedScripts] {
                let n = find(check, &line).len();
                assert!(n <= line.chars().count());
            }
        }
    }
}
