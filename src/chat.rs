//! Chat templates: HF's Jinja2 `chat_template`, rendered with minijinja the way transformers'
//! `apply_chat_template` renders it.
//!
//! transformers compiles the template in a sandboxed Jinja2 environment with `trim_blocks` and
//! `lstrip_blocks`, adds `raise_exception`, `strftime_now` and a `tojson` filter that writes
//! Python's `json.dumps` format, and passes `messages`, `add_generation_prompt` and the special
//! tokens (`bos_token`, `eos_token`). We do the same; minijinja-contrib's `pycompat` supplies the
//! Python string and dict methods templates call (`.strip()`, `.startswith()`, `.items()`…).
//!
//! Not supported: `{% break %}`/`{% continue %}` (minijinja's `loop_controls` feature is not
//! enabled) and `{% generation %}` blocks.
//!
//! Thread safety: a [`ChatTemplate`] is immutable after construction and `Send + Sync`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Largest template source accepted (real templates are a few KiB; tool-use ones ~20 KiB).
const TEMPLATE_BYTES_MAX: usize = 1 << 20;

/// The name the template is registered under (appears in error locations).
const TEMPLATE_NAME: &str = "chat_template";

/// One message of a conversation, as HF templates expect it (`message['role']`,
/// `message['content']`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `"system"`, `"user"`, `"assistant"` (templates may accept others, e.g. `"tool"`).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja2 chat template). `bos_token`/`eos_token` are passed to the
    /// template as variables; `None` leaves them undefined, as transformers does for unset
    /// tokens. A syntax error is an [`Error::Tokenizer`] naming the line.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        if source.len() > TEMPLATE_BYTES_MAX {
            return Err(Error::tokenizer(format!(
                "chat template is {} bytes, more than the {TEMPLATE_BYTES_MAX} accepted",
                source.len()
            )));
        }
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| Error::tokenizer(format!("chat template does not compile: {e}")))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.map(str::to_string),
            eos_token: eos_token.map(str::to_string),
        })
    }

    /// The tokenizer's own template with its BOS/EOS tokens; `Ok(None)` when it has none.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Result<Option<Self>> {
        tokenizer
            .chat_template()
            .map(|src| ChatTemplate::new(src, tokenizer.bos_token(), tokenizer.eos_token()))
            .transpose()
    }

    /// Renders `messages`; with `add_generation_prompt`, the text ends with the opening of an
    /// assistant turn. Errors raised by the template (`raise_exception`) or during rendering
    /// are [`Error::Tokenizer`] with the template's message.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::tokenizer(format!("chat template: {e}")))?;
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        ctx.insert("messages", Value::from_serialize(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        if let Some(t) = &self.bos_token {
            ctx.insert("bos_token", Value::from(t.as_str()));
        }
        if let Some(t) = &self.eos_token {
            ctx.insert("eos_token", Value::from(t.as_str()));
        }
        template.render(ctx).map_err(|e| Error::tokenizer(format!("chat template failed: {e}")))
    }
}

