//! Profile selectors: a strict subset of CEL evaluated over JSON values.
//!
//! Minder profiles restrict the entities they apply to with `selection:` entries, each an entity
//! kind and a [CEL](https://github.com/google/cel-spec) expression over that entity, e.g.
//! `repository.is_fork != true && repository.name.startsWith('stacklok/')`. A [`Selector`] is
//! parsed once and evaluated many times against a JSON object whose top-level keys are the CEL
//! variables (`{"repository": {"name": "owner/repo", "is_private": false, "is_fork": false,
//! "properties": {...}, "labels": [...]}}`; the caller builds it). A [`Selection`] is a
//! profile's whole list: an entity is selected when every selector for its kind matches.
//!
//! # Supported CEL
//!
//! * Literals: `'…'`, `"…"`, `'''…'''`, `"""…"""` with CEL escapes (`\n`, `\t`, `\\`, `\'`,
//!   `\xHH`, `\uHHHH`, `\UHHHHHHHH`, `\ooo`, …); raw strings `r'…'`; ints (decimal and `0x`
//!   hex); doubles (`1.5`, `.5`, `1e3`); `true`, `false`, `null`; lists `[a, b]`; maps with
//!   string keys `{'k': v}`. `//` comments.
//! * Variables (`repository`, or `.repository` to skip comprehension variables), member access
//!   `a.b`, indexing `a['k']` and `a[0]`.
//! * Operators, by increasing precedence: `c ? a : b`; `||`; `&&`; `== != < <= > >= in`;
//!   `+ -`; `* / %`; unary `!` and `-`.
//! * Methods: `s.startsWith(p)`, `s.endsWith(p)`, `s.contains(p)`, `x.size()`; macros
//!   `l.all(x, p)`, `l.exists(x, p)`, `l.exists_one(x, p)`, `l.filter(x, p)`, `l.map(x, e)`,
//!   `l.map(x, p, e)` (over a map they range over its keys); `has(a.b)`.
//! * Functions: `size(x)`, `int(x)`, `double(x)`, `string(x)`, `dyn(x)`.
//!
//! Unknown functions, wrong argument counts and unsupported syntax (bytes literals, message
//! construction, `matches()`) are parse errors, so a profile using them is rejected when it is
//! compiled rather than when it is first applied.
//!
//! # Semantics (as in CEL)
//!
//! * A missing map key, by member access or index, is an error (`no such key: x`); `has(a.b)`
//!   tests for the key instead (the operand `a` itself must exist and be a map).
//! * `==`/`!=` never fail: values of different types are unequal, numbers compare by value
//!   across int and double (`1 == 1.0`), lists and maps compare element-wise.
//! * Ordering works on numbers (across int and double), strings and bools; anything else is an
//!   error (`1 < 'a'`).
//! * Arithmetic does not mix types (`1 + 1.5` is an error); int overflow, division and modulus
//!   by zero are errors; `+` also concatenates strings and lists.
//! * `&&` and `||` are commutative about errors: `false && <error>` and `<error> && false` are
//!   both `false`, likewise `true || <error>`. `all`/`exists` absorb errors the same way.
//! * `x in list` is list membership (by `==`); `k in map` tests for a key.
//! * `size()` of a string counts code points.
//!
//! # Deviations
//!
//! * Values are JSON, so there is no separate uint type: `5u` reads as the int 5, and only JSON
//!   integers above `i64::MAX` behave as uints. Doubles must stay finite (an infinite or NaN
//!   result, e.g. `1.0 / 0.0`, is an error). There are no bytes, durations or timestamps.
//! * Nothing is type-checked before evaluation, so a misspelt variable or field is found when
//!   the selector runs, as an evaluation error.

use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;

/// The entity kinds a selection entry may name. An entry with an empty kind applies to every
/// entity (Minder: "if the entity type is omitted, the selector will be applied to all
/// entities").
pub const ENTITY_KINDS: [&str; 4] = ["repository", "pull_request", "artifact", "release"];

/// The deepest expression tree accepted; keeps parsing, evaluation and dropping bounded.
const MAX_DEPTH: usize = 250;
/// The deepest nesting of parentheses, brackets and call arguments accepted while parsing.
const MAX_NESTING: usize = 100;

/// Words CEL reserves: not usable as identifiers or field names.
const RESERVED: [&str; 21] = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "namespace",
    "null",
    "package",
    "return",
    "true",
    "var",
    "void",
    "while",
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// The expression is malformed or uses CEL this evaluator does not support; `pos` is a byte
    /// offset into the selector's source.
    #[error("selector parse error at {pos}: {msg}")]
    Parse { pos: usize, msg: String },
    /// Evaluation failed: missing key, type mismatch, overflow, non-bool result, ...
    #[error("selector evaluation error: {0}")]
    Eval(String),
}

fn perr<T>(pos: usize, msg: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError::Parse {
        pos,
        msg: msg.into(),
    })
}

fn eerr<T>(msg: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError::Eval(msg.into()))
}

// ------------------------------------------------------------------------------------------------
// Public API

/// One compiled CEL selector expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    source: String,
    expr: Expr,
}

impl Selector {
    /// Parses a selector expression.
    pub fn parse(src: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser {
            toks: lex(src)?,
            at: 0,
            nesting: 0,
            end: src.len(),
        };
        let (expr, _) = parser.parse_expr()?;
        if !matches!(parser.peek(), Tok::Eof) {
            return perr(
                parser.pos(),
                format!(
                    "unexpected {} after the expression",
                    parser.peek().describe()
                ),
            );
        }
        Ok(Selector {
            source: src.to_string(),
            expr,
        })
    }

    /// Whether the selector matches. `vars` is a JSON object whose top-level keys are the CEL
    /// variables (e.g. `{"repository": {...}}`). A result that is not a bool is an error.
    pub fn matches(&self, vars: &Value) -> Result<bool, SelectorError> {
        let Value::Object(vars) = vars else {
            return eerr("selector variables must be a JSON object");
        };
        let mut env = Env {
            vars,
            locals: Vec::new(),
        };
        match &*env.eval(&self.expr)? {
            Value::Bool(b) => Ok(*b),
            other => eerr(format!(
                "selector must evaluate to a bool, got {}",
                type_name(other)
            )),
        }
    }

    /// Evaluates the expression to whatever value it produces (for diagnostics and tests).
    pub fn evaluate(&self, vars: &Value) -> Result<Value, SelectorError> {
        let Value::Object(vars) = vars else {
            return eerr("selector variables must be a JSON object");
        };
        let mut env = Env {
            vars,
            locals: Vec::new(),
        };
        env.eval(&self.expr).map(Cow::into_owned)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// A profile's `selection:` list, compiled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// (entity kind, selector); an empty kind applies to every entity.
    entries: Vec<(String, Selector)>,
}

impl Selection {
    /// Compiles `(entity kind, selector)` entries. The kind must be one of [`ENTITY_KINDS`] or
    /// empty (every entity). Errors name the failing entry by its index.
    pub fn compile(entries: &[(String, String)]) -> Result<Selection, SelectorError> {
        let mut compiled = Vec::with_capacity(entries.len());
        for (n, (kind, src)) in entries.iter().enumerate() {
            if !kind.is_empty() && !ENTITY_KINDS.contains(&kind.as_str()) {
                return perr(
                    0,
                    format!(
                        "selection entry {n}: unknown entity kind {kind:?} (expected one of {})",
                        ENTITY_KINDS.join(", ")
                    ),
                );
            }
            let selector = Selector::parse(src).map_err(|e| match e {
                SelectorError::Parse { pos, msg } => SelectorError::Parse {
                    pos,
                    msg: format!("selection entry {n} ({}): {msg}", kind_label(kind)),
                },
                other => other,
            })?;
            compiled.push((kind.clone(), selector));
        }
        Ok(Selection { entries: compiled })
    }

