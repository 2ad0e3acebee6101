//! The wasm32 exports of ABI.md. Every export catches errors and returns a negative code;
//! nothing here panics on user input. The guest is single-threaded, so the state lives in a
//! thread-local `RefCell`.

use std::alloc::{alloc, dealloc, Layout};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Device;

use crate::chat_template::parse_messages;
use crate::checkpoint::WeightLoader;
use crate::error::{EngineError, Result};
use crate::generation::{step_batch, GenerationParams, Produced, Session};
use crate::loaded_model::LoadedModel;
use crate::transformer::Scratch;
use crate::verification::{Verdict, Verifier};

#[derive(Default)]
struct State {
    models: HashMap<i32, Arc<LoadedModel>>,
    sessions: HashMap<i32, Session>,
    verifiers: HashMap<i32, Verifier>,
    next_handle: i32,
    output: Vec<u8>,
    last_error: String,
    /// The checkpoint being written by the host (`ec_model_begin` .. `ec_model_finish`).
    pending: Option<WeightLoader>,
    /// The activations of `ec_batch_step`, reused from call to call.
    scratch: Scratch,
}

impl State {
    fn new_handle(&mut self) -> Result<i32> {
        self.next_handle = self
            .next_handle
            .checked_add(1)
            .ok_or_else(|| EngineError::Internal("out of handles".into()))?;
        Ok(self.next_handle)
    }

    fn model(&self, handle: i32) -> Result<&Arc<LoadedModel>> {
        self.models
            .get(&handle)
            .ok_or_else(|| EngineError::InvalidHandle(format!("no model with handle {handle}")))
    }

    fn pending(&mut self) -> Result<&mut WeightLoader> {
        self.pending.as_mut().ok_or_else(|| {
            EngineError::InvalidArgument("no checkpoint load in progress (ec_model_begin)".into())
        })
    }

    /// The current region's length (0 once the weights are complete) as an i32.
    fn region_len(&mut self) -> Result<i32> {
        len_i32(self.pending()?.region().len())
    }

    fn session(&mut self, handle: i32) -> Result<&mut Session> {
        self.sessions
            .get_mut(&handle)
            .ok_or_else(|| EngineError::InvalidHandle(format!("no session with handle {handle}")))
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Runs `f` on the state; an error becomes its code, with its message kept for the host.
fn with_state(f: impl FnOnce(&mut State) -> Result<i32>) -> i32 {
    STATE.with(|cell| {
        let mut state = cell.borrow_mut();
        match f(&mut state) {
            Ok(value) => value,
            Err(err) => {
                state.last_error = err.to_string();
                err.code()
            }
        }
    })
}

/// Borrows `len` bytes of guest memory written by the host.
///
/// # Safety
/// The host promises `ptr..ptr+len` is memory it obtained from `ec_alloc` and wrote.
unsafe fn host_bytes<'a>(ptr: u32, len: u32) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr == 0 {
        return Err(EngineError::InvalidArgument(
            "null pointer with a non-zero length".into(),
        ));
    }
    Ok(std::slice::from_raw_parts(
        ptr as usize as *const u8,
        len as usize,
    ))
}

unsafe fn host_str<'a>(ptr: u32, len: u32, what: &str) -> Result<&'a str> {
    std::str::from_utf8(host_bytes(ptr, len)?)
        .map_err(|e| EngineError::InvalidUtf8(format!("{what} is not UTF-8: {e}")))
}

