//! A GGUF file's chat template (`tokenizer.chat_template`, Jinja) rendered with minijinja, in
//! the engine so that the wasm guest and the native module render the same bytes. The
//! environment is Hugging Face's (`trim_blocks`, `lstrip_blocks`, Python string methods) with
//! the globals templates call: `raise_exception` (a [`EngineError::ChatTemplate`], never a
//! panic) and `strftime_now`, which formats one fixed date (26 Jul 2024, Llama 3.1's own
//! default) so that a rendering never depends on the clock: it must replay on every validator.

use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::tokenizer::Tokenizer;

/// One message of a dialogue: `role` (system, user, assistant, ...) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Parses `[{"role": ..., "content": ...}, ...]` (the ABI's messages).
pub fn parse_messages(json: &str) -> Result<Vec<Message>> {
    serde_json::from_str(json).map_err(|e| {
        EngineError::InvalidArgument(format!(
            "messages must be a JSON list of {{\"role\", \"content\"}} strings: {e}"
        ))
    })
}

/// The fixed date `strftime_now` formats: (year, month 1-12, day, weekday 0 = Monday).
const FIXED_DATE: (i32, usize, u32, usize) = (2024, 7, 26, 4);
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
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `strftime` over [`FIXED_DATE`] at midnight (the directives templates use; others verbatim).
fn strftime_fixed(format: &str) -> String {
    let (year, month, day, weekday) = FIXED_DATE;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('B') => out.push_str(MONTHS[month - 1]),
            Some('b') => out.push_str(&MONTHS[month - 1][..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('H' | 'M' | 'S') => out.push_str("00"),
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

/// The marker of a `raise_exception` error, so its message reaches the user as the template's.
const RAISED: &str = "raise_exception: ";

/// A chat template with the special tokens it may print.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// A template (Jinja source) and the texts of the vocabulary's BOS and EOS tokens. It is
    /// parsed when rendered: a broken template fails a chat, not the model's loading (it still
    /// generates from plain prompts).
    pub fn new(source: String, bos_token: String, eos_token: String) -> Self {
        Self {
            source,
            bos_token,
            eos_token,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn environment(&self) -> Result<Environment<'_>> {
        let mut env = Environment::new();
        // A template comes from the model file, so it may be hostile: nested loops of
        // `range(100000)` would otherwise run for hours (and on native, with no epoch to stop
        // them). Fuel bounds the instructions a rendering may execute, the same on every engine.
        env.set_fuel(Some(TEMPLATE_FUEL));
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, Error> {
                Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{RAISED}{message}"),
                ))
            },
        );
        env.add_function("strftime_now", |format: String| strftime_fixed(&format));
        env.add_template("chat_template", &self.source)
            .map_err(|e| template_error(&e))?;
        Ok(env)
    }

    /// The dialogue rendered as the model expects it, with the assistant's header after it
    /// when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let env = self.environment()?;
        let template = env
            .get_template("chat_template")
            .map_err(|e| template_error(&e))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let context = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);
        let rendered = template.render(context).map_err(|e| template_error(&e))?;
        if rendered.len() > MAX_RENDERED_BYTES {
            return Err(EngineError::ChatTemplate(format!(
                "the rendering is {} bytes, more than the {MAX_RENDERED_BYTES} a dialogue may take",
                rendered.len()
            )));
        }
        Ok(rendered)
    }
}

/// A dialogue in a template: its messages and their rendering so far (ending with the
/// assistant's header, the generation prompt).
#[derive(Debug, Clone)]
pub struct Dialogue {
    messages: Vec<Message>,
    rendered: String,
}

/// How a dialogue's next rendering continues the text the session has already fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuation {
    /// The new rendering extends the fed text: only this suffix is new.
    Suffix(String),
    /// The template rewrote earlier text (Qwen3 drops past answers' `<think>` blocks): the
    /// whole rendering, whose tokens the session compares with what it fed.
    Whole(String),
}

impl Dialogue {
    /// The first turn's messages, rendered with the generation prompt.
    pub fn start(template: &ChatTemplate, messages: Vec<Message>) -> Result<Self> {
        let rendered = template.render(&messages, true)?;
        Ok(Self { messages, rendered })
    }