    /// Whether an entity of `entity_kind` with variables `vars` is selected: every selector for
    /// that kind (and every kind-less one) must match, as in Minder. No selectors: `true`.
    /// Selectors run in order and stop at the first that does not match.
    pub fn matches(&self, entity_kind: &str, vars: &Value) -> Result<bool, SelectorError> {
        for (n, (kind, selector)) in self.entries.iter().enumerate() {
            if !kind.is_empty() && kind != entity_kind {
                continue;
            }
            let matched = selector.matches(vars).map_err(|e| match e {
                SelectorError::Eval(msg) => SelectorError::Eval(format!(
                    "selection entry {n} ({}): {msg}",
                    kind_label(kind)
                )),
                other => other,
            })?;
            if !matched {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether there are no selectors at all (the profile applies to every entity).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The compiled entries, as (entity kind, selector).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Selector)> {
        self.entries.iter().map(|(k, s)| (k.as_str(), s))
    }
}

fn kind_label(kind: &str) -> &str {
    if kind.is_empty() {
        "any entity"
    } else {
        kind
    }
}

// ------------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Mul,
    Div,
    Rem,
    Add,
    Sub,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    In,
}

impl BinOp {
    fn from_symbol(s: &str) -> Option<BinOp> {
        Some(match s {
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Rem,
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "in" => BinOp::In,
            _ => return None,
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::In => "in",
        }
    }
}

/// Built-in functions. Methods take their receiver as the first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Size,
    Contains,
    StartsWith,
    EndsWith,
    Int,
    Double,
    String,
    Dyn,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Size => "size",
            Func::Contains => "contains",
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::Int => "int",
            Func::Double => "double",
            Func::String => "string",
            Func::Dyn => "dyn",
        }
    }

    /// Resolves `receiver.name(<argc arguments>)`.
    fn method(name: &str, argc: usize) -> Result<Func, String> {
        let (func, want) = match name {
            "size" => (Func::Size, 0),
            "contains" => (Func::Contains, 1),
            "startsWith" => (Func::StartsWith, 1),
            "endsWith" => (Func::EndsWith, 1),
            "matches" => return Err("matches() is not supported".into()),
            "all" | "exists" | "exists_one" | "filter" => {
                return Err(format!(
                    "{name}() takes 2 arguments: a variable name and an expression"
                ))
            }
            "map" => {
                return Err(
                    "map() takes 2 or 3 arguments: a variable name, [a filter,] an expression"
                        .into(),
                )
            }
            _ => return Err(format!("unknown method {name}()")),
        };
        if argc != want {
            return Err(format!("{name}() takes {want} argument(s), got {argc}"));
        }
        Ok(func)
    }

    /// Resolves `name(<argc arguments>)`.
    fn global(name: &str, argc: usize) -> Result<Func, String> {
        let func = match name {
            "size" => Func::Size,
            "int" => Func::Int,
            "double" => Func::Double,
            "string" => Func::String,
            "dyn" => Func::Dyn,
            "matches" => return Err("matches() is not supported".into()),
            _ => return Err(format!("unknown function {name}()")),
        };
        if argc != 1 {
            return Err(format!("{name}() takes 1 argument, got {argc}"));
        }
        Ok(func)
    }
}

/// Comprehension macros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MacroKind {
    All,
    Exists,
    ExistsOne,
    Filter,
    Map,
}

impl MacroKind {
    /// The macro `receiver.name(...)` with `argc` arguments expands to, if any.
    fn from_call(name: &str, argc: usize) -> Option<MacroKind> {
        match (name, argc) {
            ("all", 2) => Some(MacroKind::All),
            ("exists", 2) => Some(MacroKind::Exists),
            ("exists_one", 2) => Some(MacroKind::ExistsOne),
            ("filter", 2) => Some(MacroKind::Filter),
            ("map", 2 | 3) => Some(MacroKind::Map),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MacroKind::All => "all",
            MacroKind::Exists => "exists",
            MacroKind::ExistsOne => "exists_one",
            MacroKind::Filter => "filter",
            MacroKind::Map => "map",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Value),
    /// A variable; `root` (written `.name`) skips comprehension variables.
    Var {
        name: String,
        root: bool,
    },
    /// `operand.field`
    Select(Box<Expr>, String),
    /// `has(operand.field)`
    Has(Box<Expr>, String),
    /// `operand[index]`
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// `cond ? then : otherwise`
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    /// A function call; a method's receiver is the first argument.
    Call(Func, Vec<Expr>),
    Comprehension(Box<Comprehension>),
}

/// `range.<kind>(var, [filter,] body)`
#[derive(Debug, Clone, PartialEq)]
struct Comprehension {
    kind: MacroKind,
    range: Expr,
    var: String,
    /// Only for the three-argument `map(x, filter, transform)`.
    filter: Option<Expr>,
    body: Expr,
}

// ------------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// An int literal's magnitude (a leading `-` is folded in by the parser).
    Int(u64),
    UInt(u64),
    Double(f64),
    Str(String),
    Op(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Int(n) => format!("number {n}"),
            Tok::UInt(n) => format!("number {n}u"),
            Tok::Double(f) => format!("number {f}"),
            Tok::Str(_) => "string literal".into(),
            Tok::Op(o) => format!("'{o}'"),
            Tok::Eof => "end of expression".into(),
        }
    }
}

const OPS2: [&str; 6] = ["||", "&&", "==", "!=", "<=", ">="];
const OPS1: [&str; 18] = [
    "<", ">", "!", "+", "-", "*", "/", "%", "?", ":", ".", ",", "(", ")", "[", "]", "{", "}",
];

/// Splits `src` into tokens with their byte offsets, ending with [`Tok::Eof`].
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, SelectorError> {
    let b = src.as_bytes();
    let is_quote = |c: Option<&u8>| matches!(c, Some(b'\'' | b'"'));
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1);
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c) {
            i += 1;
        } else if c == b'/' && next == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == b'.' && next.is_some_and(u8::is_ascii_digit)) {
            let (tok, end) = lex_number(src, i)?;
            toks.push((tok, i));
            i = end;
        } else if c == b'\'' || c == b'"' {
            let (s, end) = lex_string(src, i, i, false)?;
            toks.push((Tok::Str(s), i));
            i = end;
        } else if matches!(c, b'r' | b'R') && is_quote(next) {
            let (s, end) = lex_string(src, i, i + 1, true)?;
            toks.push((Tok::Str(s), i));
            i = end;
        } else if (matches!(c, b'b' | b'B')
            && (is_quote(next) || (matches!(next, Some(b'r' | b'R')) && is_quote(b.get(i + 2)))))
            || (matches!(c, b'r' | b'R')
                && matches!(next, Some(b'b' | b'B'))
                && is_quote(b.get(i + 2)))
        {
            return perr(i, "bytes literals are not supported");
        } else if c == b'_' || c.is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            let word = &src[start..i];
            toks.push((
                if word == "in" {
                    Tok::Op("in")
                } else {
                    Tok::Ident(word.to_string())
                },
                start,
            ));
        } else if let Some(op) = OPS2
            .iter()
            .chain(OPS1.iter())
            .find(|op| b[i..].starts_with(op.as_bytes()))
        {
            toks.push((Tok::Op(op), i));
            i += op.len();
        } else {
            let msg = match c {
                b'=' => "unexpected '=' (equality is '==')".to_string(),
                b'&' => "unexpected '&' (logical and is '&&')".to_string(),
                b'|' => "unexpected '|' (logical or is '||')".to_string(),
                _ => match src.get(i..).and_then(|s| s.chars().next()) {
                    Some(ch) => format!("unexpected character {ch:?}"),
                    None => "unexpected byte".to_string(),
                },
            };
            return perr(i, msg);
        }
    }
    toks.push((Tok::Eof, b.len()));
    Ok(toks)
}

/// Index of the first byte at or after `i` that does not satisfy `pred`.
fn scan(b: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && pred(b[i]) {
        i += 1;
    }
    i
}

