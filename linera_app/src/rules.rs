//! The registry's validation rules, with the simulator's messages (contract/operations.py):
//!
//! - names: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`; versions: `^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$`
//! - format: `llama2c` or `gguf` (whose tokenizer ref is its weights ref); hashes: BLAKE3, 64 lowercase hex digits
//! - sizes: 0 < size <= 2 GiB (the fetcher's cap too); URLs: 1 to 8 per file, http or https with a host, at most 2048
//!   characters, no whitespace or control characters
//! - description: at most 1024 characters; license: at most 128 characters

use crate::{FileRef, Mint, Operation, Registration};

pub const FORMATS: &[&str] = &["llama2c", "gguf"];
pub const MAX_FILE_SIZE: u64 = 2 * 1024 * 1024 * 1024;
pub const MAX_URLS: usize = 8;
pub const MAX_URL_LENGTH: usize = 2048;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_LICENSE: usize = 128;
/// contract/generation_request.py's `MAX_PROMPT_BYTES` (a prompt, or messages' roles and
/// contents, in bytes).
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
/// contract/generation_request.py's `ROLES`: the roles a message may have.
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
const VERSION_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$";

/// A broken rule: the simulator's `OperationRejected` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

type Checked = Result<(), RuleError>;

fn reject(message: String) -> Checked {
    Err(RuleError(message))
}

/// Python's `repr` of a string, as the simulator's messages quote values.
pub fn py_repr(value: &str) -> String {
    let quote = if value.contains('\'') && !value.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(value.len() + 2);
    out.push(quote);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn matches_pattern(value: &str, extra: &[char], max_rest: usize) -> bool {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !first.is_ascii_alphanumeric() {
        return false;
    }
    let mut rest = 0;
    for c in chars {
        if !(c.is_ascii_alphanumeric() || extra.contains(&c)) {
            return false;
        }
        rest += 1;
    }
    rest <= max_rest
}

fn validate_name(name: &str) -> Checked {
    if matches_pattern(name, &['.', '_', '-'], 63) {
        return Ok(());
    }
    reject(format!(
        "model name {} must match {NAME_PATTERN} (letters, digits, . _ -; at most 64 characters)",
        py_repr(name)
    ))
}

fn validate_version(version: &str) -> Checked {
    if matches_pattern(version, &['.', '_', '+', '-'], 31) {
        return Ok(());
    }
    reject(format!(
        "model version {} must match {VERSION_PATTERN} (letters, digits, . _ + -; at most 32 \
         characters)",
        py_repr(version)
    ))
}

/// The host of `url` as Python's `urlsplit(url).hostname` finds it; `Err` where urlsplit raises.
fn split_url(url: &str) -> Result<(String, Option<String>), ()> {
    let (scheme, rest) = match url.find(':') {
        Some(i)
            if i > 0
                && url[..i]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && url[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (url[..i].to_ascii_lowercase(), &url[i + 1..])
        }
        _ => (String::new(), url),
    };
    let Some(after) = rest.strip_prefix("//") else {
        return Ok((scheme, None));
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let netloc = &after[..end];
    if netloc.contains('[') != netloc.contains(']') {
        return Err(());
    }
    let hostport = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, tail) = bracketed.split_once(']').unwrap_or((bracketed, ""));
        (host, tail.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    // As Python's urlsplit: an empty port is none; otherwise ASCII digits up to 65535.
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        let digits = port.chars().all(|c| c.is_ascii_digit());
        if !digits || port.parse::<u32>().map_or(true, |n| n > 65_535) {
            return Err(());
        }
    }
    let host = (!host.is_empty()).then(|| host.to_lowercase());
    Ok((scheme, host))
}

fn validate_url(url: &str, what: &str) -> Checked {
    if url.chars().count() > MAX_URL_LENGTH {
        return reject(format!(
            "{what}.urls: URL longer than {MAX_URL_LENGTH} characters"
        ));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || (c as u32) < 0x20 || c as u32 == 0x7f)
    {
        return reject(format!(
            "{what}.urls: {} contains whitespace or control characters",
            py_repr(url)
        ));
    }
    let Ok((scheme, host)) = split_url(url) else {
        return reject(format!("{what}.urls: {} is not a valid URL", py_repr(url)));
    };
    if scheme != "http" && scheme != "https" {
        return reject(format!(
            "{what}.urls: {} is not an http or https URL",
            py_repr(url)
        ));
    }
    if host.is_none() {
        return reject(format!("{what}.urls: {} has no host", py_repr(url)));
    }
    Ok(())
}

fn validate_file(file: &FileRef, what: &str) -> Checked {
    let hash_ok = file.blake3.len() == 64
        && file
            .blake3
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hash_ok {
        return reject(format!("{what}.blake3 must be 64 lowercase hex digits"));
    }
    if !(0 < file.size && file.size <= MAX_FILE_SIZE) {
        return reject(format!(
            "{what}.size {} must be > 0 and <= 2 GiB ({MAX_FILE_SIZE})",
            file.size
        ));
    }
    if !(1..=MAX_URLS).contains(&file.urls.len()) {
        return reject(format!(
            "{what}.urls needs 1 to {MAX_URLS} URLs, got {}",
            file.urls.len()
        ));
    }
    file.urls.iter().try_for_each(|url| validate_url(url, what))
}

/// `RegisterModel.validate`: the first rule the registration breaks.
pub fn validate_register(registration: &Registration) -> Checked {
    validate_name(&registration.name)?;
    validate_version(&registration.version)?;
    let format = registration.format.as_str();
    if !FORMATS.contains(&format) {
        return reject(format!(
            "model format {} is not supported (supported: {})",
            py_repr(format),
            FORMATS.join(", ")
        ));
    }
    validate_file(&registration.weights, "weights")?;
    validate_file(&registration.tokenizer, "tokenizer")?;
    // A GGUF file carries its tokenizer: the entry names the one file twice.
    if format == "gguf" && registration.tokenizer != registration.weights {
        return reject(
            "a gguf model's tokenizer is its weights file: the two references must be equal"
                .to_string(),
        );
    }
    for (field, value, limit) in [
        ("description", &registration.description, MAX_DESCRIPTION),
        ("license", &registration.license, MAX_LICENSE),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > limit) {
            return reject(format!("{field} is longer than {limit} characters"));
        }
    }
    Ok(())
}

