//! llama2.c's `tokenizer.bin`: reader, run.c's encoder, and a streaming UTF-8-safe decoder; or,
//! from a GGUF file's `gpt2` vocabulary, byte-level BPE ([`crate::bpe`]) behind the same API.

use std::collections::HashMap;

use crate::bpe::{split_specials, Bpe, Piece, PreTokenizer};
use crate::error::{EngineError, Result};

pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
/// Byte-fallback tokens `<0x00>`..`<0xFF>` start at this id.
const BYTE_TOKEN_OFFSET: u32 = 3;

/// A parsed tokenizer.bin.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: Vec<Vec<u8>>,
    scores: Vec<f32>,
    /// The bytes each token prints as: `<0xNN>` pieces become the single byte NN.
    pieces: Vec<Vec<u8>>,
    lookup: HashMap<Vec<u8>, u32>,
    max_token_length: usize,
    /// Byte-level BPE (a GGUF `gpt2` vocabulary) in place of run.c's encoder.
    bpe: Option<Box<Bpe>>,
    bos: u32,
    eos: u32,
    /// Whether `encode(.., bos = true, ..)` puts BOS first (a `gpt2` file may say no).
    add_bos: bool,
    /// Tokens that end a generation (BOS and EOS; a `gpt2` file's control tokens).
    ends: Vec<u32>,
    /// A GGUF `llama` vocabulary's special tokens (unknown, control, user-defined), as the file
    /// spells them: [`Self::encode_special`] maps their texts to their ids.
    specials: Vec<(String, u32)>,
}

fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    if piece.len() == 6 && piece.starts_with(b"<0x") && piece[5] == b'>' {
        let hex = std::str::from_utf8(&piece[3..5]).ok()?;
        u8::from_str_radix(hex, 16).ok()
    } else {
        None
    }
}