    /// The text rendered so far.
    pub fn rendered(&self) -> &str {
        &self.rendered
    }

    /// The dialogue after the assistant's `answer` (followed by `end_text`, the text of the
    /// end token that stopped it, or nothing) and the `new` messages, and how its rendering
    /// continues what was fed: the previous rendering, the answer and its end must be a prefix
    /// of the new rendering for the turn to be a suffix.
    pub fn next(
        &self,
        template: &ChatTemplate,
        answer: &str,
        end_text: &str,
        new: &[Message],
    ) -> Result<(Self, Continuation)> {
        let mut messages = self.messages.clone();
        messages.push(Message {
            role: "assistant".into(),
            content: answer.into(),
        });
        messages.extend_from_slice(new);
        let rendered = template.render(&messages, true)?;
        let fed_len = self.rendered.len() + answer.len() + end_text.len();
        let continues = rendered.len() > fed_len
            && rendered.starts_with(&self.rendered)
            && rendered[self.rendered.len()..].starts_with(answer)
            && rendered[self.rendered.len() + answer.len()..].starts_with(end_text);
        let continuation = if continues {
            Continuation::Suffix(rendered[fed_len..].to_string())
        } else {
            Continuation::Whole(rendered.clone())
        };
        Ok((Self { messages, rendered }, continuation))
    }
}

/// The tokens of a whole rendering: special tokens' texts as their ids, BOS first when the
/// vocabulary adds one and the template did not print it (no BOS twice).
pub fn rendered_tokens(tokenizer: &Tokenizer, rendered: &str) -> Vec<u32> {
    let mut tokens = tokenizer.encode_special(rendered);
    if tokenizer.adds_bos() && tokens.first() != Some(&tokenizer.bos()) {
        tokens.insert(0, tokenizer.bos());
    }
    tokens
}

/// The error of a chat of messages on a model without a template.
pub fn no_chat_template() -> EngineError {
    EngineError::ChatTemplate(
        "the model has no chat template (GGUF tokenizer.chat_template)".into(),
    )
}

/// A minijinja error as the engine's: `raise_exception`'s message as the template wrote it,
/// others with their kind and line.
/// Instructions one rendering may execute: real templates take tens per message.
const TEMPLATE_FUEL: u64 = 10_000_000;

/// The longest rendering accepted (far more text than any context holds).
const MAX_RENDERED_BYTES: usize = 16 << 20;