/// Lexes the number starting at `start`; returns it and the offset just past it.
fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), SelectorError> {
    let b = src.as_bytes();
    let out_of_range = || SelectorError::Parse {
        pos: start,
        msg: "integer literal out of range".into(),
    };
    let with_suffix = |n: u64, end: usize| match b.get(end) {
        Some(b'u' | b'U') => (Tok::UInt(n), end + 1),
        _ => (Tok::Int(n), end),
    };
    if b.get(start) == Some(&b'0') && matches!(b.get(start + 1), Some(b'x' | b'X')) {
        let end = scan(b, start + 2, |c| c.is_ascii_hexdigit());
        if end == start + 2 {
            return perr(start, "invalid hexadecimal literal");
        }
        let n = u64::from_str_radix(&src[start + 2..end], 16).map_err(|_| out_of_range())?;
        return Ok(with_suffix(n, end));
    }
    let mut end = scan(b, start, |c| c.is_ascii_digit());
    let mut is_double = false;
    if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
        is_double = true;
        end = scan(b, end + 1, |c| c.is_ascii_digit());
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let mut j = end + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            is_double = true;
            end = scan(b, j, |c| c.is_ascii_digit());
        }
    }
    let text = &src[start..end];
    if is_double {
        return match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok((Tok::Double(f), end)),
            _ => perr(start, "double literal out of range"),
        };
    }
    let n = text.parse::<u64>().map_err(|_| out_of_range())?;
    Ok(with_suffix(n, end))
}

