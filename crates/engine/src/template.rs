//! A Go `text/template` subset over JSON values, as Minder uses it in rule types.
//!
//! Supported: text and actions with `{{-`/`-}}` trimming, comments, pipelines with `|`,
//! variables (`$x := ...`, `$x = ...`, `$`), field chains on `.`/variables/parenthesised
//! pipelines, literals (strings, raw strings, numbers, booleans, nil), `if`/`else if`/`else`,
//! `range` (with one or two variables and `else`), `with`, and the functions `index`, `len`,
//! `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `not`, `and`, `or`, `print`, `printf`, `println`,
//! `mapGet`, `toJson`. Semantics follow Go: a missing map key is nil and prints `<no value>`;
//! `and`/`or` return one of their operands; truthiness is Go's (false, 0, nil and empty values
//! are false). A template is parsed once and rendered many times.

use serde_json::Value;
use std::fmt::Write as _;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TemplateError {
    #[error("template parse error at byte {pos}: {msg}")]
    Parse { pos: usize, msg: String },
    #[error("template execution error: {0}")]
    Exec(String),
}

fn perr<T>(pos: usize, msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Parse {
        pos,
        msg: msg.into(),
    })
}

fn xerr<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Exec(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Output(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        decl: Vec<String>,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// A pipeline, optionally declaring (`:=`) or assigning (`=`) variables.
#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    decl: Vec<String>,
    is_assign: bool,
    cmds: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Literal(Value),
    /// `.A.B` (empty chain: `.`)
    Dot(Vec<String>),
    /// `$x.A.B` (`$` alone is the name "$")
    Var(String, Vec<String>),
    Func(String),
    /// `(pipeline).A.B`
    Sub(Box<Pipeline>, Vec<String>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

// ------------------------------------------------------------------------------------------------
// Lexing actions

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Var(String),
    Str(String),
    Num(Value),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

fn lex_action(src: &str, base: usize) -> Result<Vec<(usize, Tok)>, TemplateError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '|' => {
                out.push((base + i, Tok::Pipe));
                i += 1;
            }
            '(' => {
                out.push((base + i, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((base + i, Tok::RParen));
                i += 1;
            }
            ',' => {
                out.push((base + i, Tok::Comma));
                i += 1;
            }
            ':' if b.get(i + 1) == Some(&b'=') => {
                out.push((base + i, Tok::Declare));
                i += 2;
            }
            '=' => {
                out.push((base + i, Tok::Assign));
                i += 1;
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&ch) = b.get(i) else {
                        return perr(base + start, "unterminated string");
                    };
                    match ch {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            let esc = b.get(i + 1).copied().unwrap_or(b'\\');
                            match esc {
                                b'n' => s.push('\n'),
                                b't' => s.push('\t'),
                                b'r' => s.push('\r'),
                                b'"' => s.push('"'),
                                b'\\' => s.push('\\'),
                                other => {
                                    s.push('\\');
                                    s.push(other as char);
                                }
                            }
                            i += 2;
                        }
                        _ => {
                            // Copy a whole UTF-8 character.
                            let rest = &src[i..];
                            let ch = rest.chars().next().unwrap_or('\u{fffd}');
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push((base + start, Tok::Str(s)));
            }
            '`' => {
                let rest = &src[i + 1..];
                let Some(end) = rest.find('`') else {
                    return perr(base + start, "unterminated raw string");
                };
                out.push((base + start, Tok::Str(rest[..end].to_string())));
                i += end + 2;
            }
            '.' | '$' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let name = &src[start + 1..i];
                if c == '.' {
                    out.push((base + start, Tok::Field(name.to_string())));
                } else {
                    out.push((base + start, Tok::Var(format!("${name}"))));
                }
            }
            _ if c.is_ascii_digit()
                || (c == '-' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
                let text = &src[start..i];
                let v = if let Ok(n) = text.parse::<i64>() {
                    Value::from(n)
                } else if let Ok(f) = text.parse::<f64>() {
                    Value::from(f)
                } else {
                    return perr(base + start, format!("bad number {text:?}"));
                };
                out.push((base + start, Tok::Num(v)));
            }
            _ if c.is_alphabetic() || c == '_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push((base + start, Tok::Ident(src[start..i].to_string())));
            }
            _ => return perr(base + i, format!("unexpected character {c:?}")),
        }
    }
    Ok(out)
}