/// Reads `n` little-endian 32-bit words written by the host (`what` names them in the message:
/// "ids", "sessions").
///
/// # Safety
/// As [`host_bytes`], for `4 * n` bytes.
unsafe fn host_u32s(ptr: u32, n: u32, what: &str) -> Result<Vec<u32>> {
    let byte_len = n
        .checked_mul(4)
        .ok_or_else(|| EngineError::InvalidArgument(format!("{n} {what} is too many")))?;
    Ok(host_bytes(ptr, byte_len)?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The generation parameters' JSON written by the host (empty: the defaults).
///
/// # Safety
/// As [`host_bytes`].
unsafe fn host_params(ptr: u32, len: u32) -> Result<GenerationParams> {
    let params_json = host_str(ptr, len, "parameters")?;
    if params_json.trim().is_empty() {
        Ok(GenerationParams::default())
    } else {
        GenerationParams::from_json(params_json)
    }
}

fn len_i32(len: usize) -> Result<i32> {
    i32::try_from(len)
        .map_err(|_| EngineError::Internal(format!("output of {len} bytes is too large")))
}

fn set_output(state: &mut State, bytes: &[u8]) -> Result<i32> {
    state.output.clear();
    state.output.extend_from_slice(bytes);
    len_i32(bytes.len())
}

fn layout(len: u32) -> Option<Layout> {
    Layout::from_size_align(len.max(1) as usize, 8).ok()
}

#[no_mangle]
pub extern "C" fn ec_alloc(len: u32) -> u32 {
    match layout(len) {
        // SAFETY: the layout has a non-zero size.
        Some(l) => unsafe { alloc(l) as usize as u32 },
        None => 0,
    }
}

/// # Safety
/// `ptr` must come from `ec_alloc(len)` and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn ec_free(ptr: u32, len: u32) {
    if let (Some(l), true) = (layout(len), ptr != 0) {
        dealloc(ptr as usize as *mut u8, l);
    }
}

/// Exports the address and the length of each of the state's buffers the host reads.
macro_rules! export_buffers {
    ($($field:ident: $ptr:ident, $len:ident;)*) => {$(
        #[no_mangle]
        pub extern "C" fn $ptr() -> u32 {
            STATE.with(|s| s.borrow().$field.as_ptr() as usize as u32)
        }

        #[no_mangle]
        pub extern "C" fn $len() -> u32 {
            STATE.with(|s| s.borrow().$field.len() as u32)
        }
    )*};
}

export_buffers! {
    last_error: ec_last_error_ptr, ec_last_error_len;
    output: ec_output_ptr, ec_output_len;
}

/// # Safety
/// Both buffers must be host-written memory from `ec_alloc`.
#[no_mangle]
pub unsafe extern "C" fn ec_model_load(
    ckpt_ptr: u32,
    ckpt_len: u32,
    tok_ptr: u32,
    tok_len: u32,
) -> i32 {
    with_state(|state| {
        let model = LoadedModel::load(
            host_bytes(ckpt_ptr, ckpt_len)?,
            host_bytes(tok_ptr, tok_len)?,
        )?;
        let handle = state.new_handle()?;
        state.models.insert(handle, Arc::new(model));
        Ok(handle)
    })
}

/// Starts loading a checkpoint of `file_len` bytes whose first bytes (the 28-byte header) are at
/// `header_ptr`: validates the header against the size, and returns the length of the first
/// region the host must fill with the file's bytes after the header (see `ec_model_region_ptr`).
/// Replaces (and frees) any load in progress.
///
/// # Safety
/// The header buffer must be host-written memory from `ec_alloc`.
#[no_mangle]
pub unsafe extern "C" fn ec_model_begin(header_ptr: u32, header_len: u32, file_len: i64) -> i32 {
    with_state(|state| {
        state.pending = None;
        let file_len = u64::try_from(file_len).map_err(|_| {
            EngineError::InvalidArgument(format!("negative file length {file_len}"))
        })?;
        let header = host_bytes(header_ptr, header_len)?;
        state.pending = Some(WeightLoader::new(header, file_len, &Device::Cpu)?);
        state.region_len()
    })
}

/// Where the host writes the current region's bytes (valid until the next call).
#[no_mangle]
pub extern "C" fn ec_model_region_ptr() -> u32 {
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        match state.pending.as_mut() {
            Some(loader) => loader.region().as_mut_ptr() as usize as u32,
            None => 0,
        }
    })
}

/// The host wrote `written` bytes (the file's next ones) at the start of the current region.
/// Returns the next region's length, 0 once every weight is written, or an error code.
#[no_mangle]
pub extern "C" fn ec_model_advance(written: u32) -> i32 {
    with_state(|state| {
        state.pending()?.advance(written as usize)?;
        state.region_len()
    })
}