fn template_error(err: &Error) -> EngineError {
    if let Some(raised) = err.detail().and_then(|d| d.strip_prefix(RAISED)) {
        return EngineError::ChatTemplate(format!("the template raised: {raised}"));
    }
    let line = err.line().map_or(String::new(), |l| format!(" (line {l})"));
    let detail = err.detail().map_or(String::new(), |d| format!(": {d}"));
    EngineError::ChatTemplate(format!("{}{detail}{line}", err.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
        pairs
            .iter()
            .map(|(r, c)| Message {
                role: r.to_string(),
                content: c.to_string(),
            })
            .collect()
    }

    #[test]
    fn strftime_now_formats_the_fixed_date() {
        assert_eq!(strftime_fixed("%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            strftime_fixed("%A, %B %e %y %H:%M %% %q"),
            "Friday, July 26 24 00:00 % %q"
        );
    }

    /// The message of the `ChatTemplate` error a template gives for one user message.
    fn template_error(source: &str) -> String {
        let template = ChatTemplate::new(source.into(), "<s>".into(), "</s>".into());
        match template.render(&msgs(&[("user", "x")]), true) {
            Err(EngineError::ChatTemplate(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_typed_errors() {
        assert_eq!(
            template_error("{{ raise_exception('Conversation roles must alternate') }}"),
            "the template raised: Conversation roles must alternate"
        );
        let m = template_error("{% for m in messages %}");
        assert!(m.starts_with("syntax error"), "{m}");
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel_or_size() {
        let m = template_error(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        );
        assert!(m.contains("out of fuel"), "{m}");
        let m = template_error("{{ 'x' * 20000000 }}");
        assert!(m.contains("20000000 bytes"), "{m}");
    }

    #[test]
    fn python_string_methods_and_loop_controls_work() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role == 'skip' %}{% continue %}{% endif %}{{ m.content.strip().upper() }}|{% endfor %}".into(),
            String::new(),
            String::new(),
        );
        let out = t
            .render(
                &msgs(&[("user", " a "), ("skip", "b"), ("user", "c")]),
                false,
            )
            .unwrap();
        assert_eq!(out, "A|C|");
    }

    /// A SentencePiece-style vocabulary as llama2.c writes it: <unk>, BOS, EOS, the byte
    /// tokens, a space and the letters; `<unk>`, `<s>` and `</s>` special as in a GGUF file.
    fn spm_tokenizer() -> Tokenizer {
        let mut pieces: Vec<Vec<u8>> =
            vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
        pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
        pieces.push(b" ".to_vec());
        pieces.extend((b'a'..=b'z').map(|c| vec![c]));
        let mut bin = 16i32.to_le_bytes().to_vec();
        for p in &pieces {
            bin.extend_from_slice(&0f32.to_le_bytes());
            bin.extend_from_slice(&(p.len() as i32).to_le_bytes());
            bin.extend_from_slice(p);
        }
        Tokenizer::from_bytes(&bin).unwrap().with_specials(vec![
            ("<unk>".into(), 0),
            ("<s>".into(), 1),
            ("</s>".into(), 2),
        ])
    }

    #[test]
    fn special_texts_become_their_ids_in_a_llama_vocabulary() {
        let t = spm_tokenizer();
        let ids = t.encode_special("<|user|>\nhi</s>\n<|assistant|>\n");
        assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
        let at = ids.iter().position(|&i| i == 2).unwrap();
        // Text before and after the special token is encoded as run.c does (leading space).
        assert_eq!(ids[..at], t.encode("<|user|>\nhi", false, false)[..]);
        assert_eq!(
            ids[at + 1..],
            t.encode("\n<|assistant|>\n", false, false)[..]
        );
        assert_eq!(rendered_tokens(&t, "hi")[0], 1, "BOS first");
        assert_eq!(
            rendered_tokens(&t, "<s>hi")
                .iter()
                .filter(|&&i| i == 1)
                .count(),
            1
        );
        assert_eq!(t.special_text(2), Some("</s>"));
    }

    #[test]
    fn a_turn_appended_as_a_suffix_is_the_whole_rendering_s_tokens() {
        let t = spm_tokenizer();
        let zephyr = ChatTemplate::new(
            "{% for m in messages %}{{ '<|' + m.role + '|>\n' + m.content + eos_token + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}".into(),
            "<s>".into(),
            "</s>".into(),
        );
        let first = Dialogue::start(&zephyr, msgs(&[("user", "hi")])).unwrap();
        assert_eq!(first.rendered(), "<|user|>\nhi</s>\n<|assistant|>\n");
        let (next, how) = first
            .next(&zephyr, "yo", "</s>", &msgs(&[("user", "bye")]))
            .unwrap();
        let Continuation::Suffix(suffix) = how else {
            panic!("{how:?}")
        };
        assert_eq!(suffix, "\n<|user|>\nbye</s>\n<|assistant|>\n");
        let mut appended = rendered_tokens(&t, &format!("{}yo</s>", first.rendered()));
        appended.extend(t.encode_special(&suffix));
        assert_eq!(appended, rendered_tokens(&t, next.rendered()));
        // A template that rewrites what came before is not continued.
        let counting = ChatTemplate::new(
            "{{ messages | length }}{% for m in messages %}{{ m.content }}{% endfor %}".into(),
            String::new(),
            String::new(),
        );
        let first = Dialogue::start(&counting, msgs(&[("user", "a")])).unwrap();
        let (next, how) = first
            .next(&counting, "b", "", &msgs(&[("user", "c")]))
            .unwrap();
        assert_eq!(how, Continuation::Whole("3abc".into()));
        assert_eq!(next.rendered(), "3abc");
    }
}