struct PipeParser<'a> {
    toks: &'a [(usize, Tok)],
    i: usize,
    end_pos: usize,
}

impl PipeParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|t| t.0).unwrap_or(self.end_pos)
    }

    fn pipeline(&mut self, allow_decl: bool) -> Result<Pipeline, TemplateError> {
        let mut decl = Vec::new();
        let mut is_assign = false;
        if allow_decl {
            // `$x :=`, `$x =`, `$i, $v :=`
            let save = self.i;
            let mut vars = Vec::new();
            while let Some(Tok::Var(v)) = self.peek() {
                vars.push(v.clone());
                self.i += 1;
                if self.peek() == Some(&Tok::Comma) {
                    self.i += 1;
                    continue;
                }
                break;
            }
            match self.peek() {
                Some(Tok::Declare) if !vars.is_empty() => {
                    self.i += 1;
                    decl = vars;
                }
                Some(Tok::Assign) if vars.len() == 1 => {
                    self.i += 1;
                    decl = vars;
                    is_assign = true;
                }
                _ => self.i = save,
            }
        }
        let mut cmds = vec![self.command()?];
        while self.peek() == Some(&Tok::Pipe) {
            self.i += 1;
            cmds.push(self.command()?);
        }
        Ok(Pipeline {
            decl,
            is_assign,
            cmds,
        })
    }

    fn fields(&mut self) -> Vec<String> {
        let mut f = Vec::new();
        while let Some(Tok::Field(name)) = self.peek() {
            if name.is_empty() {
                break;
            }
            f.push(name.clone());
            self.i += 1;
        }
        f
    }

    fn command(&mut self) -> Result<Command, TemplateError> {
        let mut args = Vec::new();
        loop {
            let pos = self.pos();
            let arg = match self.peek().cloned() {
                None | Some(Tok::Pipe) | Some(Tok::RParen) => break,
                Some(Tok::Field(name)) => {
                    self.i += 1;
                    let mut chain = if name.is_empty() { vec![] } else { vec![name] };
                    chain.extend(self.fields());
                    Arg::Dot(chain)
                }
                Some(Tok::Var(v)) => {
                    self.i += 1;
                    Arg::Var(v, self.fields())
                }
                Some(Tok::Str(s)) => {
                    self.i += 1;
                    Arg::Literal(Value::String(s))
                }
                Some(Tok::Num(n)) => {
                    self.i += 1;
                    Arg::Literal(n)
                }
                Some(Tok::Ident(id)) => {
                    self.i += 1;
                    match id.as_str() {
                        "true" => Arg::Literal(Value::Bool(true)),
                        "false" => Arg::Literal(Value::Bool(false)),
                        "nil" => Arg::Literal(Value::Null),
                        _ => Arg::Func(id),
                    }
                }
                Some(Tok::LParen) => {
                    self.i += 1;
                    let inner = self.pipeline(false)?;
                    if self.peek() != Some(&Tok::RParen) {
                        return perr(self.pos(), "missing )");
                    }
                    self.i += 1;
                    Arg::Sub(Box::new(inner), self.fields())
                }
                Some(t) => return perr(pos, format!("unexpected {t:?}")),
            };
            args.push(arg);
        }
        if args.is_empty() {
            return perr(self.pos(), "empty command");
        }
        Ok(Command { args })
    }
}

fn parse_pipeline(src: &str, base: usize, allow_decl: bool) -> Result<Pipeline, TemplateError> {
    let toks = lex_action(src, base)?;
    let mut p = PipeParser {
        toks: &toks,
        i: 0,
        end_pos: base + src.len(),
    };
    let pipe = p.pipeline(allow_decl)?;
    if p.i != toks.len() {
        return perr(p.pos(), "unexpected tokens after pipeline");
    }
    Ok(pipe)
}