impl Tokenizer {
    /// Parses a whole tokenizer.bin (its tokens run to the end of the file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |msg: String| EngineError::InvalidTokenizer(msg);
        let read4 = |at: usize, what: &str, index: usize| -> Result<[u8; 4]> {
            let chunk = bytes.get(at..at + 4).ok_or_else(|| {
                bad(format!(
                    "truncated at byte {at} reading the {what} of token {index}"
                ))
            })?;
            Ok([chunk[0], chunk[1], chunk[2], chunk[3]])
        };
        if bytes.len() < 4 {
            return Err(bad(format!(
                "file is {} bytes, too short for a header",
                bytes.len()
            )));
        }
        let max_len = i32::from_le_bytes(read4(0, "header", 0)?);
        if max_len <= 0 || max_len > 1 << 16 {
            return Err(bad(format!("max_token_length {max_len} is out of range")));
        }
        let mut vocab = Vec::new();
        let mut scores = Vec::new();
        let mut at = 4usize;
        while at < bytes.len() {
            let index = vocab.len();
            let score = f32::from_le_bytes(read4(at, "score", index)?);
            let len = i32::from_le_bytes(read4(at + 4, "length", index)?);
            if len < 0 || len > max_len {
                return Err(bad(format!(
                    "token {index} has length {len} (max_token_length is {max_len})"
                )));
            }
            let start = at + 8;
            let text = bytes.get(start..start + len as usize).ok_or_else(|| {
                bad(format!(
                    "truncated at byte {start} reading the bytes of token {index}"
                ))
            })?;
            if !score.is_finite() {
                return Err(bad(format!("token {index} has a non-finite score")));
            }
            vocab.push(text.to_vec());
            scores.push(score);
            at = start + len as usize;
        }
        if vocab.len() < 3 {
            return Err(bad(format!(
                "only {} tokens (need at least <unk>, <s>, </s>)",
                vocab.len()
            )));
        }
        let mut lookup = HashMap::with_capacity(vocab.len());
        for (id, text) in vocab.iter().enumerate() {
            // Duplicate strings: keep the lowest id.
            lookup.entry(text.clone()).or_insert(id as u32);
        }
        let pieces = vocab
            .iter()
            .map(|p| match parse_byte_piece(p) {
                Some(b) => vec![b],
                None => p.clone(),
            })
            .collect();
        Ok(Self {
            vocab,
            scores,
            pieces,
            lookup,
            max_token_length: max_len as usize,
            bpe: None,
            bos: BOS,
            eos: EOS,
            add_bos: true,
            ends: vec![BOS, EOS],
            specials: Vec::new(),
        })
    }

    /// A byte-level BPE tokenizer: `tokens` (GPT-2's byte-level strings), their GGUF token
    /// types (3: control, 4: user-defined; both matched literally in text, control tokens print
    /// nothing and end a generation), `merges`, BOS and EOS ids, whether BOS is added.
    #[allow(clippy::too_many_arguments)]
    pub fn from_bpe(
        pre: PreTokenizer,
        tokens: &[String],
        types: &[i32],
        merges: &[String],
        bos: u32,
        eos: u32,
        add_bos: bool,
    ) -> Result<Self> {
        let bad = |msg: String| EngineError::InvalidTokenizer(format!("GGUF: {msg}"));
        if bos as usize >= tokens.len() || eos as usize >= tokens.len() {
            return Err(bad(format!(
                "BOS {bos} or EOS {eos} is outside the vocabulary of {}",
                tokens.len()
            )));
        }
        let kind = |id: usize| types.get(id).copied().unwrap_or(1);
        let specials: Vec<u32> = (0..tokens.len())
            .filter(|&id| matches!(kind(id), 3 | 4))
            .map(|id| id as u32)
            .collect();
        let bpe = Bpe::new(pre, tokens, merges, &specials).map_err(bad)?;
        let mut ends: Vec<u32> = (0..tokens.len())
            .filter(|&id| kind(id) == 3)
            .map(|id| id as u32)
            .collect();
        ends.extend([bos, eos]);
        ends.sort_unstable();
        ends.dedup();
        let pieces: Vec<Vec<u8>> = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| match kind(id) {
                3 => Vec::new(),
                4 => t.as_bytes().to_vec(),
                _ => bpe.token_bytes(t),
            })
            .collect();
        let max_len = pieces.iter().map(Vec::len).max().unwrap_or(1).max(1);
        Ok(Self {
            vocab: pieces.clone(),
            scores: vec![0.0; tokens.len()],
            pieces,
            lookup: HashMap::new(),
            max_token_length: max_len,
            bpe: Some(Box::new(bpe)),
            bos,
            eos,
            add_bos,
            ends,
            specials: Vec::new(),
        })
    }

    /// The same tokenizer with the special tokens (text, id) of a GGUF `llama` vocabulary.
    pub fn with_specials(mut self, mut specials: Vec<(String, u32)>) -> Self {
        specials.retain(|(text, _)| !text.is_empty());
        self.specials = specials;
        self
    }

    /// Whether `encode` puts BOS first when asked (a `gpt2` file may say no).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The ids of a rendered chat template's text, as llama.cpp's tokenizer with
    /// `parse_special`: special tokens' texts become their single ids; no BOS is added. A
    /// `gpt2` vocabulary matches them in any text; a `llama` one encodes each piece of text
    /// between them as run.c does (with its leading space, as llama.cpp prefixes one after a
    /// special token).
    pub fn encode_special(&self, text: &str) -> Vec<u32> {
        if self.bpe.is_some() {
            return self.encode(text, false, false);
        }
        let mut out = Vec::new();
        split_specials(text, &self.specials, |piece| match piece {
            Piece::Text(plain) => out.extend(self.encode(plain, false, false)),
            Piece::Special(id) => out.push(id),
        });
        out
    }

    /// The text a special token stands for in a rendered template (None for other tokens).
    pub fn special_text(&self, id: u32) -> Option<&str> {
        if let Some(bpe) = &self.bpe {
            return bpe.special_text(id);
        }
        self.specials
            .iter()
            .find(|(_, s)| *s == id)
            .map(|(t, _)| t.as_str())
    }

    /// The token a sequence starts with.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// Whether sampling `token` ends a generation.
    pub fn is_end(&self, token: u32) -> bool {
        self.ends.binary_search(&token).is_ok()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn max_token_length(&self) -> usize {
        self.max_token_length
    }

    /// The raw vocabulary string of `id` (None when out of range).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.vocab.get(id as usize).map(Vec::as_slice)
    }

    /// run.c's encoder: optional BOS, dummy-prefix space, codepoint lookup with `<0xNN>` byte
    /// fallback, then greedy merges of the best-scoring adjacent pair, optional EOS.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Vec<u32> {
        if let Some(bpe) = &self.bpe {
            let mut tokens = Vec::with_capacity(text.len() / 2 + 2);
            if bos && self.add_bos {
                tokens.push(self.bos);
            }
            bpe.encode(text, &mut tokens);
            if bos && tokens.is_empty() {
                // A sequence needs a first token: an empty prompt starts from BOS.
                tokens.push(self.bos);
            }
            if eos {
                tokens.push(self.eos);
            }
            return tokens;
        }
        let mut tokens: Vec<u32> = Vec::with_capacity(text.len() + 3);
        if bos {
            tokens.push(BOS);
        }
        if !text.is_empty() {
            if let Some(&space) = self.lookup.get(b" ".as_slice()) {
                tokens.push(space);
            }
        }
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            let encoded = ch.encode_utf8(&mut buf).as_bytes();
            match self.lookup.get(encoded) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(encoded.iter().map(|&b| b as u32 + BYTE_TOKEN_OFFSET)),
            }
        }
        let mut pair = Vec::with_capacity(2 * self.max_token_length);
        loop {
            let mut best: Option<(f32, u32, usize)> = None;
            for i in 0..tokens.len().saturating_sub(1) {
                pair.clear();
                pair.extend_from_slice(self.text_or_empty(tokens[i]));
                pair.extend_from_slice(self.text_or_empty(tokens[i + 1]));
                if let Some(&id) = self.lookup.get(&pair) {
                    let score = self.scores[id as usize];
                    if best.is_none_or(|(s, _, _)| score > s) {
                        best = Some((score, id, i));
                    }
                }
            }
            match best {
                Some((_, id, i)) => {
                    tokens[i] = id;
                    tokens.remove(i + 1);
                }
                None => break,
            }
        }
        if eos {
            tokens.push(EOS);
        }
        tokens
    }

    fn text_or_empty(&self, id: u32) -> &[u8] {
        self.vocab.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The bytes run.c prints for `token` following `prev`: the leading space of the token after
    /// BOS is stripped, `<0xNN>` is the raw byte NN. Unknown ids decode to nothing.
    pub fn piece(&self, prev: u32, token: u32) -> &[u8] {
        let Some(piece) = self.pieces.get(token as usize) else {
            return &[];
        };
        if self.bpe.is_none() && prev == BOS && piece.first() == Some(&b' ') {
            &piece[1..]
        } else {
            piece
        }
    }

    /// Decodes ids as the generator prints them (the first id is treated as following BOS when
    /// it is BOS itself; BOS/EOS print nothing).
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = self.bos;
        for &id in ids {
            if !self.is_end(id) {
                out.extend_from_slice(self.piece(prev, id));
            }
            prev = id;
        }
        out
    }
}

/// Assembles decoded bytes into complete UTF-8: holds back an incomplete trailing character
/// until the bytes that finish it arrive; invalid sequences pass through unchanged.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

/// Length of the UTF-8 sequence a lead byte starts (1 for ASCII and invalid leads).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Stream {
    /// Adds `bytes`, returns what can be emitted now.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        // Find where the last (possibly incomplete) character starts.
        let n = self.pending.len();
        let mut cut = n;
        for back in 1..=n.min(4) {
            let b = self.pending[n - back];
            if b & 0xC0 != 0x80 {
                // `b` is a lead byte (or ASCII): hold it back if its sequence is incomplete.
                if sequence_len(b) > back {
                    cut = n - back;
                }
                break;
            }
        }
        let rest = self.pending.split_off(cut);
        std::mem::replace(&mut self.pending, rest)
    }

    /// Emits whatever is held back (at the end of a stream).
    pub fn flush(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}
