//! The derived seed of a `generate` query: service/seed.py's encoding, version 2.
//!
//! `seed = u64_le(BLAKE3(encoding)[0:8])`, where the encoding is the domain tag, the chain,
//! block and application identifiers, the model, version and prompt, then the sampling
//! parameters (`repeat_penalty`, `repeat_window`, `temperature`, `top_p`, sorted by name),
//! preceded by `messages` (a list of `[role, content]` lists) for a query of messages.

pub const SEED_DOMAIN: &str = "edgechain/seed/v2";

/// The sampling parameters that enter the seed (not `max_tokens`, `stop` nor `seed`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeedParams {
    pub temperature: f64,
    pub top_p: f64,
    pub repeat_penalty: f64,
    pub repeat_window: u64,
}

fn field(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
}

/// seed.py's identifier rule: a string of hex digits is lowercased, any other used as it is.
fn identifier(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        value.to_ascii_lowercase()
    } else {
        value.to_owned()
    }
}

fn integer(out: &mut Vec<u8>, value: i128) {
    out.push(b'I');
    field(out, value.to_string().as_bytes());
}

/// A float as seed.py writes it: an integral value below 2**53 as that integer, else its bits.
fn float(out: &mut Vec<u8>, value: f64) {
    if value.fract() == 0.0 && value.abs() < (1u64 << 53) as f64 {
        integer(out, value as i128);
    } else {
        out.push(b'F');
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// seed.py's text value: `S` and the UTF-8 bytes.
fn text(out: &mut Vec<u8>, value: &str) {
    out.push(b'S');
    field(out, value.as_bytes());
}

/// seed.py's list value: `L`, the count, then each item's value.
fn list_header(out: &mut Vec<u8>, count: usize) {
    out.push(b'L');
    out.extend_from_slice(&(count as u64).to_le_bytes());
}

/// What a query's seed is derived from: where it runs, what it asks, and how it samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeedInput<'a> {
    pub chain_id: &'a str,
    pub block: &'a str,
    pub application_id: &'a str,
    pub model: &'a str,
    pub version: &'a str,
    pub prompt: &'a str,
    /// The (role, content) of each message, for a query of generate's chat form. Plain text
    /// pairs, not the engine's `Message`: the contract links this library and must stay MVP
    /// wasm, so the library names nothing of the engine crate (built with simd128:
    /// .cargo/config.toml).
    pub messages: Option<&'a [(&'a str, &'a str)]>,
    pub params: SeedParams,
}

impl SeedInput<'_> {
    /// The bytes BLAKE3 hashes (seed.py's `encode_seed_input`). Floats must be finite (the
    /// service checks its arguments first).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        field(&mut out, SEED_DOMAIN.as_bytes());
        for id in [self.chain_id, self.block, self.application_id] {
            field(&mut out, identifier(id).as_bytes());
        }
        for text in [self.model, self.version, self.prompt] {
            field(&mut out, text.as_bytes());
        }
        let params = &self.params;
        let count = 4 + u64::from(self.messages.is_some());
        out.extend_from_slice(&count.to_le_bytes());
        // Sorted by name: `messages` comes first.
        if let Some(messages) = self.messages {
            field(&mut out, b"messages");
            list_header(&mut out, messages.len());
            for (role, content) in messages {
                list_header(&mut out, 2);
                text(&mut out, role);
                text(&mut out, content);
            }
        }
        field(&mut out, b"repeat_penalty");
        float(&mut out, params.repeat_penalty);
        field(&mut out, b"repeat_window");
        integer(&mut out, params.repeat_window as i128);
        field(&mut out, b"temperature");
        float(&mut out, params.temperature);
        field(&mut out, b"top_p");
        float(&mut out, params.top_p);
        out
    }

    /// seed.py's `derive_seed`.
    pub fn derive_seed(&self) -> u64 {
        let digest = blake3::hash(&self.encode());
        u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(messages: Option<&'a [(&'a str, &'a str)]>) -> SeedInput<'a> {
        SeedInput {
            chain_id: "abababababababababababababababababababababababababababababababab",
            block: "height:3",
            application_id: "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
            model: "chat",
            version: "1",
            prompt: "",
            messages,
            params: SeedParams {
                temperature: 0.8,
                top_p: 0.9,
                repeat_penalty: 1.0,
                repeat_window: 64,
            },
        }
    }

    /// The values service/seed.py's `derive_seed` gives for the same inputs (a prompt's, and
    /// with `messages` as a list of [role, content] lists: GenerateQuery.seed_query).
    #[test]
    fn seeds_are_seed_py_s_with_and_without_messages() {
        assert_eq!(input(None).derive_seed(), 5680999542570101991);
        let messages = [("system", "Be brief."), ("user", "Hi")];
        assert_eq!(input(Some(&messages)).derive_seed(), 10653582168884790513);
    }
}