// ------------------------------------------------------------------------------------------------
// Parsing the template structure

enum Item {
    Text(String),
    Action { pos: usize, body: String },
}

fn split(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut offset = 0;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let inner_start = if trim_left { 1 } else { 0 };
        let after_inner = &after[inner_start..];
        // A comment may contain "}}".
        let close = if after_inner.trim_start().starts_with("/*") {
            match after_inner.find("*/") {
                Some(c) => after_inner[c..].find("}}").map(|d| c + d),
                None => None,
            }
        } else {
            find_close(after_inner)
        };
        let Some(close) = close else {
            return perr(offset + open, "unclosed action");
        };
        let mut body = &after_inner[..close];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        items.push(Item::Action {
            pos: offset + open + 2 + inner_start,
            body: body.to_string(),
        });
        let consumed = open + 2 + inner_start + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    let mut text = rest;
    if trim_next {
        text = text.trim_start();
    }
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
    Ok(items)
}

/// The position of the closing `}}` of an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

enum Stop {
    End,
    Else(Option<(usize, String)>),
    Eof,
}

struct TreeParser {
    items: Vec<Item>,
    i: usize,
}

impl TreeParser {
    fn list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while self.i < self.items.len() {
            let idx = self.i;
            self.i += 1;
            let (pos, body) = match &self.items[idx] {
                Item::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    continue;
                }
                Item::Action { pos, body } => (*pos, body.clone()),
            };
            let trimmed = body.trim();
            if trimmed.starts_with("/*") {
                continue;
            }
            let (kw, rest) = match trimmed.split_once(char::is_whitespace) {
                Some((k, r)) => (k, r.trim()),
                None => (trimmed, ""),
            };
            let rest_pos = pos + body.find(rest).unwrap_or(0);
            match kw {
                "end" => return Ok((nodes, Stop::End)),
                "else" => {
                    let cond = if rest.is_empty() {
                        None
                    } else {
                        Some((rest_pos, rest.to_string()))
                    };
                    return Ok((nodes, Stop::Else(cond)));
                }
                "if" => nodes.push(self.if_node(rest_pos, rest)?),
                "range" => {
                    let pipe = parse_pipeline(rest, rest_pos, true)?;
                    let (body, otherwise) = self.body_else(pos, "range")?;
                    let decl = pipe.decl.clone();
                    nodes.push(Node::Range {
                        decl,
                        pipe: Pipeline {
                            decl: vec![],
                            ..pipe
                        },
                        body,
                        otherwise,
                    });
                }
                "with" => {
                    let pipe = parse_pipeline(rest, rest_pos, true)?;
                    let (body, otherwise) = self.body_else(pos, "with")?;
                    nodes.push(Node::With {
                        pipe,
                        body,
                        otherwise,
                    });
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return perr(pos, format!("{kw:?} is not supported"));
                }
                _ => nodes.push(Node::Output(parse_pipeline(
                    trimmed,
                    pos + body.find(trimmed).unwrap_or(0),
                    true,
                )?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn body_else(
        &mut self,
        pos: usize,
        what: &str,
    ) -> Result<(Vec<Node>, Vec<Node>), TemplateError> {
        let (body, stop) = self.list()?;
        match stop {
            Stop::End => Ok((body, vec![])),
            Stop::Else(None) => {
                let (otherwise, stop) = self.list()?;
                match stop {
                    Stop::End => Ok((body, otherwise)),
                    _ => perr(pos, format!("{what} without end")),
                }
            }
            Stop::Else(Some(_)) => perr(pos, format!("else if inside {what}")),
            Stop::Eof => perr(pos, format!("{what} without end")),
        }
    }

    fn if_node(&mut self, pos: usize, cond: &str) -> Result<Node, TemplateError> {
        let mut branches = vec![];
        let mut cond = (pos, cond.to_string());
        loop {
            let pipe = parse_pipeline(&cond.1, cond.0, true)?;
            let (body, stop) = self.list()?;
            branches.push((pipe, body));
            match stop {
                Stop::End => {
                    return Ok(Node::If {
                        branches,
                        otherwise: vec![],
                    })
                }
                Stop::Else(Some(next)) => {
                    let Some(c) = next.1.strip_prefix("if") else {
                        return perr(next.0, "else must be followed by if or nothing");
                    };
                    cond = (next.0 + 2, c.trim().to_string());
                }
                Stop::Else(None) => {
                    let (otherwise, stop) = self.list()?;
                    return match stop {
                        Stop::End => Ok(Node::If {
                            branches,
                            otherwise,
                        }),
                        _ => perr(pos, "if without end"),
                    };
                }
                Stop::Eof => return perr(pos, "if without end"),
            }
        }
    }
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let items = split(src)?;
        let mut p = TreeParser { items, i: 0 };
        let (nodes, stop) = p.list()?;
        match stop {
            Stop::Eof => Ok(Template { nodes }),
            Stop::End => perr(src.len(), "unexpected end"),
            Stop::Else(_) => perr(src.len(), "unexpected else"),
        }
    }

    /// Renders with `data` as dot.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        self.render_as(data, Escape::None)
    }

    /// Renders a URL path (and query): the template's own text is kept as written, and every
    /// value it prints is percent-encoded for where it lands, as one path segment before a `?`
    /// and as one query component after it. A value cannot add segments, a query or a
    /// fragment; a value that is only dots (`.`, `..`) is refused, since it would move the
    /// path rather than name something in it.
    pub fn render_url(&self, data: &Value) -> Result<String, TemplateError> {
        self.render_as(data, Escape::Url)
    }

    fn render_as(&self, data: &Value, esc: Escape) -> Result<String, TemplateError> {
        let mut out = Out {
            buf: String::new(),
            esc,
        };
        let mut vars = vec![("$".to_string(), data.clone())];
        exec_list(&self.nodes, data, &mut vars, &mut out)?;
        Ok(out.buf)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Escape {
    None,
    Url,
}

/// Rendered text, and how printed values are escaped into it.
struct Out {
    buf: String,
    esc: Escape,
}

impl Out {
    fn emit(&mut self, value: &str) -> Result<(), TemplateError> {
        if self.esc == Escape::None {
            self.buf.push_str(value);
            return Ok(());
        }
        let in_query = self.buf.contains('?');
        if !in_query && !value.is_empty() && value.bytes().all(|b| b == b'.') {
            return xerr(format!(
                "the value {value:?} may not be printed into a URL path"
            ));
        }
        self.buf.push_str(&crate::scope::encode_segment(value));
        Ok(())
    }
}

/// Parses and renders in one step.
pub fn render(src: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse(src)?.render(data)
}

// ------------------------------------------------------------------------------------------------
// Execution

type Vars = Vec<(String, Value)>;

fn exec_list(
    nodes: &[Node],
    dot: &Value,
    vars: &mut Vars,
    out: &mut Out,
) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.buf.push_str(t),
            Node::Output(p) => {
                let v = eval_pipe(p, dot, vars)?;
                if p.decl.is_empty() {
                    out.emit(&print_value(&v))?;
                }
            }
            Node::If {
                branches,
                otherwise,
            } => {
                let mark = vars.len();
                let mut done = false;
                for (cond, body) in branches {
                    let v = eval_pipe(cond, dot, vars)?;
                    if truthy(&v) {
                        exec_list(body, dot, vars, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    exec_list(otherwise, dot, vars, out)?;
                }
                vars.truncate(mark);
            }
            Node::With {
                pipe,
                body,
                otherwise,
            } => {
                let mark = vars.len();
                let v = eval_pipe(pipe, dot, vars)?;
                if truthy(&v) {
                    exec_list(body, &v, vars, out)?;
                } else {
                    exec_list(otherwise, dot, vars, out)?;
                }
                vars.truncate(mark);
            }
            Node::Range {
                decl,
                pipe,
                body,
                otherwise,
            } => {
                let v = eval_pipe(pipe, dot, vars)?;
                let items: Vec<(Value, Value)> = match &v {
                    Value::Array(a) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (Value::from(i), x.clone()))
                        .collect(),
                    // Go ranges over maps in sorted key order; serde_json's map is sorted.
                    Value::Object(m) => m
                        .iter()
                        .map(|(k, x)| (Value::String(k.clone()), x.clone()))
                        .collect(),
                    Value::Null => vec![],
                    Value::Number(n) => match n.as_u64() {
                        Some(c) => (0..c).map(|i| (Value::from(i), Value::from(i))).collect(),
                        None => return xerr(format!("range can't iterate over {n}")),
                    },
                    other => {
                        return xerr(format!("range can't iterate over {}", print_value(other)))
                    }
                };
                if items.is_empty() {
                    exec_list(otherwise, dot, vars, out)?;
                    continue;
                }
                for (k, x) in items {
                    let mark = vars.len();
                    match decl.len() {
                        0 => {}
                        1 => vars.push((decl[0].clone(), x.clone())),
                        _ => {
                            vars.push((decl[0].clone(), k));
                            vars.push((decl[1].clone(), x.clone()));
                        }
                    }
                    exec_list(body, &x, vars, out)?;
                    vars.truncate(mark);
                }
            }
        }
    }
    Ok(())
}

fn eval_pipe(p: &Pipeline, dot: &Value, vars: &mut Vars) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for c in &p.cmds {
        prev = Some(eval_cmd(c, dot, vars, prev)?);
    }
    let v = prev.unwrap_or(Value::Null);
    if !p.decl.is_empty() {
        if p.is_assign {
            let name = &p.decl[0];
            match vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = v.clone(),
                None => return xerr(format!("undefined variable {name}")),
            }
        } else {
            for d in &p.decl {
                vars.push((d.clone(), v.clone()));
            }
        }
    }
    Ok(v)
}