/// Lexes a string literal whose opening quote is at `quote_at` (the token, with any `r`
/// prefix, starts at `start`); returns its value and the offset just past it.
fn lex_string(
    src: &str,
    start: usize,
    quote_at: usize,
    raw: bool,
) -> Result<(String, usize), SelectorError> {
    let b = src.as_bytes();
    let quote = b[quote_at];
    let triple = b.get(quote_at + 1) == Some(&quote) && b.get(quote_at + 2) == Some(&quote);
    let delim = if triple { 3 } else { 1 };
    let closes_at = |i: usize| (0..delim).all(|k| b.get(i + k) == Some(&quote));
    let mut out = String::new();
    let mut i = quote_at + delim;
    loop {
        let Some(c) = src.get(i..).and_then(|s| s.chars().next()) else {
            return perr(start, "unterminated string literal");
        };
        if closes_at(i) {
            return Ok((out, i + delim));
        }
        if !triple && (c == '\n' || c == '\r') {
            return perr(
                start,
                "unterminated string literal (use ''' or \"\"\" for multi-line strings)",
            );
        }
        if c == '\\' && !raw {
            let (ch, next) = lex_escape(src, i)?;
            out.push(ch);
            i = next;
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
}

/// Decodes the escape sequence whose backslash is at `i`; returns the character and the offset
/// just past the sequence.
fn lex_escape(src: &str, i: usize) -> Result<(char, usize), SelectorError> {
    let b = src.as_bytes();
    let Some(&e) = b.get(i + 1) else {
        return perr(i, "unterminated escape sequence");
    };
    let simple = match e {
        b'a' => Some('\u{07}'),
        b'b' => Some('\u{08}'),
        b'f' => Some('\u{0c}'),
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        b'v' => Some('\u{0b}'),
        b'\\' | b'?' | b'"' | b'\'' | b'`' => Some(e as char),
        _ => None,
    };
    if let Some(c) = simple {
        return Ok((c, i + 2));
    }
    let (from, digits, radix) = match e {
        b'x' | b'X' => (i + 2, 2, 16),
        b'u' => (i + 2, 4, 16),
        b'U' => (i + 2, 8, 16),
        b'0'..=b'3' => (i + 1, 3, 8),
        _ => return perr(i, "invalid escape sequence"),
    };
    let to = from + digits;
    let code = src
        .get(from..to)
        .filter(|t| t.chars().all(|c| c.is_digit(radix)))
        .and_then(|t| u32::from_str_radix(t, radix).ok());
    match code.and_then(char::from_u32) {
        Some(c) => Ok((c, to)),
        None => perr(i, "invalid escape sequence"),
    }
}

// ------------------------------------------------------------------------------------------------
// Parser (recursive descent over the CEL grammar)

/// A parsed expression and the depth of its tree.
type Parsed = (Expr, usize);

/// A parsed call argument, with where it starts.
struct Arg {
    expr: Expr,
    depth: usize,
    pos: usize,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    nesting: usize,
    /// The source length (position of the end).
    end: usize,
}

/// Builds a node over children of the given depths, enforcing [`MAX_DEPTH`].
fn node(pos: usize, expr: Expr, child_depths: &[usize]) -> Result<Parsed, SelectorError> {
    let depth = 1 + child_depths.iter().copied().max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return perr(pos, "expression is nested too deeply");
    }
    Ok((expr, depth))
}

impl Parser {
    fn peek_at(&self, ahead: usize) -> &Tok {
        self.toks.get(self.at + ahead).map_or(&Tok::Eof, |t| &t.0)
    }

    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |t| t.1)
    }

    fn next(&mut self) -> (Tok, usize) {
        let tok = self
            .toks
            .get(self.at)
            .cloned()
            .unwrap_or((Tok::Eof, self.end));
        if self.at < self.toks.len() {
            self.at += 1;
        }
        tok
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn eat(&mut self, op: &str) -> bool {
        let found = self.is_op(op);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, op: &str) -> Result<(), SelectorError> {
        if self.eat(op) {
            Ok(())
        } else {
            perr(
                self.pos(),
                format!("expected '{op}', found {}", self.peek().describe()),
            )
        }
    }

    /// `expr = or ['?' or ':' expr]`
    fn parse_expr(&mut self) -> Result<Parsed, SelectorError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return perr(self.pos(), "expression is nested too deeply");
        }
        let result = self.parse_conditional();
        self.nesting -= 1;
        result
    }

    fn parse_conditional(&mut self) -> Result<Parsed, SelectorError> {
        let (cond, dc) = self.parse_or()?;
        let pos = self.pos();
        if !self.eat("?") {
            return Ok((cond, dc));
        }
        let (then, dt) = self.parse_or()?;
        self.expect(":")?;
        let (otherwise, de) = self.parse_expr()?;
        node(
            pos,
            Expr::Cond(Box::new(cond), Box::new(then), Box::new(otherwise)),
            &[dc, dt, de],
        )
    }

    fn parse_or(&mut self) -> Result<Parsed, SelectorError> {
        self.parse_left_assoc(&["||"], Self::parse_and)
    }

    fn parse_and(&mut self) -> Result<Parsed, SelectorError> {
        self.parse_left_assoc(&["&&"], Self::parse_relation)
    }

    fn parse_relation(&mut self) -> Result<Parsed, SelectorError> {
        self.parse_left_assoc(
            &["<", "<=", ">", ">=", "==", "!=", "in"],
            Self::parse_addition,
        )
    }

    fn parse_addition(&mut self) -> Result<Parsed, SelectorError> {
        self.parse_left_assoc(&["+", "-"], Self::parse_multiplication)
    }

    fn parse_multiplication(&mut self) -> Result<Parsed, SelectorError> {
        self.parse_left_assoc(&["*", "/", "%"], Self::parse_unary)
    }

    /// One left-associative precedence level: `operand {op operand}`.
    fn parse_left_assoc(
        &mut self,
        ops: &[&str],
        operand: fn(&mut Self) -> Result<Parsed, SelectorError>,
    ) -> Result<Parsed, SelectorError> {
        let (mut left, mut depth) = operand(self)?;
        loop {
            let pos = self.pos();
            let Some(op) = ops.iter().copied().find(|op| self.is_op(op)) else {
                return Ok((left, depth));
            };
            self.next();
            let (right, dr) = operand(self)?;
            let (l, r) = (Box::new(left), Box::new(right));
            let expr = match op {
                "||" => Expr::Or(l, r),
                "&&" => Expr::And(l, r),
                _ => match BinOp::from_symbol(op) {
                    Some(bin) => Expr::Binary(bin, l, r),
                    None => return perr(pos, format!("unknown operator '{op}'")),
                },
            };
            (left, depth) = node(pos, expr, &[depth, dr])?;
        }
    }

    /// `unary = member | '!'+ member | '-'+ member`. As in CEL, an even run of `!` or `-`
    /// cancels out, and `-` directly before a number is part of the literal.
    fn parse_unary(&mut self) -> Result<Parsed, SelectorError> {
        let pos = self.pos();
        let negative_literal =
            self.is_op("-") && matches!(self.peek_at(1), Tok::Int(_) | Tok::Double(_));
        let op = if self.is_op("!") {
            "!"
        } else if self.is_op("-") && !negative_literal {
            "-"
        } else {
            return self.parse_member();
        };
        let mut count = 0;
        while self.eat(op) {
            count += 1;
        }
        let (operand, depth) = self.parse_member()?;
        if count % 2 == 0 {
            return Ok((operand, depth));
        }
        let operand = Box::new(operand);
        node(
            pos,
            if op == "!" {
                Expr::Not(operand)
            } else {
                Expr::Neg(operand)
            },
            &[depth],
        )
    }

    /// `member = primary {'.' name ['(' args ')'] | '[' expr ']'}`
    fn parse_member(&mut self) -> Result<Parsed, SelectorError> {
        let (mut expr, mut depth) = self.parse_primary()?;
        loop {
            let pos = self.pos();
            if self.eat(".") {
                let name_pos = self.pos();
                let name = self.field_name()?;
                if self.eat("(") {
                    let args = self.parse_args()?;
                    (expr, depth) = self.method_call(name_pos, (expr, depth), &name, args)?;
                } else {
                    (expr, depth) = node(pos, Expr::Select(Box::new(expr), name), &[depth])?;
                }
            } else if self.eat("[") {
                let (index, di) = self.parse_expr()?;
                self.expect("]")?;
                (expr, depth) = node(
                    pos,
                    Expr::Index(Box::new(expr), Box::new(index)),
                    &[depth, di],
                )?;
            } else {
                return Ok((expr, depth));
            }
        }
    }

    fn field_name(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            (Tok::Ident(name), pos) if RESERVED.contains(&name.as_str()) => perr(
                pos,
                format!("'{name}' is a reserved word (use ['{name}'] to read such a key)"),
            ),
            (Tok::Ident(name), _) => Ok(name),
            (tok, pos) => perr(
                pos,
                format!("expected a name after '.', found {}", tok.describe()),
            ),
        }
    }

    /// Call arguments, after the opening parenthesis.
    fn parse_args(&mut self) -> Result<Vec<Arg>, SelectorError> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            let pos = self.pos();
            let (expr, depth) = self.parse_expr()?;
            args.push(Arg { expr, depth, pos });
            if !self.eat(",") {
                self.expect(")")?;
                return Ok(args);
            }
        }
    }

    /// `receiver.name(args)`: a comprehension macro or a method.
    fn method_call(
        &mut self,
        pos: usize,
        receiver: Parsed,
        name: &str,
        args: Vec<Arg>,
    ) -> Result<Parsed, SelectorError> {
        let (receiver, dr) = receiver;
        if let Some(kind) = MacroKind::from_call(name, args.len()) {
            let mut args = args.into_iter();
            let (Some(var), Some(second)) = (args.next(), args.next()) else {
                return perr(pos, format!("{name}() takes at least 2 arguments"));
            };
            let var_name = match var.expr {
                Expr::Var { name, root: false } => name,
                _ => {
                    return perr(
                        var.pos,
                        format!("the first argument of {name}() must be a variable name"),
                    )
                }
            };
            let (filter, body) = match args.next() {
                Some(third) => (Some(second), third),
                None => (None, second),
            };
            let depths = [dr, filter.as_ref().map_or(0, |f| f.depth), body.depth];
            let comprehension = Comprehension {
                kind,
                range: receiver,
                var: var_name,
                filter: filter.map(|f| f.expr),
                body: body.expr,
            };
            return node(pos, Expr::Comprehension(Box::new(comprehension)), &depths);
        }
        let func = Func::method(name, args.len()).or_else(|msg| perr(pos, msg))?;
        let mut depths = vec![dr];
        let mut exprs = vec![receiver];
        for arg in args {
            depths.push(arg.depth);
            exprs.push(arg.expr);
        }
        node(pos, Expr::Call(func, exprs), &depths)
    }

    fn parse_primary(&mut self) -> Result<Parsed, SelectorError> {
        let (tok, pos) = self.next();
        let literal = |v: Value| node(pos, Expr::Lit(v), &[]);
        match tok {
            // Reached only with a number next (see `parse_unary`).
            Tok::Op("-") => match self.next() {
                (Tok::Int(n), _) if n == 1 << 63 => literal(Value::from(i64::MIN)),
                (Tok::Int(n), _) => match i64::try_from(n) {
                    Ok(i) => literal(Value::from(-i)),
                    Err(_) => perr(pos, "integer literal out of range"),
                },
                (Tok::Double(f), _) => literal(double_literal(-f, pos)?),
                _ => perr(pos, "unexpected '-'"),
            },
            Tok::Int(n) => match i64::try_from(n) {
                Ok(i) => literal(Value::from(i)),
                Err(_) => perr(pos, "integer literal out of range"),
            },
            Tok::UInt(n) => literal(Value::from(n)),
            Tok::Double(f) => literal(double_literal(f, pos)?),
            Tok::Str(s) => literal(Value::String(s)),
            Tok::Ident(name) => self.parse_identifier(name, pos, false),
            Tok::Op(".") => match self.next() {
                (Tok::Ident(name), p) => self.parse_identifier(name, p, true),
                (t, p) => perr(
                    p,
                    format!("expected a name after '.', found {}", t.describe()),
                ),
            },
            Tok::Op("(") => {
                let inner = self.parse_expr()?;
                self.expect(")")?;
                Ok(inner)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                let mut depths = Vec::new();
                while !self.eat("]") {
                    let (item, d) = self.parse_expr()?;
                    items.push(item);
                    depths.push(d);
                    if !self.eat(",") {
                        self.expect("]")?;
                        break;
                    }
                }
                node(pos, Expr::List(items), &depths)
            }
            Tok::Op("{") => {
                let mut entries = Vec::new();
                let mut depths = Vec::new();
                while !self.eat("}") {
                    let (key, dk) = self.parse_expr()?;
                    self.expect(":")?;
                    let (value, dv) = self.parse_expr()?;
                    entries.push((key, value));
                    depths.extend([dk, dv]);
                    if !self.eat(",") {
                        self.expect("}")?;
                        break;
                    }
                }
                node(pos, Expr::Map(entries), &depths)
            }
            Tok::Eof => perr(pos, "unexpected end of expression"),
            other => perr(pos, format!("unexpected {}", other.describe())),
        }
    }

    /// A name in primary position: a keyword literal, a global call, `has()`, or a variable.
    fn parse_identifier(
        &mut self,
        name: String,
        pos: usize,
        root: bool,
    ) -> Result<Parsed, SelectorError> {
        if !root {
            let keyword = match name.as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                "null" => Some(Value::Null),
                _ => None,
            };
            if let Some(v) = keyword {
                return node(pos, Expr::Lit(v), &[]);
            }
        }
        if RESERVED.contains(&name.as_str()) {
            return perr(pos, format!("'{name}' is a reserved word"));
        }
        if self.eat("(") {
            let args = self.parse_args()?;
            if name == "has" {
                return match <[Arg; 1]>::try_from(args) {
                    Ok(
                        [Arg {
                            expr: Expr::Select(operand, field),
                            depth,
                            ..
                        }],
                    ) => node(pos, Expr::Has(operand, field), &[depth]),
                    _ => perr(
                        pos,
                        "has() takes one field selection, e.g. has(repository.is_fork)",
                    ),
                };
            }
            let func = Func::global(&name, args.len()).or_else(|msg| perr(pos, msg))?;
            let depths: Vec<usize> = args.iter().map(|a| a.depth).collect();
            return node(
                pos,
                Expr::Call(func, args.into_iter().map(|a| a.expr).collect()),
                &depths,
            );
        }
        if self.is_op("{") {
            return perr(self.pos(), "message construction is not supported");
        }
        node(pos, Expr::Var { name, root }, &[])
    }
}

fn double_literal(f: f64, pos: usize) -> Result<Value, SelectorError> {
    match Number::from_f64(f) {
        Some(n) => Ok(Value::Number(n)),
        None => perr(pos, "double literal out of range"),
    }
}

// ------------------------------------------------------------------------------------------------
// Evaluation

/// Evaluation state: the variables and the comprehension variables in scope (innermost last).
/// Values borrow from the variables (or the syntax tree) where they can, so member access does
/// not copy the entity.
struct Env<'a> {
    vars: &'a Map<String, Value>,
    locals: Vec<(&'a str, Cow<'a, Value>)>,
}