/// `raise_exception(message)`: templates use it to refuse a conversation.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC time, formatted with the strftime directives
/// templates use (`%Y %y %m %d %e %H %I %M %S %p %b %B %a %A %j %%`; others are kept as is).
fn strftime_now(format: String) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    strftime(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Formats `secs` since the Unix epoch (UTC).
fn strftime(format: &str, secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `value | tojson(indent=None)`: Python's `json.dumps(value, ensure_ascii=False)` layout, as
/// transformers' own `tojson` writes it (`", "` and `": "` separators; with `indent`, one item
/// per line). minijinja's built-in filter writes compact, HTML-escaped JSON instead.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    write_python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_python_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_python_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&J::String(key.clone()).to_string());
                out.push_str(": ");
                write_python_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as stored in its GGUF `tokenizer.chat_template`.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Meta-Llama-3-8B-Instruct's template.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    /// The opening of Llama-3.1's template (system message extraction, date, whitespace control).
    const LLAMA31_HEAD: &str = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message.role not in ['user', 'assistant'] %}
        {{- raise_exception("Only user and assistant roles are supported, got " + message.role) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'].strip() + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

    #[test]
    fn smollm2_template_adds_its_default_system_prompt() {
        let t = ChatTemplate::new(SMOLLM2, Some("<|im_start|>"), Some("<|im_end|>")).expect("compiles");
        let out = t.render(&[ChatMessage::user("Hi")], true).expect("renders");
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out =
            t.render(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")], false).expect("renders");
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn llama3_template_uses_bos_and_trims() {
        let t = ChatTemplate::new(LLAMA3, Some("<|begin_of_text|>"), Some("<|eot_id|>")).expect("compiles");
        let msgs = [ChatMessage::system("S "), ChatMessage::user(" U"), ChatMessage::assistant("A")];
        let out = t.render(&msgs, true).expect("renders");
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn llama31_style_template_with_date_and_python_methods() {
        let t = ChatTemplate::new(LLAMA31_HEAD, Some("<|begin_of_text|>"), None).expect("compiles");
        let out = t.render(&[ChatMessage::system(" Sys "), ChatMessage::user(" Q ")], true).expect("renders");
        let date =
            strftime("%d %b %Y", SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs());
        assert_eq!(
            out,
            format!(
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nToday Date: {date}\n\nSys<|eot_id|>\
                 <|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>\
                 <|start_header_id|>assistant<|end_header_id|>\n\n"
            )
        );
    }

    #[test]
    fn raise_exception_becomes_an_error_with_its_message() {
        let t = ChatTemplate::new(LLAMA31_HEAD, None, None).expect("compiles");
        let err = t.render(&[ChatMessage::new("tool", "x")], false).expect_err("refused role");
        assert!(err.to_string().contains("Only user and assistant roles are supported, got tool"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported_with_a_line() {
        let err = ChatTemplate::new("ok\n{% for m in messages %}{{ m.content }}", None, None)
            .expect_err("no endfor");
        let msg = err.to_string();
        assert!(msg.contains("does not compile") && msg.contains("chat_template:2"), "{msg}");
        let err = ChatTemplate::new("{{ 1 + }}", None, None).expect_err("bad expression");
        assert!(err.to_string().contains("syntax"), "{err}");
        let huge = "x".repeat(TEMPLATE_BYTES_MAX + 1);
        assert!(ChatTemplate::new(&huge, None, None).is_err());
    }

    #[test]
    fn unset_special_tokens_render_empty() {
        let t = ChatTemplate::new("[{{ bos_token }}|{{ eos_token }}]", None, None).expect("compiles");
        assert_eq!(t.render(&[], false).expect("renders"), "[|]");
        let t = ChatTemplate::new("{% if bos_token is defined %}yes{% else %}no{% endif %}", None, None)
            .expect("compiles");
        assert_eq!(t.render(&[], false).expect("renders"), "no");
    }

    #[test]
    fn blocks_are_trimmed_like_transformers() {
        let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n{{ m.content }}\n  {% endif %}\n{% endfor %}\n";
        let t = ChatTemplate::new(src, None, None).expect("compiles");
        assert_eq!(
            t.render(&[ChatMessage::user("a"), ChatMessage::user("b")], false).expect("renders"),
            "a\nb\n"
        );
    }

    #[test]
    fn tojson_writes_python_json() {
        let t = ChatTemplate::new(
            "{{ messages[0] | tojson }}|{{ [1, 'x<y', {'k': none}] | tojson }}",
            None,
            None,
        )
        .expect("compiles");
        assert_eq!(
            t.render(&[ChatMessage::user("é\"")], false).expect("renders"),
            // Keys in insertion order, as Python's json.dumps writes a dict.
            r#"{"role": "user", "content": "é\""}|[1, "x<y", {"k": null}]"#
        );
        let t = ChatTemplate::new("{{ {'a': [1, 2], 'b': {}} | tojson(indent=2) }}", None, None)
            .expect("compiles");
        assert_eq!(
            t.render(&[], false).expect("renders"),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {}\n}"
        );
    }

    #[test]
    fn strftime_formats_known_instants() {
        // 2024-07-26 17:05:09 UTC, a Friday, day 208 of a leap year (checked with Python).
        let t = 1_722_013_509;
        assert_eq!(strftime("%d %b %Y", t), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %e %j %H:%M:%S %I%p %y %% %Q", t),
            "Friday July 26 208 17:05:09 05PM 24 % %Q"
        );
        assert_eq!(strftime("%Y-%m-%d %a", 0), "1970-01-01 Thu");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
    }

    #[test]
    fn chat_message_serde_roundtrip() {
        let m: ChatMessage = serde_json::from_str(r#"{"role": "user", "content": "hi"}"#).expect("parses");
        assert_eq!(m, ChatMessage::user("hi"));
        assert_eq!(serde_json::to_string(&m).expect("serializes"), r#"{"role":"user","content":"hi"}"#);
    }

    #[test]
    fn template_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ChatTemplate>();
    }

    #[test]
    fn tiny_fixture_chat_render_matches_transformers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("tokenize.json")).expect("fixture exists"),
        )
        .expect("fixture is JSON");
        let chat = &reference["chat"];
        let msgs: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).expect("messages");
        let tok = Tokenizer::from_hf_dir(&dir.join("model")).expect("tiny tokenizer loads");
        let t = ChatTemplate::from_tokenizer(&tok).expect("compiles").expect("tiny model has a template");
        let add = chat["add_generation_prompt"].as_bool().expect("flag");
        assert_eq!(t.render(&msgs, add).expect("renders"), chat["text"].as_str().expect("text"));
    }
}