/// Completes the load started by `ec_model_begin` with a tokenizer.bin; returns a model handle.
/// The load is over (freed) whether or not this succeeds.
///
/// # Safety
/// The tokenizer buffer must be host-written memory from `ec_alloc`.
#[no_mangle]
pub unsafe extern "C" fn ec_model_finish(tok_ptr: u32, tok_len: u32) -> i32 {
    with_state(|state| {
        let loader = state.pending.take().ok_or_else(|| {
            EngineError::InvalidArgument("no checkpoint load in progress (ec_model_begin)".into())
        })?;
        let (config, weights) = loader.finish()?;
        let model = LoadedModel::from_weights(config, weights, host_bytes(tok_ptr, tok_len)?)?;
        let handle = state.new_handle()?;
        state.models.insert(handle, Arc::new(model));
        Ok(handle)
    })
}

/// Abandons a load in progress (frees its buffers); 0 even when none is.
#[no_mangle]
pub extern "C" fn ec_model_abort() -> i32 {
    with_state(|state| {
        state.pending = None;
        Ok(0)
    })
}

#[no_mangle]
pub extern "C" fn ec_model_info(model: i32) -> i32 {
    with_state(|state| {
        let json = state.model(model)?.info_json();
        set_output(state, json.as_bytes())
    })
}

/// Drops `handle` from `map`: 0, or InvalidHandle naming `what` when it is unknown.
fn free_handle<T>(map: &mut HashMap<i32, T>, handle: i32, what: &str) -> Result<i32> {
    map.remove(&handle)
        .map(|_| 0)
        .ok_or_else(|| EngineError::InvalidHandle(format!("no {what} with handle {handle}")))
}

#[no_mangle]
pub extern "C" fn ec_model_free(model: i32) -> i32 {
    with_state(|state| free_handle(&mut state.models, model, "model"))
}

/// # Safety
/// The text buffer must be host-written memory from `ec_alloc`.
#[no_mangle]
pub unsafe extern "C" fn ec_encode(
    model: i32,
    text_ptr: u32,
    text_len: u32,
    bos: i32,
    eos: i32,
) -> i32 {
    with_state(|state| {
        let text = host_str(text_ptr, text_len, "text")?;
        let ids = state
            .model(model)?
            .tokenizer()
            .encode(text, bos != 0, eos != 0);
        state.output.clear();
        for id in &ids {
            state.output.extend_from_slice(&id.to_le_bytes());
        }
        len_i32(ids.len())
    })
}

/// # Safety
/// The ids buffer must be host-written memory from `ec_alloc` holding `n_ids` u32 values.
#[no_mangle]
pub unsafe extern "C" fn ec_decode(model: i32, ids_ptr: u32, n_ids: u32) -> i32 {
    with_state(|state| {
        let ids = host_u32s(ids_ptr, n_ids, "ids")?;
        let text = state.model(model)?.tokenizer().decode(&ids);
        set_output(state, &text)
    })
}

/// # Safety
/// The ids buffer must be host-written memory from `ec_alloc` holding `n_ids` u32 values.
#[no_mangle]
pub unsafe extern "C" fn ec_logits(model: i32, ids_ptr: u32, n_ids: u32) -> i32 {
    with_state(|state| {
        let ids = host_u32s(ids_ptr, n_ids, "ids")?;
        let logits = state.model(model)?.position_logits(&ids)?;
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        set_output(state, &bytes)
    })
}

/// Declares an export that opens a session or a verifier: `(model, text buffer, parameters
/// buffer[, claimed ids]) -> handle`, through `$open` ([`start_session`], [`new_verifier`]).
/// The exports differ only in the text's name (for its UTF-8 error), the constructor and the
/// extra arguments, so their ABI signature is written once, here.
macro_rules! start_export {
    ($(#[$doc:meta])* $name:ident, $what:literal, $open:ident($($extra:ident),*), $start:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The buffers must be host-written memory from `ec_alloc` (`ids_ptr`, where there is
        /// one: `n_ids` u32).
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            model: i32,
            text_ptr: u32,
            text_len: u32,
            params_ptr: u32,
            params_len: u32,
            $($extra: u32,)*
        ) -> i32 {
            let text = (text_ptr, text_len, $what);
            $open(model, text, (params_ptr, params_len), $($extra,)* $start)
        }
    };
}

start_export!(
    /// Starts a completion of the prompt (`Session::start`).
    ec_session_start,
    "prompt",
    start_session(),
    Session::start
);