/// What indexes a value: a field name (`a.b`) or a computed key (`a[k]`).
enum Key<'k> {
    Field(&'k str),
    Index(&'k Value),
}

impl<'a> Env<'a> {
    fn eval(&mut self, expr: &'a Expr) -> Result<Cow<'a, Value>, SelectorError> {
        match expr {
            Expr::Lit(v) => Ok(Cow::Borrowed(v)),
            Expr::Var { name, root } => self.lookup(name, *root),
            Expr::Select(operand, field) => {
                let v = self.eval(operand)?;
                child(v, Key::Field(field))
            }
            Expr::Index(operand, index) => {
                let v = self.eval(operand)?;
                let k = self.eval(index)?;
                child(v, Key::Index(&k))
            }
            Expr::Has(operand, field) => match &*self.eval(operand)? {
                Value::Object(m) => Ok(Cow::Owned(Value::Bool(m.contains_key(field)))),
                other => eerr(format!("has() needs a map, got {}", type_name(other))),
            },
            Expr::Not(operand) => {
                let b = self.eval_bool(operand, "!")?;
                Ok(Cow::Owned(Value::Bool(!b)))
            }
            Expr::Neg(operand) => negate(&*self.eval(operand)?).map(Cow::Owned),
            Expr::Binary(op, left, right) => {
                let l = self.eval(left)?;
                let r = self.eval(right)?;
                binary(*op, &l, &r).map(Cow::Owned)
            }
            Expr::And(left, right) => self.logical(left, right, false),
            Expr::Or(left, right) => self.logical(left, right, true),
            Expr::Cond(cond, then, otherwise) => {
                if self.eval_bool(cond, "?:")? {
                    self.eval(then)
                } else {
                    self.eval(otherwise)
                }
            }
            Expr::List(items) => {
                let items = items
                    .iter()
                    .map(|e| self.eval(e).map(Cow::into_owned))
                    .collect::<Result<_, _>>()?;
                Ok(Cow::Owned(Value::Array(items)))
            }
            Expr::Map(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let key = match self.eval(k)?.into_owned() {
                        Value::String(s) => s,
                        other => {
                            return eerr(format!(
                                "map keys must be strings, got {}",
                                type_name(&other)
                            ))
                        }
                    };
                    if map.contains_key(&key) {
                        return eerr(format!("duplicate map key {key:?}"));
                    }
                    let value = self.eval(v)?.into_owned();
                    map.insert(key, value);
                }
                Ok(Cow::Owned(Value::Object(map)))
            }
            Expr::Call(func, args) => {
                let values = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let values: Vec<&Value> = values.iter().map(|v| &**v).collect();
                call(*func, &values).map(Cow::Owned)
            }
            Expr::Comprehension(c) => self.comprehension(c),
        }
    }

    fn lookup(&self, name: &str, root: bool) -> Result<Cow<'a, Value>, SelectorError> {
        if !root {
            if let Some((_, v)) = self.locals.iter().rev().find(|(n, _)| *n == name) {
                return Ok(v.clone());
            }
        }
        match self.vars.get(name) {
            Some(v) => Ok(Cow::Borrowed(v)),
            None => eerr(format!("undeclared reference to '{name}'")),
        }
    }

    /// Evaluates an operand that must be a bool.
    fn eval_bool(&mut self, expr: &'a Expr, op: &str) -> Result<bool, SelectorError> {
        match &*self.eval(expr)? {
            Value::Bool(b) => Ok(*b),
            other => eerr(format!(
                "no such overload: '{op}' applied to {}",
                type_name(other)
            )),
        }
    }

    /// `&&` (`decisive` false) and `||` (`decisive` true): the decisive value on either side wins
    /// even over an error on the other; otherwise the first error is reported.
    fn logical(
        &mut self,
        left: &'a Expr,
        right: &'a Expr,
        decisive: bool,
    ) -> Result<Cow<'a, Value>, SelectorError> {
        let op = if decisive { "||" } else { "&&" };
        let result = match self.eval_bool(left, op) {
            Ok(l) if l == decisive => Ok(decisive),
            Ok(_) => self.eval_bool(right, op),
            Err(e) => match self.eval_bool(right, op) {
                Ok(r) if r == decisive => Ok(decisive),
                _ => Err(e),
            },
        };
        result.map(|b| Cow::Owned(Value::Bool(b)))
    }

    /// Evaluates `f` with `name` bound to `value`.
    fn bind<T>(
        &mut self,
        name: &'a str,
        value: Cow<'a, Value>,
        f: impl FnOnce(&mut Self) -> Result<T, SelectorError>,
    ) -> Result<T, SelectorError> {
        self.locals.push((name, value));
        let result = f(self);
        self.locals.pop();
        result
    }

    fn comprehension(&mut self, c: &'a Comprehension) -> Result<Cow<'a, Value>, SelectorError> {
        let name = c.kind.name();
        let items: Vec<Cow<'a, Value>> = match self.eval(&c.range)? {
            Cow::Borrowed(Value::Array(a)) => a.iter().map(Cow::Borrowed).collect(),
            Cow::Owned(Value::Array(a)) => a.into_iter().map(Cow::Owned).collect(),
            Cow::Borrowed(Value::Object(m)) => m
                .keys()
                .map(|k| Cow::Owned(Value::String(k.clone())))
                .collect(),
            Cow::Owned(Value::Object(m)) => m
                .into_iter()
                .map(|(k, _)| Cow::Owned(Value::String(k)))
                .collect(),
            other => {
                return eerr(format!(
                    "{name}() needs a list or map, got {}",
                    type_name(&other)
                ))
            }
        };
        let var = c.var.as_str();
        let result = match c.kind {
            MacroKind::All | MacroKind::Exists => {
                // all: the first false decides; exists: the first true. Errors count only if
                // nothing decides.
                let decisive = c.kind == MacroKind::Exists;
                let mut error = None;
                for item in items {
                    match self.bind(var, item, |env| env.eval_bool(&c.body, name)) {
                        Ok(b) if b == decisive => return Ok(Cow::Owned(Value::Bool(decisive))),
                        Ok(_) => {}
                        Err(e) => {
                            error.get_or_insert(e);
                        }
                    }
                }
                match error {
                    Some(e) => return Err(e),
                    None => Value::Bool(!decisive),
                }
            }
            MacroKind::ExistsOne => {
                let mut count = 0usize;
                for item in items {
                    if self.bind(var, item, |env| env.eval_bool(&c.body, name))? {
                        count += 1;
                    }
                }
                Value::Bool(count == 1)
            }
            MacroKind::Filter => {
                let mut kept = Vec::new();
                for item in items {
                    if self.bind(var, item.clone(), |env| env.eval_bool(&c.body, name))? {
                        kept.push(item.into_owned());
                    }
                }
                Value::Array(kept)
            }
            MacroKind::Map => {
                let mut mapped = Vec::new();
                for item in items {
                    let value = self.bind(var, item, |env| {
                        if let Some(filter) = &c.filter {
                            if !env.eval_bool(filter, name)? {
                                return Ok(None);
                            }
                        }
                        env.eval(&c.body).map(|v| Some(v.into_owned()))
                    })?;
                    mapped.extend(value);
                }
                Value::Array(mapped)
            }
        };
        Ok(Cow::Owned(result))
    }
}

/// `value.field` or `value[key]`, keeping the result borrowed when `value` is.
fn child<'a>(value: Cow<'a, Value>, key: Key<'_>) -> Result<Cow<'a, Value>, SelectorError> {
    match value {
        Cow::Borrowed(v) => lookup_key(v, &key).map(Cow::Borrowed),
        Cow::Owned(v) => lookup_key(&v, &key).map(|c| Cow::Owned(c.clone())),
    }
}

