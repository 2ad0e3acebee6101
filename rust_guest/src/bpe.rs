//! GPT-2 style byte-level BPE (GGUF's `tokenizer.ggml.model` "gpt2"): the vocabulary's strings
//! spell bytes with GPT-2's byte-to-character map, `tokenizer.ggml.merges` ranks the merges,
//! the text is first split by the family's pre-tokenizer (Qwen2's, or Llama 3's which differs
//! only in taking digits three at a time), and the special tokens (control and user-defined)
//! are matched literally before that, as llama.cpp does when it parses special tokens.

use std::collections::HashMap;

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the others
/// (0..=32, 127..=160, 173) for the characters from U+0100 on, in byte order.
fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in out.iter_mut().enumerate() {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        *slot = if printable {
            char::from(b as u8)
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    out
}

/// Which pre-tokenizer splits the text (GGUF's `tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// `qwen2`: digits one at a time.
    Qwen2,
    /// `llama-bpe` (Llama 3): digits up to three at a time.
    Llama3,
}

impl PreTokenizer {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "qwen2" => Some(Self::Qwen2),
            "llama-bpe" | "llama3" => Some(Self::Llama3),
            _ => None,
        }
    }
}

/// A byte-level BPE vocabulary.
#[derive(Debug, Clone)]
pub struct Bpe {
    pre: PreTokenizer,
    /// Token string (byte-level characters) -> id.
    ids: HashMap<String, u32>,
    /// (left, right) -> rank.
    ranks: HashMap<(String, String), u32>,
    /// Special tokens' texts and ids, longest first (matched before pre-tokenization).
    specials: Vec<(String, u32)>,
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
}

/// `\p{L}` as Rust's `is_alphabetic` (the Alphabetic property: letters, plus letter numbers and
/// some combining marks, which the pre-tokenizer's regex would not count as letters).
/// A stretch of a text split at its special tokens' texts.
pub enum Piece<'a> {
    Text(&'a str),
    Special(u32),
}

/// Calls `piece` on `text`'s stretches in order: the ordinary text before each special token's
/// text (possibly empty), that token's id, and the text after the last one. Where several
/// special texts match, the earliest wins, the longest at the same place.
pub fn split_specials<'a>(
    text: &'a str,
    specials: &[(String, u32)],
    mut piece: impl FnMut(Piece<'a>),
) {
    let mut rest = text;
    while !rest.is_empty() {
        let found = specials
            .iter()
            .filter_map(|(t, id)| rest.find(t.as_str()).map(|at| (at, t.len(), *id)))
            .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let Some((at, len, id)) = found else {
            piece(Piece::Text(rest));
            return;
        };
        piece(Piece::Text(&rest[..at]));
        piece(Piece::Special(id));
        rest = &rest[at + len..];
    }
}

fn letter(c: char) -> bool {
    c.is_alphabetic()
}

fn number(c: char) -> bool {
    c.is_numeric()
}

fn newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// The pre-tokenizer's regex, one alternative after the other at each position:
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
/// \s*[\r\n]+|\s+(?!\S)|\s+` (D = 1 for Qwen2, 3 for Llama 3). Returns the match's length in
/// chars at the start of `s` (at least 1 for a non-empty `s`).
fn next_piece(s: &[char], digits: usize) -> usize {
    let n = s.len();
    // 's 't 're 've 'm 'll 'd, any case.
    if s[0] == '\'' && n >= 2 {
        let lower = |i: usize| s.get(i).map(|c| c.to_ascii_lowercase());
        match lower(1) {
            Some('s' | 't' | 'm' | 'd') => return 2,
            Some('r') if lower(2) == Some('e') => return 3,
            Some('v') if lower(2) == Some('e') => return 3,
            Some('l') if lower(2) == Some('l') => return 3,
            _ => {}
        }
    }
    // An optional non-letter, non-number, non-newline char, then letters.
    let start = usize::from(!letter(s[0]) && !number(s[0]) && !newline(s[0]) && n > 1);
    if s.get(start).is_some_and(|c| letter(*c)) {
        let mut i = start;
        while i < n && letter(s[i]) {
            i += 1;
        }
        return i;
    }
    if number(s[0]) {
        let mut i = 0;
        while i < n && i < digits && number(s[i]) {
            i += 1;
        }
        return i;
    }
    // An optional space, then symbols (neither space, letter nor number), then newlines.
    let start = usize::from(s[0] == ' ');
    let symbol = |c: char| !c.is_whitespace() && !letter(c) && !number(c);
    if s.get(start).is_some_and(|c| symbol(*c)) {
        let mut i = start;
        while i < n && symbol(s[i]) {
            i += 1;
        }
        while i < n && newline(s[i]) {
            i += 1;
        }
        return i;
    }
    // Whitespace runs.
    let mut run = 0;
    while run < n && s[run].is_whitespace() {
        run += 1;
    }
    if run > 0 {
        // \s*[\r\n]+: up to the run's last newline.
        if let Some(last) = (0..run).rev().find(|&i| newline(s[i])) {
            return last + 1;
        }
        // \s+(?!\S): all of it at the end of the text, else all but its last char.
        if run == n || run == 1 {
            return run;
        }
        return run - 1;
    }
    1
}