/// `MintStory.validate`'s rules for what this application records (model, version, prompt).
pub fn validate_mint(mint: &Mint) -> Checked {
    if !matches_pattern(&mint.model, &['.', '_', '-'], 63) {
        return reject(format!("invalid model name {}", py_repr(&mint.model)));
    }
    if !matches_pattern(&mint.version, &['.', '_', '+', '-'], 31) {
        return reject(format!("invalid model version {}", py_repr(&mint.version)));
    }
    if mint.prompt.len() > MAX_PROMPT_BYTES {
        return reject(format!(
            "the prompt must be text of at most {MAX_PROMPT_BYTES} bytes"
        ));
    }
    Ok(())
}

/// `RetireModel.validate`.
pub fn validate_retire(name: &str, version: &str) -> Checked {
    validate_name(name)?;
    validate_version(version)
}

/// The first rule `op` breaks, whichever operation it is (`validate` of operations.py).
pub fn validate_operation(op: &Operation) -> Checked {
    match op {
        Operation::RegisterModel(registration) => validate_register(registration),
        Operation::RetireModel { name, version } => validate_retire(name, version),
        Operation::FollowRegistry { .. } => Ok(()),
        Operation::MintStory(mint) => validate_mint(mint),
        Operation::Transfer { story, .. } => {
            if *story < 1 {
                return reject(format!("story must be a story id (>= 1), got {story}"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(hash: &str, size: u64, urls: &[&str]) -> FileRef {
        FileRef {
            blake3: hash.into(),
            size,
            urls: urls.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn names_and_versions() {
        assert!(validate_retire("stories260K", "1.0.0+b").is_ok());
        assert!(validate_retire("-x", "1").is_err());
        assert!(validate_retire(&"a".repeat(64), "1").is_ok());
        assert!(validate_retire(&"a".repeat(65), "1").is_err());
        assert!(validate_retire("a", "1+").is_ok());
        assert!(validate_retire("a+", "1").is_err());
    }

    #[test]
    fn urls() {
        let h = "0".repeat(64);
        let ok = |u: &str| validate_file(&file(&h, 1, &[u]), "weights").is_ok();
        assert!(ok("http://127.0.0.1:8000/x.bin"));
        assert!(ok("HTTPS://user@Host/x"));
        assert!(!ok("ftp://host/x"));
        assert!(!ok("http:///x"));
        assert!(!ok("http://[::1/x"));
        assert!(!ok("http://host/a b"));
        assert_eq!(py_repr("it's"), "\"it's\"");
    }
}
