//! Profile selectors: CEL expressions, compiled and evaluated by cel-rust (the `cel` crate).
//!
//! Minder profiles restrict the entities they apply to with `selection:` entries, each an entity
//! kind and a [CEL](https://github.com/google/cel-spec) expression over that entity, e.g.
//! `repository.is_fork != true && repository.name.startsWith('stacklok/')`. A [`Selector`] is
//! compiled once and evaluated many times against a JSON object whose top-level keys are the CEL
//! variables (`{"repository": {"name": "owner/repo", "is_private": false, "is_fork": false,
//! "properties": {...}, "labels": [...]}}`; the caller builds it). A [`Selection`] is a
//! profile's whole list: an entity is selected when every selector for its kind matches.
//!
//! # The language
//!
//! CEL's standard environment, as Minder's cel-go one: literals, operators, member access and
//! indexing, the macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`), the string
//! methods (`startsWith`, `endsWith`, `contains`, `matches` with RE2 syntax), `size`, the type
//! conversions (`int`, `uint`, `double`, `string`, `bytes`, `bool`, `dyn`, `type`), and
//! `timestamp` / `duration` with their accessors. No extension libraries and no optional
//! syntax (`a.?b`), which Minder's environment does not enable either.
//!
//! # What Plumbline adds around it
//!
//! * **A call to a function CEL does not define is refused when the profile is compiled**, not
//!   when it first runs: cel-rust resolves functions only at evaluation, and Minder (cel-go)
//!   type-checks at creation. [`FUNCTIONS`] lists what the standard environment defines.
//! * **Bounds.** The source is limited to [`MAX_SOURCE_BYTES`] and its nesting to
//!   [`MAX_NESTING`] (cel-rust's recursion limit): a selector is written by a project's editor
//!   and compiled by the control service and every evaluator, so a pathological one must be an
//!   error, never a stack overflow.
//! * **A result that is not a bool is an error**, as in Minder.
//!
//! # Semantics worth knowing (CEL's own)
//!
//! * A missing map key, by member access or index, is an error (`No such key: x`); `has(a.b)`
//!   tests for the key instead.
//! * `&&` and `||` are commutative about errors: `false && <error>` and `<error> && false` are
//!   both `false`, likewise `true || <error>`.
//! * JSON numbers arrive as CEL `int` when integral (`uint` above `i64::MAX`), `double`
//!   otherwise; `==` compares numbers across types, arithmetic does not mix them.
//! * Nothing is type-checked against the entity's shape before evaluation, so a misspelt field
//!   is found when the selector runs, as an evaluation error naming it.

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, LiteralValue};
use cel::common::value::Val;
use cel::parser::Expression;
use cel::{Context, Env, ExecutionError, Value as Cel};
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, LazyLock};

/// The entity kinds a selection entry may name. An entry with an empty kind applies to every
/// entity (Minder: "if the entity type is omitted, the selector will be applied to all
/// entities").
pub const ENTITY_KINDS: [&str; 4] = ["repository", "pull_request", "artifact", "release"];

/// The longest selector source accepted. Minder's documented selectors are one or two lines;
/// this leaves room for long `||` lists of names while bounding parse time and memory.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;

/// The deepest nesting of parentheses, brackets, calls and conditionals accepted while parsing
/// (cel-rust's recursion limit; its own default is 96).
pub const MAX_NESTING: u16 = 32;

/// The deepest expression tree accepted. Evaluation recurses once per level, at up to ~40 KB
/// of stack in a debug build, and runs on whatever thread asks (a tokio worker has 2 MiB): a
/// left-leaning chain such as `1 + 1 + ...` parses without nesting but evaluates this deep.
/// Real selectors are well under 16 (`||` and `&&` chains are balanced by the parser).
pub const MAX_DEPTH: usize = 32;

/// The most memory a `matches()` pattern may compile to (the regex crate's own default is
/// 10 MiB); patterns are linear-time in any case.
pub const MAX_REGEX_BYTES: usize = 1 << 20;

/// The stack of the thread that parses and checks a selector. The worst inputs the limits let
/// through (32 nested parentheses; 16 KiB chains such as `1+1+...` or `a.f().f()...`, which
/// parse in a loop but build trees as deep as the chain, walked and dropped recursively) fit
/// in 16 MiB in a debug build and overflow 8 MiB: 64 MiB leaves four times the room. Only the
/// pages used are ever touched.
const COMPILE_STACK_BYTES: usize = 64 << 20;