impl Bpe {
    /// `tokens` (byte-level strings), `merges` ("left right"), the ids of special tokens.
    pub fn new(
        pre: PreTokenizer,
        tokens: &[String],
        merges: &[String],
        specials: &[u32],
    ) -> Result<Self, String> {
        let mut ids = HashMap::with_capacity(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            ids.entry(t.clone()).or_insert(id as u32);
        }
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (left, right) = m
                .split_once(' ')
                .ok_or_else(|| format!("merge {rank} ({m:?}) is not two tokens"))?;
            ranks
                .entry((left.to_string(), right.to_string()))
                .or_insert(rank as u32);
        }
        let mut special: Vec<(String, u32)> = specials
            .iter()
            .filter_map(|&id| tokens.get(id as usize).map(|t| (t.clone(), id)))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        special.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_char = byte_chars();
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, c)| (*c, b as u8))
            .collect();
        Ok(Self {
            pre,
            ids,
            ranks,
            specials: special,
            byte_char,
            char_byte,
        })
    }

    /// The text of special token `id` (None for other tokens).
    pub fn special_text(&self, id: u32) -> Option<&str> {
        self.specials
            .iter()
            .find(|(_, s)| *s == id)
            .map(|(t, _)| t.as_str())
    }

    /// The ids of `text`: special tokens where their texts occur, byte-level BPE between them.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        split_specials(text, &self.specials, |piece| match piece {
            Piece::Text(plain) => self.encode_plain(plain, out),
            Piece::Special(id) => out.push(id),
        });
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = text.chars().collect();
        let digits = match self.pre {
            PreTokenizer::Qwen2 => 1,
            PreTokenizer::Llama3 => 3,
        };
        let mut at = 0;
        let mut buf = [0u8; 4];
        while at < chars.len() {
            let len = next_piece(&chars[at..], digits).max(1);
            let mut symbols: Vec<String> = Vec::new();
            for c in &chars[at..at + len] {
                for b in c.encode_utf8(&mut buf).bytes() {
                    symbols.push(self.byte_char[b as usize].to_string());
                }
            }
            self.merge(&mut symbols);
            for s in &symbols {
                match self.ids.get(s) {
                    Some(&id) => out.push(id),
                    // Not in the vocabulary: its bytes' tokens, those that exist.
                    None => out.extend(s.chars().filter_map(|c| self.ids.get(&c.to_string()))),
                }
            }
            at += len;
        }
    }

    /// Applies the lowest-ranked merge of adjacent symbols until none applies.
    fn merge(&self, symbols: &mut Vec<String>) {
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|r| (*r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let right = symbols.remove(i + 1);
            symbols[i].push_str(&right);
        }
    }

    /// The bytes a byte-level token string stands for (characters outside the map as UTF-8).
    pub fn token_bytes(&self, token: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(token.len());
        let mut buf = [0u8; 4];
        for c in token.chars() {
            match self.char_byte.get(&c) {
                Some(b) => out.push(*b),
                None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, digits: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut at = 0;
        while at < chars.len() {
            let len = next_piece(&chars[at..], digits);
            out.push(chars[at..at + len].iter().collect());
            at += len;
        }
        out
    }

    #[test]
    fn pre_tokenizer_splits_as_the_regex() {
        assert_eq!(
            pieces("Hello world's  end!!\n\n  12345 x", 1),
            [
                "Hello", " world", "'s", " ", " end", "!!\n\n", " ", " ", "1", "2", "3", "4", "5",
                " x"
            ]
        );
        assert_eq!(pieces("12345", 3), ["123", "45"]);
        assert_eq!(pieces("a  \n b", 1), ["a", "  \n", " b"]);
        assert_eq!(pieces("tail   ", 1), ["tail", "   "]);
        assert_eq!(pieces("你好，世界", 1), ["你好", "，世界"]);
    }

    #[test]
    fn byte_map_is_a_bijection() {
        let map = byte_chars();
        assert_eq!(map[b'A' as usize], 'A');
        assert_eq!(map[b' ' as usize], '\u{120}');
        assert_eq!(map[b'\n' as usize], '\u{10a}');
        let mut seen: Vec<char> = map.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }
}