start_export!(
    /// `ec_session_start` for a chat (run.c's `chat` mode): the prompt is the first rendered
    /// user turn; `ec_session_append` adds the next ones.
    ec_session_start_chat,
    "prompt",
    start_session(),
    Session::start_chat
);

start_export!(
    /// Starts a chat of messages (JSON `[{"role", "content"}]`) rendered in the model's chat
    /// template (`Session::start_messages`).
    ec_session_start_messages,
    "messages",
    start_session(),
    |model, text, params| Session::start_messages(model, parse_messages(text)?, params)
);

/// A new session's handle: `start` on the model, the text and the parameters (each a host
/// buffer's pointer and length; the text's also names it for its UTF-8 error).
///
/// # Safety
/// Both buffers must be host-written memory from `ec_alloc`.
unsafe fn start_session(
    model: i32,
    (text_ptr, text_len, what): (u32, u32, &str),
    (params_ptr, params_len): (u32, u32),
    start: impl FnOnce(Arc<LoadedModel>, &str, &GenerationParams) -> Result<Session>,
) -> i32 {
    with_state(|state| {
        let text = host_str(text_ptr, text_len, what)?;
        let params = host_params(params_ptr, params_len)?;
        let model = state.model(model)?.clone();
        let session = start(model, text, &params)?;
        let handle = state.new_handle()?;
        state.sessions.insert(handle, session);
        Ok(handle)
    })
}

/// Appends the next rendered user turn to a chat whose answer ended (`Session::append`).
///
/// # Safety
/// The buffer must be host-written memory from `ec_alloc`.
#[no_mangle]
pub unsafe extern "C" fn ec_session_append(session: i32, turn_ptr: u32, turn_len: u32) -> i32 {
    with_state(|state| {
        let turn = host_str(turn_ptr, turn_len, "turn")?;
        state.session(session)?.append(turn)?;
        Ok(0)
    })
}

/// Appends messages to a chat started from messages whose answer ended
/// (`Session::append_messages`).
///
/// # Safety
/// The buffer must be host-written memory from `ec_alloc`.
#[no_mangle]
pub unsafe extern "C" fn ec_session_append_messages(session: i32, ptr: u32, len: u32) -> i32 {
    with_state(|state| {
        let messages = parse_messages(host_str(ptr, len, "messages")?)?;
        state.session(session)?.append_messages(&messages)?;
        Ok(0)
    })
}

/// Renders messages in the model's chat template (`LoadedModel::render_chat`); the text is
/// the output buffer.
///
/// # Safety
/// The buffer must be host-written memory from `ec_alloc`.
#[no_mangle]
pub unsafe extern "C" fn ec_chat_render(
    model: i32,
    ptr: u32,
    len: u32,
    add_generation_prompt: i32,
) -> i32 {
    with_state(|state| {
        let messages = parse_messages(host_str(ptr, len, "messages")?)?;
        let text = state
            .model(model)?
            .render_chat(&messages, add_generation_prompt != 0)?;
        set_output(state, text.as_bytes())
    })
}

#[no_mangle]
pub extern "C" fn ec_session_prompt(session: i32) -> i32 {
    with_state(|state| {
        let text = state.session(session)?.prompt_text();
        set_output(state, &text)
    })
}

/// The fixed start of a step record: five u32 (ABI.md, "Generation").
const STEP_HEADER_BYTES: usize = 5 * 4;
/// A batch record's head: a status (i32) and a step record's head.
const BATCH_HEADER_BYTES: usize = 4 + STEP_HEADER_BYTES;
/// The record's token field when no token was produced (the session has stopped).
const NO_TOKEN: u32 = u32::MAX;

/// A step record's head: token (NO_TOKEN when none), stop reason, counts, byte count.
fn step_header(s: &Session, token: u32, bytes: usize) -> [u32; 5] {
    // Counts are below seq_len (<= 2^20) and token pieces are short, so all fit a u32.
    [
        token,
        s.stop_reason() as u32,
        s.prompt_tokens() as u32,
        s.generated_tokens() as u32,
        bytes as u32,
    ]
}

fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Borrows the host's step buffer (at least `min` bytes, non-null).
///
/// # Safety
/// The buffer must be host-owned memory from `ec_alloc` of at least `buf_cap` bytes.
unsafe fn host_buffer<'a>(buf_ptr: u32, buf_cap: u32, min: usize) -> Result<&'a mut [u8]> {
    if (buf_cap as usize) < min || buf_ptr == 0 {
        return Err(EngineError::InvalidArgument(format!(
            "the step buffer must hold at least {min} bytes"
        )));
    }
    Ok(std::slice::from_raw_parts_mut(
        buf_ptr as usize as *mut u8,
        buf_cap as usize,
    ))
}

/// Advances the session by one token and writes the whole outcome (token, stop reason, counts,
/// bytes) into the host's buffer, so a step is one call; returns the record's length.
///
/// # Safety
/// The buffer must be host-owned memory from `ec_alloc` of at least `buf_cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ec_session_step(session: i32, buf_ptr: u32, buf_cap: u32) -> i32 {
    with_state(|state| {
        let buf = host_buffer(buf_ptr, buf_cap, STEP_HEADER_BYTES)?;
        let s = state.session(session)?;
        let (token, bytes) = s.step()?.unwrap_or((NO_TOKEN, Vec::new()));
        let header = step_header(s, token, bytes.len());
        let total = STEP_HEADER_BYTES + bytes.len();
        for (field, value) in buf.chunks_exact_mut(4).zip(header) {
            field.copy_from_slice(&value.to_le_bytes());
        }
        if total <= buf.len() {
            buf[STEP_HEADER_BYTES..total].copy_from_slice(&bytes);
            state.output.clear();
        } else {
            set_output(state, &bytes)?;
        }
        len_i32(total)
    })
}

/// Takes the sessions `ids` out of the state (all or none): InvalidHandle for an unknown one,
/// InvalidArgument for one named twice.
fn take_sessions(state: &mut State, ids: &[i32]) -> Result<Vec<Session>> {
    let mut taken: Vec<Session> = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        match state.sessions.remove(&id) {
            Some(s) => taken.push(s),
            None => {
                let err = if ids[..i].contains(&id) {
                    EngineError::InvalidArgument(format!("session {id} is named twice"))
                } else {
                    EngineError::InvalidHandle(format!("no session with handle {id}"))
                };
                for (&id, s) in ids.iter().zip(taken) {
                    state.sessions.insert(id, s);
                }
                return Err(err);
            }
        }
    }
    Ok(taken)
}

/// Advances the `n` sessions whose handles (i32 LE) are at `ids_ptr` by one step each, with
/// one weight pass for those plainly decoding (ABI.md, "Generation"), and writes one record
/// per session, in order: a 24-byte head of six u32 (`status`: 0, or the session's negative
/// error code; then `ec_session_step`'s five fields), then its bytes (the token's bytes, or
/// the error message). Returns the records' total length; when it exceeds `buf_cap` the
/// records are in the output buffer instead.
///
/// # Safety
/// `ids_ptr` must hold `n` i32 written by the host; the buffer must be host-owned memory from
/// `ec_alloc` of at least `buf_cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ec_batch_step(ids_ptr: u32, n: u32, buf_ptr: u32, buf_cap: u32) -> i32 {
    with_state(|state| {
        let buf = host_buffer(buf_ptr, buf_cap, BATCH_HEADER_BYTES)?;
        // Handles are i32 in the same little-endian words.
        let ids: Vec<i32> = host_u32s(ids_ptr, n, "sessions")?
            .into_iter()
            .map(|w| w as i32)
            .collect();
        let mut sessions = take_sessions(state, &ids)?;
        let outcomes = {
            let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
            step_batch(&mut refs, &mut state.scratch)
        };
        let records = outcomes.map(|outcomes| batch_records(&sessions, outcomes));
        for (&id, s) in ids.iter().zip(sessions) {
            state.sessions.insert(id, s);
        }
        let records = records?;
        if records.len() <= buf.len() {
            buf[..records.len()].copy_from_slice(&records);
            state.output.clear();
            len_i32(records.len())
        } else {
            set_output(state, &records)
        }
    })
}