fn lookup_key<'v>(value: &'v Value, key: &Key<'_>) -> Result<&'v Value, SelectorError> {
    match (value, key) {
        (Value::Object(m), Key::Field(f)) => m.get(*f).ok_or_else(|| no_such_key(f)),
        (Value::Object(m), Key::Index(Value::String(k))) => m.get(k).ok_or_else(|| no_such_key(k)),
        (Value::Object(_), Key::Index(k)) => Err(no_such_key(&k.to_string())),
        (Value::Array(a), Key::Index(Value::Number(n))) => {
            let index = match num(n) {
                Num::Int(i) => usize::try_from(i).ok(),
                Num::UInt(u) => usize::try_from(u).ok(),
                Num::Double(_) => return eerr("list index must be an int, got double"),
            };
            index.and_then(|i| a.get(i)).ok_or_else(|| {
                SelectorError::Eval(format!("index {n} out of range (list size {})", a.len()))
            })
        }
        (Value::Array(_), Key::Index(k)) => {
            eerr(format!("list index must be an int, got {}", type_name(k)))
        }
        (other, Key::Field(f)) => eerr(format!(
            "cannot select field '{f}' from {}",
            type_name(other)
        )),
        (other, Key::Index(_)) => eerr(format!("{} does not support indexing", type_name(other))),
    }
}

fn no_such_key(key: &str) -> SelectorError {
    SelectorError::Eval(format!("no such key: {key}"))
}

/// CEL's name for the type of a JSON value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null_type",
        Value::Bool(_) => "bool",
        Value::Number(n) => match num(n) {
            Num::Int(_) => "int",
            Num::UInt(_) => "uint",
            Num::Double(_) => "double",
        },
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// A JSON number as a CEL number: int when it fits i64, uint when only u64, else double.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    UInt(u64),
    Double(f64),
}

fn num(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i)
    } else if let Some(u) = n.as_u64() {
        Num::UInt(u)
    } else {
        Num::Double(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// A finite double as a JSON value.
fn double(f: f64) -> Result<Value, SelectorError> {
    match Number::from_f64(f) {
        Some(n) => Ok(Value::Number(n)),
        None => eerr("double result is not finite"),
    }
}

/// Compares numbers by value, across int, uint and double.
fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::UInt(x), Num::UInt(y)) => Some(x.cmp(&y)),
        (Num::Double(x), Num::Double(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::UInt(y)) => Some(i128::from(x).cmp(&i128::from(y))),
        (Num::Int(x), Num::Double(y)) => cmp_integer_double(i128::from(x), y),
        (Num::UInt(x), Num::Double(y)) => cmp_integer_double(i128::from(x), y),
        (Num::UInt(_), Num::Int(_)) | (Num::Double(_), Num::Int(_) | Num::UInt(_)) => {
            num_cmp(b, a).map(Ordering::reverse)
        }
    }
}

/// Exact comparison of an integer (in the i64 ∪ u64 range) with a double.
fn cmp_integer_double(i: i128, d: f64) -> Option<Ordering> {
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    const MINUS_TWO_POW_63: f64 = -9_223_372_036_854_775_808.0;
    if d.is_nan() {
        return None;
    }
    if d >= TWO_POW_64 {
        return Some(Ordering::Less);
    }
    if d < MINUS_TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    // In this range the integral part of `d` converts to i128 exactly.
    let whole = d.trunc();
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(d - whole)),
        unequal => Some(unequal),
    }
}

/// CEL equality: different types are unequal, numbers compare by value, containers deeply.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => num_cmp(num(x), num(y)) == Some(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => false,
    }
}

fn no_overload_binary(op: BinOp, a: &Value, b: &Value) -> SelectorError {
    SelectorError::Eval(format!(
        "no such overload: {} {} {}",
        type_name(a),
        op.symbol(),
        type_name(b)
    ))
}

fn binary(op: BinOp, a: &Value, b: &Value) -> Result<Value, SelectorError> {
    match op {
        BinOp::Eq => Ok(Value::Bool(equal(a, b))),
        BinOp::Ne => Ok(Value::Bool(!equal(a, b))),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = match (a, b) {
                (Value::Number(x), Value::Number(y)) => num_cmp(num(x), num(y)),
                (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
                _ => None,
            }
            .ok_or_else(|| no_overload_binary(op, a, b))?;
            Ok(Value::Bool(match op {
                BinOp::Lt => ord.is_lt(),
                BinOp::Le => ord.is_le(),
                BinOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        BinOp::In => match b {
            Value::Array(items) => Ok(Value::Bool(items.iter().any(|item| equal(a, item)))),
            Value::Object(m) => Ok(Value::Bool(
                matches!(a, Value::String(k) if m.contains_key(k)),
            )),
            _ => Err(no_overload_binary(op, a, b)),
        },
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => arithmetic(op, a, b),
    }
}

fn arithmetic(op: BinOp, a: &Value, b: &Value) -> Result<Value, SelectorError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (num(x), num(y)) {
            (Num::Int(x), Num::Int(y)) => {
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div if y == 0 => return eerr("division by zero"),
                    BinOp::Div => x.checked_div(y),
                    BinOp::Rem if y == 0 => return eerr("modulus by zero"),
                    BinOp::Rem => x.checked_rem(y),
                    _ => return Err(no_overload_binary(op, a, b)),
                };
                r.map(Value::from)
                    .ok_or_else(|| SelectorError::Eval("integer overflow".into()))
            }
            (Num::UInt(x), Num::UInt(y)) => {
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div if y == 0 => return eerr("division by zero"),
                    BinOp::Div => x.checked_div(y),
                    BinOp::Rem if y == 0 => return eerr("modulus by zero"),
                    BinOp::Rem => x.checked_rem(y),
                    _ => return Err(no_overload_binary(op, a, b)),
                };
                r.map(Value::from)
                    .ok_or_else(|| SelectorError::Eval("unsigned integer overflow".into()))
            }
            (Num::Double(x), Num::Double(y)) => double(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => return Err(no_overload_binary(op, a, b)),
            }),
            _ => Err(no_overload_binary(op, a, b)),
        },
        (Value::String(x), Value::String(y)) if op == BinOp::Add => {
            Ok(Value::String(format!("{x}{y}")))
        }
        (Value::Array(x), Value::Array(y)) if op == BinOp::Add => {
            Ok(Value::Array(x.iter().chain(y).cloned().collect()))
        }
        _ => Err(no_overload_binary(op, a, b)),
    }
}

fn negate(v: &Value) -> Result<Value, SelectorError> {
    match v {
        Value::Number(n) => match num(n) {
            Num::Int(i) => i
                .checked_neg()
                .map(Value::from)
                .ok_or_else(|| SelectorError::Eval("integer overflow".into())),
            Num::Double(d) => double(-d),
            Num::UInt(_) => eerr("no such overload: -uint"),
        },
        other => eerr(format!("no such overload: -{}", type_name(other))),
    }
}

fn no_overload_call<T>(func: Func, args: &[&Value]) -> Result<T, SelectorError> {
    let types: Vec<&str> = args.iter().map(|v| type_name(v)).collect();
    eerr(format!(
        "no such overload: {}({})",
        func.name(),
        types.join(", ")
    ))
}

/// Applies a built-in function (arity is checked by the parser).
fn call(func: Func, args: &[&Value]) -> Result<Value, SelectorError> {
    match (func, args) {
        (Func::Size, [v]) => {
            let n = match v {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                _ => return no_overload_call(func, args),
            };
            i64::try_from(n)
                .map(Value::from)
                .or_else(|_| eerr("size overflows int"))
        }
        (Func::Contains, [Value::String(s), Value::String(p)]) => {
            Ok(Value::Bool(s.contains(p.as_str())))
        }
        (Func::StartsWith, [Value::String(s), Value::String(p)]) => {
            Ok(Value::Bool(s.starts_with(p.as_str())))
        }
        (Func::EndsWith, [Value::String(s), Value::String(p)]) => {
            Ok(Value::Bool(s.ends_with(p.as_str())))
        }
        (Func::Int, [v]) => to_int(v),
        (Func::Double, [v]) => match v {
            Value::Number(n) => match num(n) {
                Num::Int(i) => double(i as f64),
                Num::UInt(u) => double(u as f64),
                Num::Double(d) => double(d),
            },
            Value::String(s) => match s.parse::<f64>() {
                Ok(d) if d.is_finite() => double(d),
                _ => eerr(format!("cannot convert string {s:?} to double")),
            },
            _ => no_overload_call(func, args),
        },
        (Func::String, [v]) => match v {
            Value::String(s) => Ok(Value::String(s.clone())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            Value::Number(n) => Ok(Value::String(match num(n) {
                Num::Int(i) => i.to_string(),
                Num::UInt(u) => u.to_string(),
                Num::Double(d) => format_double(d),
            })),
            _ => no_overload_call(func, args),
        },
        (Func::Dyn, [v]) => Ok((*v).clone()),
        _ => no_overload_call(func, args),
    }
}

fn to_int(v: &Value) -> Result<Value, SelectorError> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    match v {
        Value::Number(n) => match num(n) {
            Num::Int(i) => Ok(Value::from(i)),
            Num::UInt(u) => i64::try_from(u)
                .map(Value::from)
                .or_else(|_| eerr("integer overflow")),
            // Truncates toward zero, like CEL.
            Num::Double(d) if (-TWO_POW_63..TWO_POW_63).contains(&d) => {
                Ok(Value::from(d.trunc() as i64))
            }
            Num::Double(d) => eerr(format!("double {d} out of int range")),
        },
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| eerr(format!("cannot convert string {s:?} to int"))),
        other => no_overload_call(Func::Int, &[other]),
    }
}