/// The functions and methods of CEL's standard environment (cel-spec's `langdef`), by name.
/// Operators (`_==_`, `@in`, ...) are not listed: the parser alone produces them.
pub const FUNCTIONS: &[&str] = &[
    // Conversions and type tests.
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "string",
    "type",
    "uint",
    // Sizes and strings.
    "contains",
    "endsWith",
    "matches",
    "size",
    "startsWith",
    // Time.
    "duration",
    "timestamp",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
];

/// The standard environment, built once: compiling expands its macros, evaluating resolves its
/// functions.
static ENV: LazyLock<Arc<Env>> =
    LazyLock::new(|| Arc::new(Env::stdlib().with_optional_support(false)));

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// The expression is malformed, too large or calls a function CEL does not define. `line`
    /// and `column` are 1-based.
    #[error("selector parse error at line {line}, column {column}: {msg}")]
    Parse {
        line: usize,
        column: usize,
        msg: String,
    },
    /// A selection entry names an entity kind Plumbline does not know.
    #[error("selection entry {index}: unknown entity kind {kind:?} (expected one of {expected})", expected = ENTITY_KINDS.join(", "))]
    UnknownKind { index: usize, kind: String },
    /// The variables given are not a JSON object of variables (the caller's mistake).
    #[error("selector variables must be a JSON object")]
    Variables,
    /// Evaluation failed: a missing key, a type mismatch, an overflow, ...
    #[error("selector evaluation error: {0}")]
    Eval(#[source] ExecutionError),
    /// The expression evaluated to something other than a bool.
    #[error("selector must evaluate to a bool, got {0}")]
    NotBool(String),
    /// One entry of a selection failed; names the entry by its index and kind.
    #[error("selection entry {index} ({kind}): {source}")]
    Entry {
        index: usize,
        kind: String,
        #[source]
        source: Box<SelectorError>,
    },
}