/// `ec_batch_step`'s records for the sessions' outcomes.
fn batch_records(sessions: &[Session], outcomes: Vec<Result<Produced>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (s, outcome) in sessions.iter().zip(outcomes) {
        let (status, token, bytes) = match outcome {
            Ok(produced) => {
                let (token, bytes) = produced.unwrap_or((NO_TOKEN, Vec::new()));
                (0, token, bytes)
            }
            Err(err) => (err.code(), NO_TOKEN, err.to_string().into_bytes()),
        };
        out.extend_from_slice(&status.to_le_bytes());
        put_u32s(&mut out, &step_header(s, token, bytes.len()));
        out.extend_from_slice(&bytes);
    }
    out
}

#[no_mangle]
pub extern "C" fn ec_session_counts(session: i32) -> i64 {
    let mut counts = 0i64;
    let code = with_state(|state| {
        let s = state.session(session)?;
        counts = ((s.prompt_tokens() as i64) << 32) | s.generated_tokens() as i64;
        Ok(0)
    });
    if code < 0 {
        code as i64
    } else {
        counts
    }
}

#[no_mangle]
pub extern "C" fn ec_session_free(session: i32) -> i32 {
    with_state(|state| free_handle(&mut state.sessions, session, "session"))
}

start_export!(
    /// Starts verifying the `n_ids` claimed token ids (u32 LE at `ids_ptr`) against a
    /// generation of the prompt with the parameters (as `ec_session_start`); returns a
    /// verifier handle.
    ec_verify_start,
    "prompt",
    new_verifier(ids_ptr, n_ids),
    Verifier::start
);

start_export!(
    /// `ec_verify_start` for generate's chat form: the claim is the answer to the messages
    /// (JSON `[{"role", "content"}]`) rendered in the model's chat template
    /// (`Verifier::start_messages`).
    ec_verify_start_messages,
    "messages",
    new_verifier(ids_ptr, n_ids),
    |model, text, params, claimed| {
        Verifier::start_messages(model, parse_messages(text)?, params, claimed)
    }
);

/// A verifier that `start` begins from the model, the text, the parameters and the claimed
/// ids, under a new handle (each a host buffer's pointer and length; the text's also names it
/// for its UTF-8 error, which is reported after the other arguments' errors).
///
/// # Safety
/// The buffers must be host-written memory from `ec_alloc` (the ids: `n_ids` u32).
unsafe fn new_verifier(
    model: i32,
    (text_ptr, text_len, what): (u32, u32, &str),
    (params_ptr, params_len): (u32, u32),
    ids_ptr: u32,
    n_ids: u32,
    start: impl FnOnce(Arc<LoadedModel>, &str, &GenerationParams, &[u32]) -> Result<Verifier>,
) -> i32 {
    with_state(|state| {
        let params = host_params(params_ptr, params_len)?;
        let claimed = host_u32s(ids_ptr, n_ids, "ids")?;
        let model = state.model(model)?.clone();
        let text = host_str(text_ptr, text_len, what)?;
        let verifier = start(model, text, &params, &claimed)?;
        let handle = state.new_handle()?;
        state.verifiers.insert(handle, verifier);
        Ok(handle)
    })
}

/// A verdict record's head: six u32 (ABI.md, "Verification").
const VERDICT_HEADER_BYTES: usize = 6 * 4;

fn verdict_record(v: &Verdict) -> Vec<u8> {
    let mut out = Vec::with_capacity(VERDICT_HEADER_BYTES + v.text.len());
    put_u32s(
        &mut out,
        &[
            u32::from(v.valid),
            v.matched as u32,
            v.expected.unwrap_or(NO_TOKEN),
            v.stop_reason as u32,
            v.prompt_tokens as u32,
            v.text.len() as u32,
        ],
    );
    out.extend_from_slice(&v.text);
    out
}

/// Checks up to `steps` more positions of the verification; 0 while it goes on, else the
/// verdict record's length (the record is in the output buffer).
#[no_mangle]
pub extern "C" fn ec_verify_run(verifier: i32, steps: u32) -> i32 {
    with_state(|state| {
        let v = state.verifiers.get_mut(&verifier).ok_or_else(|| {
            EngineError::InvalidHandle(format!("no verifier with handle {verifier}"))
        })?;
        match v.run(steps as usize)? {
            None => Ok(0),
            Some(verdict) => {
                let record = verdict_record(verdict);
                set_output(state, &record)
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn ec_verify_free(verifier: i32) -> i32 {
    with_state(|state| free_handle(&mut state.verifiers, verifier, "verifier"))
}