fn field_chain(mut v: Value, chain: &[String]) -> Result<Value, TemplateError> {
    for f in chain {
        v = match v {
            Value::Object(mut m) => m.remove(f).unwrap_or(Value::Null),
            Value::Null => Value::Null,
            other => return xerr(format!("can't evaluate field {f} in {}", type_name(&other))),
        };
    }
    Ok(v)
}

fn eval_arg(a: &Arg, dot: &Value, vars: &mut Vars) -> Result<Value, TemplateError> {
    match a {
        Arg::Literal(v) => Ok(v.clone()),
        Arg::Dot(chain) => field_chain(dot.clone(), chain),
        Arg::Var(name, chain) => match vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => field_chain(v.clone(), chain),
            None => xerr(format!("undefined variable {name}")),
        },
        Arg::Sub(p, chain) => {
            let v = eval_pipe(p, dot, vars)?;
            field_chain(v, chain)
        }
        Arg::Func(f) => call(f, vec![]),
    }
}

fn eval_cmd(
    c: &Command,
    dot: &Value,
    vars: &mut Vars,
    prev: Option<Value>,
) -> Result<Value, TemplateError> {
    match &c.args[0] {
        Arg::Func(name) => {
            // and/or short-circuit.
            if name == "and" || name == "or" {
                let mut last = Value::Null;
                let n = c.args.len() - 1 + prev.is_some() as usize;
                if n == 0 {
                    return xerr(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    ));
                }
                for a in &c.args[1..] {
                    last = eval_arg(a, dot, vars)?;
                    if (name == "and") != truthy(&last) {
                        return Ok(last);
                    }
                }
                if let Some(p) = prev {
                    last = p;
                }
                return Ok(last);
            }
            let mut args = Vec::with_capacity(c.args.len());
            for a in &c.args[1..] {
                args.push(eval_arg(a, dot, vars)?);
            }
            if let Some(p) = prev {
                args.push(p);
            }
            call(name, args)
        }
        first => {
            if c.args.len() > 1 || prev.is_some() {
                return xerr("can't give argument to non-function");
            }
            eval_arg(first, dot, vars)
        }
    }
}