impl SelectorError {
    /// An error about the whole expression rather than a place in it.
    fn parse(msg: impl Into<String>) -> Self {
        SelectorError::Parse {
            line: 1,
            column: 1,
            msg: msg.into(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Public API

/// One compiled CEL selector expression.
#[derive(Clone)]
pub struct Selector {
    source: String,
    expression: Arc<Expression>,
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Selector {
    /// Two selectors are equal when written alike (compiling is deterministic).
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Selector {
    /// Compiles a selector expression.
    pub fn parse(src: &str) -> Result<Selector, SelectorError> {
        if src.len() > MAX_SOURCE_BYTES {
            return Err(SelectorError::parse(format!(
                "selector is {} bytes long; at most {MAX_SOURCE_BYTES} are accepted",
                src.len()
            )));
        }
        // cel-rust's parser (ANTLR) and every walk of its tree recurse, at up to ~200 KB of stack
        // per level in a debug build: they run on a thread of their own with room for the
        // deepest input the limits let through, and a tree too deep to evaluate on an ordinary
        // thread is refused (and dropped) there.
        let compiled = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cel-compile".into())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(scope, || compile(src))
                .map(|handle| handle.join())
        });
        let expression = match compiled {
            Ok(Ok(result)) => result?,
            Ok(Err(_panic)) => {
                return Err(SelectorError::parse("the CEL parser failed on this input"))
            }
            Err(e) => {
                return Err(SelectorError::parse(format!(
                    "could not start the selector compiler: {e}"
                )))
            }
        };
        Ok(Selector {
            source: src.to_string(),
            expression: Arc::new(expression),
        })
    }

    /// Whether the selector matches. `vars` is a JSON object whose top-level keys are the CEL
    /// variables (e.g. `{"repository": {...}}`). A result that is not a bool is an error.
    pub fn matches(&self, vars: &Value) -> Result<bool, SelectorError> {
        self.matches_in(&context(vars)?)
    }

    fn matches_in(&self, context: &Context<'_, '_>) -> Result<bool, SelectorError> {
        match Cel::resolve(&self.expression, context).map_err(SelectorError::Eval)? {
            Cel::Bool(b) => Ok(b),
            other => Err(SelectorError::NotBool(other.type_of().to_string())),
        }
    }

    /// Evaluates the expression to whatever value it produces (for diagnostics and tests).
    pub fn evaluate(&self, vars: &Value) -> Result<Cel, SelectorError> {
        Cel::resolve(&self.expression, &context(vars)?).map_err(SelectorError::Eval)
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
        for (index, (kind, src)) in entries.iter().enumerate() {
            if !kind.is_empty() && !ENTITY_KINDS.contains(&kind.as_str()) {
                return Err(SelectorError::UnknownKind {
                    index,
                    kind: kind.clone(),
                });
            }
            let selector = Selector::parse(src).map_err(|e| entry_error(index, kind, e))?;
            compiled.push((kind.clone(), selector));
        }
        Ok(Selection { entries: compiled })
    }

    /// Whether an entity of `entity_kind` with variables `vars` is selected: every selector for
    /// that kind (and every kind-less one) must match, as in Minder. No selectors: `true`.
    /// Selectors run in order and stop at the first that does not match.
    /// The variables are converted to CEL values once, by the first selector that applies,
    /// and shared by the rest (this runs per entity and profile in the evaluator).
    pub fn matches(&self, entity_kind: &str, vars: &Value) -> Result<bool, SelectorError> {
        let mut shared = None;
        for (index, (kind, selector)) in self.entries.iter().enumerate() {
            if !kind.is_empty() && kind != entity_kind {
                continue;
            }
            let context = match &mut shared {
                Some(c) => c,
                None => shared.insert(context(vars).map_err(|e| entry_error(index, kind, e))?),
            };
            if !selector
                .matches_in(context)
                .map_err(|e| entry_error(index, kind, e))?
            {
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

fn entry_error(index: usize, kind: &str, source: SelectorError) -> SelectorError {
    SelectorError::Entry {
        index,
        kind: if kind.is_empty() {
            "any entity".to_string()
        } else {
            kind.to_string()
        },
        source: Box::new(source),
    }
}

/// Operators are the parser's own names (`_==_`, `_[_]`, `!_`, `@in`, ...): each has a character
/// no CEL identifier can.
fn is_operator(name: &str) -> bool {
    name.chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
}

/// The CEL variables of a JSON object of them, in the standard environment.
fn context(vars: &Value) -> Result<Context<'static, 'static>, SelectorError> {
    let Value::Object(vars) = vars else {
        return Err(SelectorError::Variables);
    };
    let mut context = Context::with_env(Arc::clone(&ENV));
    for (name, value) in vars {
        context.add_variable_as_val(name.as_str(), to_val(value)?);
    }
    Ok(context)
}

/// One JSON value as a CEL value: integral numbers as `int` (`uint` beyond `i64::MAX`), others as
/// `double`, objects as maps with string keys.
fn to_val(value: &Value) -> Result<Box<dyn Val>, SelectorError> {
    let value = cel::to_value(value).map_err(|e| {
        SelectorError::Eval(ExecutionError::function_error("variables", e.to_string()))
    })?;
    Box::<dyn Val>::try_from(value).map_err(SelectorError::Eval)
}

/// Parses `src`, refuses what [`check_tree`] refuses and calls to functions CEL does not
/// define. Runs on the compile thread: everything here may recurse as deep as the input.
fn compile(src: &str) -> Result<Expression, SelectorError> {
    let expression = ENV
        .parser()
        .max_recursion_depth(MAX_NESTING)
        .parse(src)
        .map_err(parse_error)?;
    check_tree(&expression)?;
    if let Some(unknown) = expression
        .references()
        .functions()
        .into_iter()
        .filter(|name| !is_operator(name) && !FUNCTIONS.contains(name))
        .min()
    {
        return Err(SelectorError::parse(format!(
            "unknown function {unknown}()"
        )));
    }
    Ok(expression)
}

/// Checks what parsing cannot: the tree's depth (evaluation recurses once per level), that no
/// comprehension holds another (cel-rust has no cost limit, and nested or chained macros take
/// time or memory exponential in the selector: `l.all(a, l.all(b, ...))` runs len(l)^n steps,
/// `l.map(s, s + s).map(s, s + s)...` doubles a string n times), and that every `matches()`
/// pattern is a literal that compiles within [`MAX_REGEX_BYTES`] (so a bad pattern is refused
/// when the profile is applied, not on every entity). Counted without recursing: the tree may
/// be thousands of levels deep when this runs.
fn check_tree(root: &Expression) -> Result<(), SelectorError> {
    let mut deepest = 0;
    let mut problem = None;
    let mut pending: Vec<(&Expression, usize, bool)> = vec![(root, 1, false)];
    while let Some((node, level, in_comprehension)) = pending.pop() {
        deepest = deepest.max(level);
        let mut push = |child, inside| pending.push((child, level + 1, inside));
        match &node.expr {
            Expr::Call(call) => {
                if call.func_name == "matches" && problem.is_none() {
                    problem = check_pattern(call.args.last());
                }
                if let Some(target) = &call.target {
                    push(target, in_comprehension);
                }
                call.args.iter().for_each(|a| push(a, in_comprehension));
            }
            Expr::Comprehension(c) => {
                if in_comprehension && problem.is_none() {
                    problem = Some(
                        "a macro (all, exists, exists_one, map, filter) may not range over or \
                         contain another: nested macros take time exponential in the selector"
                            .to_string(),
                    );
                }
                for child in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    push(child, true);
                }
            }
            Expr::List(list) => list.elements.iter().for_each(|e| push(e, in_comprehension)),
            Expr::Map(map) => map
                .entries
                .iter()
                .for_each(|entry| entry_children(entry, &mut |c| push(c, in_comprehension))),
            Expr::Struct(fields) => fields
                .entries
                .iter()
                .for_each(|entry| entry_children(entry, &mut |c| push(c, in_comprehension))),
            Expr::Select(select) => push(&select.operand, in_comprehension),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    if deepest > MAX_DEPTH {
        return Err(SelectorError::parse(format!(
            "expression is nested {deepest} deep; at most {MAX_DEPTH} levels are accepted"
        )));
    }
    problem.map_or(Ok(()), |msg| Err(SelectorError::parse(msg)))
}

/// Why a `matches()` pattern is refused, if it is.
fn check_pattern(pattern: Option<&Expression>) -> Option<String> {
    let Some(Expr::Literal(LiteralValue::String(pattern))) = pattern.map(|p| &p.expr) else {
        return Some("the pattern of matches() must be a string literal".to_string());
    };
    regex::RegexBuilder::new(pattern.inner())
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .err()
        .map(|e| format!("matches() pattern {:?} is refused: {e}", pattern.inner()))
}

fn entry_children<'a>(entry: &'a IdedEntryExpr, push: &mut impl FnMut(&'a Expression)) {
    match &entry.expr {
        EntryExpr::MapEntry(e) => {
            push(&e.key);
            push(&e.value);
        }
        EntryExpr::StructField(f) => push(&f.value),
    }
}

/// cel-rust reports every syntax error it found; the first is the one to fix.
fn parse_error(errors: cel::ParseErrors) -> SelectorError {
    let Some(first) = errors.errors.into_iter().next() else {
        return SelectorError::parse("invalid expression");
    };
    let (line, column) = first.pos;
    // cel-rust wraps its recursion limit in a debug-printed syntax error; say it plainly.
    let msg = if first.msg.contains("Recursion limit") {
        format!("expression is nested more than {MAX_NESTING} levels deep")
    } else {
        first.msg
    };
    SelectorError::Parse {
        line: usize::try_from(line).unwrap_or(1).max(1),
        column: usize::try_from(column).unwrap_or(1).max(1),
        msg,
    }
}

#[cfg(test)]
mod tests {
    //! Today's selector behaviour, kept as cel-rust's conformance suite: every expression the
    //! hand-written subset accepted still means the same, and what it refused is now either CEL
    //! that works (`matches`, timestamps, durations, uint) or still an error.
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
        Selector::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .matches(vars)
    }

    fn is_true(src: &str) -> bool {
        eval(src, &repo("stacklok/minder")).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn value(src: &str) -> Cel {
        Selector::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .evaluate(&repo("stacklok/minder"))
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn eval_err(src: &str) -> ExecutionError {
        match Selector::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .evaluate(&repo("stacklok/minder"))
        {
            Err(SelectorError::Eval(e)) => e,
            other => panic!("{src}: expected an evaluation error, got {other:?}"),
        }
    }

    fn no_such_key(src: &str) -> String {
        match eval_err(src) {
            ExecutionError::NoSuchKey(key) => key.to_string(),
            other => panic!("{src}: expected a missing key, got {other:?}"),
        }
    }

    fn parse_err(src: &str) -> (usize, usize, String) {
        match Selector::parse(src) {
            Err(SelectorError::Parse { line, column, msg }) => (line, column, msg),
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
        assert!(matches!(
            eval_err("repository.labels[2] == 'x'"),
            ExecutionError::IndexOutOfBounds(_)
        ));
        assert_eq!(
            no_such_key("repository.properties['github/nope'] == 'x'"),
            "github/nope"
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
        assert_eq!(no_such_key("has(repository.nope.deeper)"), "nope");
        eval_err("has(repository.name.x)");
        parse_err("has(repository['x'])");
        parse_err("has(repository)");
    }

    #[test]
    fn missing_field_and_variable() {
        assert_eq!(no_such_key("repository.nope == 'x'"), "nope");
        assert!(matches!(
            eval_err("artifact.name == 'x'"),
            ExecutionError::UndeclaredReference(name) if name.as_str() == "artifact"
        ));
        eval_err("repository.name.first == 'x'");
        assert_eq!(
            Selector::parse("true").unwrap().matches(&json!([1])),
            Err(SelectorError::Variables)
        );
    }

    #[test]
    fn non_bool_result_is_an_error() {
        assert_eq!(
            eval("repository.name", &repo("a/b")),
            Err(SelectorError::NotBool("string".into()))
        );
        assert_eq!(
            eval("1 + 1", &repo("a/b")),
            Err(SelectorError::NotBool("int".into()))
        );
        assert_eq!(
            eval("null", &repo("a/b")),
            Err(SelectorError::NotBool("null".into()))
        );
    }

    #[test]
    fn parse_errors_name_line_and_column() {
        assert_eq!(parse_err("repository.name ==").0, 1);
        let (line, column, _) = parse_err("repository.name = 'x'");
        assert_eq!((line, column), (1, 17));
        let (line, column, _) = parse_err("a &&\n  b ==");
        assert_eq!((line, column), (2, 7));
        let (line, column, msg) = parse_err("a b");
        assert_eq!((line, column), (1, 3));
        assert!(msg.contains("'b'"), "{msg}");
        for src in [
            "repository.name.startsWith('x'",
            "a && 'unterminated",
            "a && 'line\nbreak'",
            "a b",
            "(a",
            "",
            "a.",
            "a #",
            "'\\q'",
            "a.exists(x.y, true)",
            "9223372036854775808 > 1",
            "{'a': 1}.?a",
        ] {
            parse_err(src);
        }
    }

    #[test]
    fn unknown_functions_are_refused_when_compiled() {
        assert_eq!(parse_err("foo(1)").2, "unknown function foo()");
        assert_eq!(parse_err("a.b.lower()").2, "unknown function lower()");
        assert_eq!(
            parse_err("a.lowerAscii() == 'x' || zeta(1) || alpha()").2,
            "unknown function alpha()"
        );
        assert!(parse_err("base64.encode(b'a') == ''")
            .2
            .contains("unknown function"));
        assert!(parse_err("optional.of(1).hasValue()")
            .2
            .contains("unknown function"));
        // Every listed function resolves in the environment: none is refused at evaluation.
        for src in [
            "bool('true') && bytes('a') == b'a' && double(1) == 1.0 && dyn(1) == 1",
            "int('1') == 1 && string(1) == '1' && type(1) == int && uint(1) == 1u",
            "'abc'.contains('b') && 'abc'.endsWith('c') && 'abc'.matches('^a') && size('abc') == 3",
            "'abc'.startsWith('a') && duration('1h') > duration('1m')",
            "timestamp('2024-02-29T12:34:56.789Z').getDate() == 29",
            "timestamp('2024-02-29T12:34:56.789Z').getDayOfMonth() == 28",
            "timestamp('2024-02-29T12:34:56.789Z').getDayOfWeek() == 4",
            "timestamp('2024-02-29T12:34:56.789Z').getDayOfYear() == 59",
            "timestamp('2024-02-29T12:34:56.789Z').getFullYear() == 2024",
            "timestamp('2024-02-29T12:34:56.789Z').getHours() == 12",
            "timestamp('2024-02-29T12:34:56.789Z').getMilliseconds() == 789",
            "timestamp('2024-02-29T12:34:56.789Z').getMinutes() == 34",
            "timestamp('2024-02-29T12:34:56.789Z').getMonth() == 1",
            "timestamp('2024-02-29T12:34:56.789Z').getSeconds() == 56",
        ] {
            assert!(is_true(src), "{src}");
        }
    }

    #[test]
    fn bounds_are_errors_not_overflows() {
        let nested = format!("{}true{}", "(".repeat(200), ")".repeat(200));
        parse_err(&nested);
        let deep = format!("{}true{}", "(".repeat(50_000), ")".repeat(50_000));
        assert!(deep.len() > MAX_SOURCE_BYTES);
        assert!(parse_err(&deep).2.contains("at most"));
        // A run of negations is one level in the grammar, not one per `!`.
        let negations = format!("{}true", "!".repeat(10_000));
        assert!(eval(&negations, &json!({})).unwrap());
        let (_, _, msg) = parse_err(&format!("{}1{}", "(".repeat(40), ")".repeat(40)));
        assert_eq!(msg, "expression is nested more than 32 levels deep");
        let (_, _, msg) = parse_err(&vec!["1"; 40].join(" + "));
        assert_eq!(
            msg,
            "expression is nested 40 deep; at most 32 levels are accepted"
        );
        let lists = format!("{}1{}", "[".repeat(4_000), "]".repeat(4_000));
        parse_err(&lists);
        // Logical chains are balanced: four hundred names in one `||` list are fine.
        assert!(Selector::parse(&vec!["true"; 1000].join(" && ")).is_ok());
        let names: Vec<String> = (0..400)
            .map(|n| format!("repository.name == 'org/r{n}'"))
            .collect();
        assert!(!eval(&names.join(" || "), &repo("org/other")).unwrap());
        assert!(eval(&names.join(" || "), &repo("org/r399")).unwrap());
    }

    /// The deepest selector of each shape that compiles still evaluates on a thread with a tokio
    /// worker's stack (2 MiB), in this debug build, where frames are largest.
    #[test]
    fn the_deepest_accepted_selectors_evaluate_on_a_worker_stack() {
        type Shape = fn(usize) -> String;
        let shapes: [(&str, Shape); 5] = [
            ("sum", |n| vec!["1"; n].join(" + ") + " > 0"),
            ("concat", |n| {
                vec!["repository.name"; n].join(" + ") + " != ''"
            }),
            ("member", |n| format!("has(repository{})", ".a".repeat(n))),
            ("exists", |n| {
                format!("repository.labels.exists(l, {}'' != '')", "l + ".repeat(n))
            }),
            ("ternary", |n| {
                let mut src = "true".to_string();
                for _ in 0..n {
                    src = format!("repository.is_fork ? false : ({src})");
                }
                src
            }),
        ];
        for (name, shape) in shapes {
            let deepest = (1..200)
                .take_while(|&n| Selector::parse(&shape(n)).is_ok())
                .last()
                .unwrap_or_else(|| panic!("{name}: nothing compiles"));
            assert!(deepest < 199, "{name}: no limit reached");
            let selector = Selector::parse(&shape(deepest)).unwrap();
            let result = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || selector.evaluate(&repo("stacklok/minder")).map(|_| ()))
                .unwrap()
                .join()
                .unwrap();
            // `member` ends in a missing key; evaluating to an error is fine, overflowing is not.
            if name != "member" {
                result.unwrap_or_else(|e| panic!("{name} at {deepest}: {e}"));
            }
        }
    }

    #[test]
    fn macros_may_not_nest_or_chain() {
        let nested = "repository.labels.all(a, repository.labels.all(b, a != b || a == b))";
        assert!(parse_err(nested)
            .2
            .contains("may not range over or contain another"));
        let chained = "repository.labels.map(s, s + s).map(s, s + s).size() > 0";
        assert!(parse_err(chained)
            .2
            .contains("may not range over or contain another"));
        let in_range = "[1].map(x, x).exists(y, y == 1)";
        parse_err(in_range);
        // Side by side is fine: each is linear in its list.
        assert!(is_true(
            "repository.labels.exists(l, l == 'prod') && repository.labels.all(l, l.size() > 0)"
        ));
    }

    #[test]
    fn matches_patterns_are_literals_checked_when_compiled() {
        assert!(is_true("repository.name.matches('^stacklok/')"));
        assert!(is_true("matches(repository.name, '^stacklok/')"));
        assert_eq!(
            parse_err("repository.name.matches(repository.name)").2,
            "the pattern of matches() must be a string literal"
        );
        assert!(parse_err("repository.name.matches('(')")
            .2
            .contains("is refused"));
        let huge = "repository.name.matches('(a{1000}){1000}')";
        assert!(
            parse_err(huge).2.contains("is refused"),
            "{:?}",
            parse_err(huge)
        );
    }

    /// Chains the grammar parses in a loop still make trees (and parse trees) as deep as the
    /// chain: at the longest source accepted, each is refused without exhausting the compile
    /// thread's stack.
    #[test]
    fn the_longest_chains_are_refused_not_overflowed() {
        let fill = |unit: &str, tail: &str| {
            let n = (MAX_SOURCE_BYTES - tail.len()) / unit.len();
            format!("{}{tail}", unit.repeat(n))
        };
        for src in [
            fill("1 + ", "1 > 0"),
            fill("1+", "1>0"),
            fill("a==", "a"),
            fill("1<", "2"),
            fill("a*", "a"),
            fill("-", "1 == 1"),
            fill("x[0]", ""),
            fill(".a", ""),
            fill(".f()", ""),
            format!("a{}", ".f()".repeat((MAX_SOURCE_BYTES - 1) / 4)),
            format!("a{}", "[0]".repeat((MAX_SOURCE_BYTES - 1) / 3)),
            format!("a{}", ".b".repeat((MAX_SOURCE_BYTES - 1) / 2)),
        ] {
            assert!(src.len() <= MAX_SOURCE_BYTES);
            let _ = Selector::parse(&src);
        }
    }

    #[test]
    fn what_the_subset_refused_now_works() {
        assert!(is_true(
            "repository.name.matches('^stacklok/(minder|quiver)$')"
        ));
        assert!(!is_true("repository.name.matches('^other/')"));
        assert!(is_true(
            "5u + 1u == 6u && uint(repository.properties['github/repo_id']) == 42u"
        ));
        assert!(is_true(
            "timestamp('2026-01-02T00:00:00Z') - timestamp('2026-01-01T00:00:00Z') == duration('24h')"
        ));
        assert!(is_true("b'abc' == bytes('abc')"));
        // JSON integers beyond i64 arrive as uint.
        let big = json!({"repository": {"n": u64::MAX}});
        assert!(eval("repository.n == 18446744073709551615u", &big).unwrap());
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
        assert_eq!(no_such_key("repository.nope || false"), "nope");
        eval_err("true && 1");
        assert!(is_true("[1, 2].exists(x, x == 2 || repository.nope)"));
        assert!(is_true("[0, 2].exists(x, 4 / x == 2)"));
        assert!(matches!(
            eval_err("[0, 1].exists(x, 4 / x == 2)"),
            ExecutionError::DivisionByZero(_)
        ));
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
        assert!(is_true("dyn(1) == 1 // a trailing comment"));
        assert_eq!(value("1.5 + 1.5"), Cel::Float(3.0));
        assert_eq!(value("'a' + 'b'"), Cel::from("ab"));
    }

    #[test]
    fn type_errors() {
        for src in [
            "1 < 'a'",
            "1 + 1.5 == 2.5",
            "'a' - 'b' == ''",
            "[1] < [2]",
            "9223372036854775807 + 1 > 0",
            "1 % 0 == 0",
            "int('x') == 1",
            "size(1) == 1",
            "repository.name.startsWith(1)",
            "1 in 'abc'",
            "{'a': 1, 'a': 2}.size() == 1",
            "'x'.exists(c, true)",
            "(1 ? true : false)",
        ] {
            eval_err(src);
        }
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
        let e = sel.matches("artifact", &json!({})).unwrap_err();
        assert!(matches!(
            &e,
            SelectorError::Entry { index: 2, kind, source }
                if kind == "artifact" && matches!(**source, SelectorError::Eval(ExecutionError::UndeclaredReference(_)))
        ));
        assert_eq!(
            e.to_string(),
            "selection entry 2 (artifact): selector evaluation error: Undeclared reference to 'artifact'"
        );
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
        assert_eq!(
            e,
            SelectorError::UnknownKind {
                index: 0,
                kind: "repositories".into()
            }
        );
        assert!(e
            .to_string()
            .contains("unknown entity kind \"repositories\""));
        let e = Selection::compile(&[
            ("repository".into(), "true".into()),
            ("repository".into(), "a ==".into()),
        ])
        .unwrap_err();
        assert!(matches!(
            &e,
            SelectorError::Entry { index: 1, kind, source }
                if kind == "repository" && matches!(**source, SelectorError::Parse { line: 1, .. })
        ));
        assert!(e
            .to_string()
            .starts_with("selection entry 1 (repository): selector parse error at line 1"));
    }
}