/// Formats a double as CEL (Go's `%g`) does: shortest round-trip digits, exponent notation
/// when the exponent is below -4 or at least 6 (`1e+06`, `1.5e-07`).
fn format_double(d: f64) -> String {
    let sci = format!("{d:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci;
    };
    if (-4..6).contains(&exp) {
        format!("{d}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

// ------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo(name: &str) -> Value {
        json!({"repository": {
            "name": name,
            "is_private": false,
            "is_fork": false,
            "properties": {"github/primary_language": "Go", "github/license": "GPL-3.0", "github/repo_id": 42},
            "labels": ["prod", "team-a"],
        }})
    }

    fn eval(src: &str, vars: &Value) -> Result<bool, SelectorError> {
        Selector::parse(src).unwrap().matches(vars)
    }

    fn is_true(src: &str) -> bool {
        eval(src, &repo("stacklok/minder")).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn value(src: &str) -> Value {
        Selector::parse(src)
            .unwrap()
            .evaluate(&repo("stacklok/minder"))
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn eval_err(src: &str) -> String {
        match Selector::parse(src)
            .unwrap()
            .evaluate(&repo("stacklok/minder"))
        {
            Err(SelectorError::Eval(msg)) => msg,
            other => panic!("{src}: expected an evaluation error, got {other:?}"),
        }
    }

    fn parse_err(src: &str) -> (usize, String) {
        match Selector::parse(src) {
            Err(SelectorError::Parse { pos, msg }) => (pos, msg),
            other => panic!("{src}: expected a parse error, got {other:?}"),
        }
    }

    const CORPUS: &str = "repository.name.startsWith('stacklok/quiver') ||\n  repository.name.startsWith('stacklok/minder-bundle-updater') ||\n  repository.name.startsWith('stacklok/healthcheck-bundle')\n";

    #[test]
    fn corpus_example() {
        let s = Selector::parse(CORPUS).unwrap();
        assert_eq!(s.source(), CORPUS);
        for name in [
            "stacklok/quiver",
            "stacklok/quiver-ui",
            "stacklok/minder-bundle-updater",
            "stacklok/healthcheck-bundle",
        ] {
            assert!(s.matches(&repo(name)).unwrap(), "{name}");
        }
        for name in [
            "stacklok/minder",
            "other/quiver",
            "stacklok/Quiver",
            "stacklok",
        ] {
            assert!(!s.matches(&repo(name)).unwrap(), "{name}");
        }
    }

    #[test]
    fn labels_and_fields() {
        assert!(is_true("'prod' in repository.labels"));
        assert!(!is_true("'staging' in repository.labels"));
        assert!(is_true("!('archived' in repository.labels)"));
        assert!(!is_true("!('prod' in repository.labels)"));
        assert!(is_true(
            "repository.labels.exists(l, l.startsWith('team-'))"
        ));
        assert!(!is_true("repository.labels.all(l, l.startsWith('team-'))"));
        assert!(is_true("repository.labels.exists_one(l, l == 'prod')"));
        assert!(is_true(
            "repository.labels.filter(l, l != 'prod') == ['team-a']"
        ));
        assert!(is_true(
            "repository.labels.map(l, l + '!') == ['prod!', 'team-a!']"
        ));
        assert!(is_true(
            "repository.labels.map(l, l != 'prod', l.size()) == [6]"
        ));
        assert!(is_true(
            "repository.labels.size() == 2 && size(repository.labels) == 2"
        ));
        assert!(is_true(
            "repository.is_fork != true && !repository.is_private"
        ));
        assert!(is_true("repository.is_fork == false ? true : false"));
        assert!(is_true(".repository.name == 'stacklok/minder'"));
    }

    #[test]
    fn properties_index() {
        assert!(is_true(
            "repository.properties['github/primary_language'] == 'Go'"
        ));
        assert!(is_true(
            "repository.properties['github/license'].contains('GPL') == true"
        ));
        assert!(is_true("repository.properties['github/repo_id'] == 42"));
        assert!(is_true("repository.properties['github/repo_id'] == 42.0"));
        assert!(is_true("repository.properties[\"github/repo_id\"] > 41"));
        assert!(is_true("'github/license' in repository.properties"));
        assert!(!is_true("'github/nope' in repository.properties"));
        assert!(is_true("repository.labels[1] == 'team-a'"));
        assert!(eval_err("repository.labels[2] == 'x'").contains("out of range"));
        assert_eq!(
            eval_err("repository.properties['github/nope'] == 'x'"),
            "no such key: github/nope"
        );
    }

    #[test]
    fn has_macro() {
        assert!(is_true("has(repository.is_fork)"));
        assert!(!is_true("has(repository.archived)"));
        assert!(is_true(
            "!has(repository.archived) || repository.archived == false"
        ));
        assert!(!is_true("has(repository.properties.nope)"));
        assert_eq!(eval_err("has(repository.nope.deeper)"), "no such key: nope");
        assert!(eval_err("has(repository.name.x)").contains("needs a map"));
        assert!(parse_err("has(repository['x'])")
            .1
            .contains("field selection"));
        assert!(parse_err("has(repository)").1.contains("field selection"));
    }

    #[test]
    fn missing_field_and_variable() {
        assert_eq!(eval_err("repository.nope == 'x'"), "no such key: nope");
        assert_eq!(
            eval_err("artifact.name == 'x'"),
            "undeclared reference to 'artifact'"
        );
        assert!(eval_err("repository.name.first == 'x'").contains("cannot select field"));
        assert!(matches!(
            Selector::parse("true").unwrap().matches(&json!([1])),
            Err(SelectorError::Eval(_))
        ));
    }

    #[test]
    fn non_bool_result_is_an_error() {
        let msg = match eval("repository.name", &repo("a/b")) {
            Err(SelectorError::Eval(msg)) => msg,
            other => panic!("{other:?}"),
        };
        assert_eq!(msg, "selector must evaluate to a bool, got string");
        assert!(eval("1 + 1", &repo("a/b")).is_err());
        assert!(eval("null", &repo("a/b")).is_err());
    }

    #[test]
    fn parse_errors_have_positions() {
        assert_eq!(
            parse_err("repository.name =="),
            (18, "unexpected end of expression".into())
        );
        assert_eq!(parse_err("repository.name = 'x'").0, 16);
        assert!(parse_err("repository.name = 'x'").1.contains("'=='"));
        assert_eq!(parse_err("repository.name.startsWith('x'").0, 30);
        assert_eq!(parse_err("a && 'unterminated").0, 5);
        assert_eq!(parse_err("a && 'line\nbreak'").0, 5);
        assert_eq!(parse_err("a b").0, 2);
        assert_eq!(parse_err("(a").0, 2);
        assert_eq!(parse_err("").0, 0);
        assert_eq!(parse_err("a.").0, 2);
        assert_eq!(parse_err("a #").0, 2);
        assert_eq!(parse_err("'\\q'").0, 1);
        assert_eq!(parse_err("a.if").0, 2);
        assert_eq!(parse_err("foo(1)"), (0, "unknown function foo()".into()));
        assert_eq!(
            parse_err("a.b.lower()"),
            (4, "unknown method lower()".into())
        );
        assert_eq!(parse_err("a.startsWith()").0, 2);
        assert_eq!(
            parse_err("x.matches('^a')"),
            (2, "matches() is not supported".into())
        );
        assert_eq!(
            parse_err("matches(x, '^a')"),
            (0, "matches() is not supported".into())
        );
        assert_eq!(
            parse_err("b'abc' == x").1,
            "bytes literals are not supported"
        );
        assert_eq!(parse_err("9223372036854775808 > 1").0, 0);
        assert!(parse_err("a.exists(x.y, true)").1.contains("variable name"));
        assert!(parse_err("Msg{a: 1}").1.contains("not supported"));
        let nested = format!("{}true{}", "(".repeat(200), ")".repeat(200));
        assert!(parse_err(&nested).1.contains("nested too deeply"));
        let chain = vec!["1"; 1000].join(" + ");
        assert!(parse_err(&chain).1.contains("nested too deeply"));
        assert!(Selector::parse(&vec!["1"; 100].join(" + ")).is_ok());
    }

    #[test]
    fn precedence() {
        assert!(is_true("true || false && false"));
        assert!(!is_true("(true || false) && false"));
        assert!(is_true("1 + 2 * 3 == 7"));
        assert!(is_true("(1 + 2) * 3 == 9"));
        assert!(is_true("10 - 4 - 3 == 3"));
        assert!(is_true("2 < 3 == true"));
        assert!(is_true("!false && !!true"));
        assert!(is_true("-2 * 3 == -6 && - -2 == 2"));
        assert!(is_true("false ? false : true ? true : false"));
        assert!(is_true("(true ? 'a' : 'b') == 'a'"));
        assert!(is_true("1 in [1, 2] && !(3 in [1, 2])"));
    }

    #[test]
    fn logical_operators_absorb_errors() {
        assert!(!is_true("false && repository.nope"));
        assert!(!is_true("repository.nope && false"));
        assert!(is_true("true || repository.nope"));
        assert!(is_true("repository.nope || true"));
        assert_eq!(eval_err("repository.nope || false"), "no such key: nope");
        assert!(eval_err("true && 1").contains("no such overload"));
        assert!(is_true("[1, 2].exists(x, x == 2 || repository.nope)"));
        assert!(is_true("[0, 2].exists(x, 4 / x == 2)"));
        assert_eq!(eval_err("[0, 1].exists(x, 4 / x == 2)"), "division by zero");
    }

    #[test]
    fn literals_and_operators() {
        assert!(is_true("'a' + \"b\" == 'ab'"));
        assert!(is_true("'\\x41\\u00e9\\101\\n' == 'Aé' + 'A\\n'"));
        assert!(is_true("r'\\d+' == '\\\\d+'"));
        assert!(is_true("'''multi\nline''' == \"multi\\nline\""));
        assert!(is_true("\"it's\" == 'it\\'s'"));
        assert!(is_true("0x1F == 31 && 5u == 5 && .5 == 0.5 && 1e3 == 1000"));
        assert!(is_true("7 / 2 == 3 && -7 % 3 == -1 && 7.0 / 2.0 == 3.5"));
        assert!(is_true("-9223372036854775808 == -9223372036854775807 - 1"));
        assert!(is_true("[1, 2] + [3] == [1, 2, 3] && [1, [2]] != [1, [3]]"));
        assert!(is_true(
            "{'a': 1, 'b': [2]}['b'][0] == 2 && {'a': 1} == {'a': 1.0}"
        ));
        assert!(is_true("'a' in {'a': 1} && !(1 in {'a': 1})"));
        assert!(is_true(
            "1 == 1.0 && 1 < 1.5 && 2 > 1.5 && -1 < 0.5 && 'a' < 'b' && false < true"
        ));
        assert!(is_true(
            "1 != 'a' && null == null && null != false && [] != {}"
        ));
        assert!(is_true(
            "size('héllo') == 5 && 'héllo'.size() == 5 && size({'a': 1}) == 1"
        ));
        assert!(is_true(
            "'abc'.endsWith('bc') && 'abc'.contains('b') && !'abc'.startsWith('b')"
        ));
        assert!(is_true(
            "int('42') == 42 && int(3.9) == 3 && int(-3.9) == -3 && double(2) == 2.0"
        ));
        assert!(is_true(
            "string(1) == '1' && string(true) == 'true' && string(1.5) == '1.5'"
        ));
        assert!(is_true(
            "string(1e6) == '1e+06' && string(123456.0) == '123456' && string(0.00001) == '1e-05'"
        ));
        assert!(is_true("dyn(1) == 1 // a trailing comment"));
        assert_eq!(
            value("[1, 'a', null, {'k': true}]"),
            json!([1, "a", null, {"k": true}])
        );
        assert_eq!(value("1.5 + 1.5"), json!(3.0));
    }

    #[test]
    fn type_errors() {
        assert!(eval_err("1 < 'a'").contains("no such overload: int < string"));
        assert!(eval_err("1 + 1.5 == 2.5").contains("no such overload: int + double"));
        assert!(eval_err("'a' - 'b' == ''").contains("no such overload"));
        assert!(eval_err("[1] < [2]").contains("no such overload"));
        assert_eq!(eval_err("9223372036854775807 + 1 > 0"), "integer overflow");
        assert_eq!(eval_err("1 % 0 == 0"), "modulus by zero");
        assert_eq!(eval_err("1.0 / 0.0 > 0.0"), "double result is not finite");
        assert!(eval_err("int('x') == 1").contains("cannot convert"));
        assert!(eval_err("size(1) == 1").contains("no such overload: size(int)"));
        assert!(eval_err("repository.name.startsWith(1)")
            .contains("no such overload: startsWith(string, int)"));
        assert!(eval_err("1 in 'abc'").contains("no such overload"));
        assert!(eval_err("{'a': 1, 'a': 2}.size() == 1").contains("duplicate"));
        assert!(eval_err("'x'.exists(c, true)").contains("needs a list or map"));
        assert!(eval_err("(1 ? true : false)").contains("no such overload"));
    }

    #[test]
    fn selection_requires_every_selector_of_the_kind() {
        let entries = vec![
            (
                "repository".to_string(),
                "repository.name.startsWith('stacklok/')".to_string(),
            ),
            (
                "repository".to_string(),
                "'prod' in repository.labels".to_string(),
            ),
            (
                "artifact".to_string(),
                "artifact.name == 'never'".to_string(),
            ),
        ];
        let sel = Selection::compile(&entries).unwrap();
        assert!(!sel.is_empty());
        assert_eq!(sel.entries().count(), 3);
        assert!(sel.matches("repository", &repo("stacklok/minder")).unwrap());
        assert!(!sel.matches("repository", &repo("other/minder")).unwrap());
        let unlabeled = json!({"repository": {"name": "stacklok/minder", "labels": []}});
        assert!(!sel.matches("repository", &unlabeled).unwrap());
        // No selectors for pull requests or releases: everything is selected.
        assert!(sel
            .matches("pull_request", &json!({"pull_request": {"name": "x"}}))
            .unwrap());
        assert!(sel.matches("release", &json!({})).unwrap());
        // The artifact selector only runs for artifacts.
        assert!(!sel
            .matches("artifact", &json!({"artifact": {"name": "a"}}))
            .unwrap());
        // Errors name the entry.
        match sel.matches("artifact", &json!({})) {
            Err(SelectorError::Eval(msg)) => assert_eq!(
                msg,
                "selection entry 2 (artifact): undeclared reference to 'artifact'"
            ),
            other => panic!("{other:?}"),
        }
        assert!(Selection::compile(&[])
            .unwrap()
            .matches("repository", &json!({}))
            .unwrap());
    }

    #[test]
    fn selection_kinds_and_errors() {
        let any = Selection::compile(&[(String::new(), "false".to_string())]).unwrap();
        assert!(!any.matches("repository", &json!({})).unwrap());
        assert!(!any.matches("release", &json!({})).unwrap());
        let e = Selection::compile(&[("repositories".into(), "true".into())]).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown entity kind \"repositories\""),
            "{e}"
        );
        let e = Selection::compile(&[
            ("repository".into(), "true".into()),
            ("repository".into(), "a ==".into()),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            SelectorError::Parse {
                pos: 4,
                msg: "selection entry 1 (repository): unexpected end of expression".into()
            }
        );
    }
}
