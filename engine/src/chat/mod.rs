//! Chat templates rendered as transformers' `apply_chat_template` renders them.
//!
//! transformers compiles a template in a sandboxed Jinja2 environment with `trim_blocks`,
//! `lstrip_blocks` and the loop-controls extension, adds the globals `raise_exception` and
//! `strftime_now`, replaces the `tojson` filter by one calling Python's `json.dumps` with
//! `ensure_ascii`, `indent`, `separators` and `sort_keys`, and accepts a `{% generation %}`
//! block (it marks assistant text). The template sees `messages`, `tools` and `documents`
//! (None unless given), `add_generation_prompt`, the tokenizer's named special tokens
//! (`bos_token`, `eos_token`, ...) and any extra variables. Jinja2 prints values as Python
//! does (`None`, `True`, `['a', 1]`), so this module prints them that way too.
//!
//! `strftime_now` reads its date from [`ChatOptions::date`], so a sweep renders the same
//! prompts on any day.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use minijinja::value::{Kwargs, Rest};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::error::{EngineError, Result};

mod pyfmt;
mod strftime;

pub use pyfmt::{json_dumps, py_str, DumpOptions};
pub use strftime::ChatDate;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("user", content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("system", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("assistant", content)
    }
}

/// A JSON value handed to a template (tools, documents, extra variables), with object keys in
/// the order the JSON text gives them, as Python's `json.loads` keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateValue(Value);

impl TemplateValue {
    /// Parses JSON text; the error says where the text is invalid.
    pub fn from_json(text: &str) -> std::result::Result<TemplateValue, String> {
        serde_json::from_str::<Value>(text)
            .map(TemplateValue)
            .map_err(|e| format!("invalid JSON: {e}"))
    }

    /// A value from anything serializable (maps keep their own iteration order).
    pub fn from_serialize(value: impl Serialize) -> TemplateValue {
        TemplateValue(Value::from_serialize(value))
    }
}

/// What a render needs beyond the messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOptions {
    /// The date `strftime_now` reports (at midnight). Sweeps set it explicitly (the spec's
    /// `[chat] date`, else the sweep's start date) so that prompts do not depend on the day
    /// they are rendered.
    pub date: ChatDate,
    /// Tool (function) schemas, a JSON list; the template sees `tools = None` without them.
    pub tools: Option<TemplateValue>,
    /// Documents for retrieval-augmented templates, a JSON list; `None` without them.
    pub documents: Option<TemplateValue>,
    /// Further template variables (`apply_chat_template(**kwargs)`), e.g. `enable_thinking`.
    pub variables: BTreeMap<String, TemplateValue>,
}

impl ChatOptions {
    /// Options with the given date and nothing else.
    pub fn on(date: ChatDate) -> ChatOptions {
        ChatOptions {
            date,
            tools: None,
            documents: None,
            variables: BTreeMap::new(),
        }
    }
}

impl Default for ChatOptions {
    /// Today's UTC date: what transformers would render now. Set [`ChatOptions::date`] for
    /// renders that must not change from one day to the next.
    fn default() -> Self {
        ChatOptions::on(ChatDate::today_utc())
    }
}

/// A chat template: its text and where it came from (named in every error).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    source: String,
    origin: PathBuf,
}

fn generation_tags() -> &'static (regex::Regex, regex::Regex) {
    static TAGS: OnceLock<(regex::Regex, regex::Regex)> = OnceLock::new();
    TAGS.get_or_init(|| {
        let open = regex::Regex::new(r"\{%([-+]?)\s*generation\s*([-+]?)%\}").expect("valid");
        let close = regex::Regex::new(r"\{%([-+]?)\s*endgeneration\s*([-+]?)%\}").expect("valid");
        (open, close)
    })
}