fn want(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return xerr(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
    match name {
        "index" => {
            let mut it = args.into_iter();
            let Some(mut v) = it.next() else {
                return xerr("wrong number of args for index: want at least 1 got 0");
            };
            for k in it {
                v = match (&v, &k) {
                    (Value::Object(m), Value::String(s)) => {
                        m.get(s).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(a), Value::Number(n)) => match n
                        .as_u64()
                        .and_then(|i| a.get(i as usize))
                    {
                        Some(x) => x.clone(),
                        None => {
                            return xerr(format!("error calling index: index out of range: {n}"))
                        }
                    },
                    (Value::Null, _) => return xerr("error calling index: index of untyped nil"),
                    _ => {
                        return xerr(format!(
                            "error calling index: can't index item of type {}",
                            type_name(&v)
                        ))
                    }
                };
            }
            Ok(v)
        }
        "mapGet" => {
            want(name, &args, 2)?;
            match (&args[0], &args[1]) {
                (Value::Object(m), Value::String(k)) => {
                    Ok(m.get(k).cloned().unwrap_or(Value::Null))
                }
                (Value::Null, _) => Ok(Value::Null),
                _ => xerr("mapGet wants a map and a string key"),
            }
        }
        "len" => {
            want(name, &args, 1)?;
            match &args[0] {
                Value::String(s) => Ok(Value::from(s.len())),
                Value::Array(a) => Ok(Value::from(a.len())),
                Value::Object(m) => Ok(Value::from(m.len())),
                Value::Null => Ok(Value::from(0)),
                other => xerr(format!(
                    "error calling len: len of type {}",
                    type_name(other)
                )),
            }
        }
        "not" => {
            want(name, &args, 1)?;
            Ok(Value::Bool(!truthy(&args[0])))
        }
        "eq" => {
            if args.len() < 2 {
                return xerr("wrong number of args for eq: want at least 2");
            }
            Ok(Value::Bool(
                args[1..].iter().any(|b| values_eq(&args[0], b)),
            ))
        }
        "ne" => {
            want(name, &args, 2)?;
            Ok(Value::Bool(!values_eq(&args[0], &args[1])))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            let ord = compare(&args[0], &args[1])?;
            Ok(Value::Bool(match name {
                "lt" => ord.is_lt(),
                "le" => ord.is_le(),
                "gt" => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        "print" => Ok(Value::String(go_print(&args, false))),
        "println" => Ok(Value::String(go_print(&args, true) + "\n")),
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return xerr("wrong number of args for printf");
            };
            let Value::String(fmt) = fmt else {
                return xerr("printf format must be a string");
            };
            Ok(Value::String(printf(fmt, rest)))
        }
        "toJson" => {
            want(name, &args, 1)?;
            serde_json::to_string(&args[0])
                .map(Value::String)
                .map_err(|e| TemplateError::Exec(e.to_string()))
        }
        other => xerr(format!("function {other:?} not defined")),
    }
}

fn go_print(args: &[Value], spaces: bool) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        // Go's Sprint adds spaces between operands when neither is a string.
        let add = spaces || (i > 0 && !a.is_string() && !args[i - 1].is_string());
        if i > 0 && add {
            s.push(' ');
        }
        s.push_str(&print_value(a));
    }
    s
}

fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb) => match it.next() {
                Some(v) => match verb {
                    'q' => {
                        let _ = write!(out, "{}", serde_json::Value::String(print_value(v)));
                    }
                    'd' => out.push_str(
                        &v.as_f64()
                            .map(|f| (f as i64).to_string())
                            .unwrap_or_else(|| format!("%!d({})", print_value(v))),
                    ),
                    _ => out.push_str(&print_value(v)),
                },
                None => {
                    let _ = write!(out, "%!{verb}(MISSING)");
                }
            },
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, TemplateError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y))
            .ok_or_else(|| TemplateError::Exec("incomparable numbers".into())),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => xerr(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

/// Go's truthiness: false, 0, nil, and empty strings, slices and maps are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// Go's `fmt.Print` rendering of a value.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(print_nested).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{k}:{}", print_nested(x)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn print_nested(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        other => print_value(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, d: Value) -> String {
        render(t, &d).unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn minder_branch_endpoint() {
        let t = r#"{{ $branch_param := index .Params "branch" }}/repos/{{.Entity.Owner}}/{{.Entity.Name}}/branches/{{if ne $branch_param "" }}{{ $branch_param }}{{ else }}{{ .Entity.DefaultBranch }}{{ end }}/protection"#;
        let d = json!({"Entity": {"Owner": "o", "Name": "n", "DefaultBranch": "main"}, "Params": {"branch": ""}});
        assert_eq!(r(t, d), "/repos/o/n/branches/main/protection");
        let d = json!({"Entity": {"Owner": "o", "Name": "n", "DefaultBranch": "main"}, "Params": {"branch": "dev"}});
        assert_eq!(r(t, d), "/repos/o/n/branches/dev/protection");
    }

    #[test]
    fn missing_param_prints_no_value_and_index_of_nil_map_errors() {
        assert_eq!(r("{{ .Params.x }}", json!({"Params": {}})), "<no value>");
        assert!(r(r#"{{ index .Params "x" }}"#, json!({})).starts_with("ERR"));
        // `ne` with a nil operand is still defined (not equal).
        assert_eq!(
            r(
                r#"{{ $b := index .Params "branch" }}{{ if ne $b "" }}set{{ else }}unset{{ end }}"#,
                json!({"Params": {}})
            ),
            "set"
        );
    }

    #[test]
    fn range_len_pipes_and_trimming() {
        let d = json!({"Profile": {"languages": ["go", "rust"]}});
        assert_eq!(
            r("{{ if .Profile.languages | len }}yes{{ end }}", d.clone()),
            "yes"
        );
        assert_eq!(
            r("{{range $index, $pattern := .Profile.languages}}{{if $index}}, {{end}}{{ $pattern }}{{end}}", d.clone()),
            "go, rust"
        );
        assert_eq!(r("a  {{- 1 -}}  b", json!({})), "a1b");
        assert_eq!(r("{{/* a comment }} */}}x", json!({})), "x");
        assert_eq!(r(r#"{{"{{"}}x{{"}}"}}"#, json!({})), "{{x}}");
        assert_eq!(
            r(
                "{{ range .x }}{{ . }}{{ else }}none{{ end }}",
                json!({"x": []})
            ),
            "none"
        );
    }

    #[test]
    fn functions() {
        assert_eq!(r(r#"{{ printf "%s-%d" "a" 3 }}"#, json!({})), "a-3");
        assert_eq!(r(r#"{{ eq .a 1 2 3 }}"#, json!({"a": 3})), "true");
        assert_eq!(r(r#"{{ and 1 0 }}|{{ or 0 "x" }}"#, json!({})), "0|x");
        assert_eq!(
            r(
                r#"{{ if .a }}{{ else if .b }}b{{ else }}c{{ end }}"#,
                json!({"b": true})
            ),
            "b"
        );
        assert_eq!(
            r(
                r#"{{ mapGet .Entity.Properties "github/repo" }}"#,
                json!({"Entity": {"Properties": {"github/repo": "r"}}})
            ),
            "r"
        );
        assert!(r("{{ .x.y }}", json!({"x": 1})).starts_with("ERR"));
        assert_eq!(
            r("{{ toJson .x }}", json!({"x": {"a": [1, true]}})),
            r#"{"a":[1,true]}"#
        );
        assert_eq!(r("{{ .v }}", json!({"v": ["a", "b"]})), "[a b]");
        assert_eq!(
            r("{{ with .x }}{{ .y }}{{ end }}", json!({"x": {"y": 2}})),
            "2"
        );
        assert_eq!(r("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", json!({})), "2");
    }

    #[test]
    fn parse_errors_name_the_position() {
        assert!(matches!(
            Template::parse("{{ if .x }}"),
            Err(TemplateError::Parse { .. })
        ));
        assert!(matches!(
            Template::parse("{{ .x "),
            Err(TemplateError::Parse { .. })
        ));
        assert!(matches!(
            Template::parse("{{ end }}"),
            Err(TemplateError::Parse { .. })
        ));
        assert!(matches!(
            render("{{ nosuch 1 }}", &json!({})),
            Err(TemplateError::Exec(_))
        ));
    }
}