impl ChatTemplate {
    /// A template from its text; `origin` (the file it was read from) names it in errors.
    /// The template is compiled once here so that a syntax error is reported at load time.
    pub fn new(source: impl Into<String>, origin: impl Into<PathBuf>) -> Result<ChatTemplate> {
        let t = ChatTemplate {
            source: source.into(),
            origin: origin.into(),
        };
        t.environment(&ChatOptions::on(
            ChatDate::parse("2000-01-01").expect("valid date"),
        ))?;
        Ok(t)
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file the template came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// transformers' `{% generation %}` block renders its body unchanged; an always-true `if`
    /// with the same whitespace control does exactly that in minijinja.
    fn compiled_source(&self) -> String {
        let (open, close) = generation_tags();
        let s = open.replace_all(&self.source, "{%${1} if true ${2}%}");
        close.replace_all(&s, "{%${1} endif ${2}%}").into_owned()
    }

    fn environment(&self, opts: &ChatOptions) -> Result<Environment<'static>> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_formatter(|out, _state, value| out.write_str(&py_str(value)).map_err(Error::from));
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, Error> {
                Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{RAISED}{msg}"),
                ))
            },
        );
        let date = opts.date;
        env.add_function("strftime_now", move |format: String| {
            date.strftime(&format)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
        });
        env.add_filter("tojson", tojson);
        env.add_filter("string", |v: Value| py_str(&v));
        env.add_template_owned("chat", self.compiled_source())
            .map_err(|e| self.error(format!("chat template does not parse: {e}")))?;
        Ok(env)
    }

    fn error(&self, reason: String) -> EngineError {
        EngineError::bad_file(&self.origin, reason)
    }

    /// Renders `messages` as `apply_chat_template(messages, add_generation_prompt=...,
    /// tokenize=False, tools=..., documents=..., **variables)` does, with `tokens` the
    /// tokenizer's named special tokens (`bos_token`, `eos_token`, ...). A template that
    /// rejects the conversation (`raise_exception`) gives an error naming the template, the
    /// roles of the messages and the template's message.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tokens: &BTreeMap<String, String>,
        opts: &ChatOptions,
    ) -> Result<String> {
        let env = self.environment(opts)?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| self.error(format!("chat template does not parse: {e}")))?;
        let mut ctx: BTreeMap<String, Value> = tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        for (k, v) in &opts.variables {
            ctx.insert(k.clone(), v.0.clone());
        }
        ctx.insert("messages".into(), Value::from_serialize(messages));
        let none = || Value::from(());
        ctx.insert(
            "tools".into(),
            opts.tools.as_ref().map_or_else(none, |t| t.0.clone()),
        );
        ctx.insert(
            "documents".into(),
            opts.documents.as_ref().map_or_else(none, |t| t.0.clone()),
        );
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        tmpl.render(Value::from_serialize(&ctx)).map_err(|e| {
            let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
            match raised_message(&e) {
                Some(msg) => self.error(format!(
                    "chat template fails to render this conversation (roles: {}): the template rejects it: {msg}",
                    roles.join(", ")
                )),
                None => self.error(format!(
                    "chat template fails to render messages with roles [{}]: {}",
                    roles.join(", "),
                    describe(&e)
                )),
            }
        })
    }
}

/// Marks errors raised by the template itself through `raise_exception`.
const RAISED: &str = "raise_exception: ";

fn raised_message(e: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(me) = err.downcast_ref::<Error>() {
            if let Some(msg) = me.detail().and_then(|d| d.strip_prefix(RAISED)) {
                return Some(msg.to_string());
            }
        }
        cur = err.source();
    }
    None
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        s.push_str(&format!(": {err}"));
        cur = err.source();
    }
    s
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`:
/// Python's `json.dumps` with those arguments, positional or by keyword.
fn tojson(value: Value, args: Rest<Value>) -> std::result::Result<String, Error> {
    let mut positional: Vec<Value> = args.0;
    let kwargs = match positional.last() {
        Some(v) if v.is_kwargs() => Some(Kwargs::try_from(positional.pop().unwrap_or_default())?),
        _ => None,
    };
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if positional.len() > NAMES.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments (ensure_ascii, indent, separators, sort_keys)",
        ));
    }
    let mut given: BTreeMap<&str, Value> = NAMES.iter().copied().zip(positional).collect();
    if let Some(kw) = &kwargs {
        for name in NAMES {
            if let Some(v) = kw.get::<Option<Value>>(name)? {
                given.insert(name, v);
            }
        }
        kw.assert_all_used()?;
    }
    let flag = |name: &str| given.get(name).is_some_and(Value::is_true);
    let indent = match given.get("indent") {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(v.as_i64().unwrap_or(0).max(0) as usize)),
        },
    };
    let separators = match given.get("separators") {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => Some((py_str(a), py_str(b))),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be an (item_separator, key_separator) pair",
                    ))
                }
            }
        }
    };
    json_dumps(
        &value,
        &DumpOptions {
            ensure_ascii: flag("ensure_ascii"),
            indent,
            separators,
            sort_keys: flag("sort_keys"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, messages: &[ChatMessage]) -> Result<String> {
        let t = ChatTemplate::new(src, "inline.jinja")?;
        let tokens = BTreeMap::from([("bos_token".to_string(), "<s>".to_string())]);
        t.render(
            messages,
            true,
            &tokens,
            &ChatOptions::on(ChatDate::parse("2026-03-05").unwrap()),
        )
    }

    #[test]
    fn block_tags_on_their_own_lines_leave_no_newlines() {
        let src = "{% for message in messages %}\n<|user|>\n{{ message['content'] }}\n{% endfor %}\n{% if add_generation_prompt %}\n<|assistant|>\n{% endif %}";
        assert_eq!(
            render(src, &[ChatMessage::user("Hi")]).unwrap(),
            "<|user|>\nHi\n<|assistant|>\n"
        );
    }

    #[test]
    fn raised_errors_name_the_template_and_the_roles() {
        let src = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}x";
        let e = render(src, &[ChatMessage::system("s"), ChatMessage::user("u")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("inline.jinja")
                && e.contains("roles: system, user")
                && e.contains("System role not supported"),
            "{e}"
        );
        let e = ChatTemplate::new("{% if %}", "bad.jinja")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.jinja") && e.contains("does not parse"),
            "{e}"
        );
    }
}
