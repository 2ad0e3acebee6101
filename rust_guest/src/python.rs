//! The `edgechain_native` Python module (feature "python"): the same engine as the wasm guest,
//! with the same error codes (ABI.md, bottom). Long calls release the GIL.

use std::sync::{Arc, Mutex};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::chat_template::parse_messages;
use crate::error::EngineError as RustEngineError;
use crate::generation::{step_batch, GenerationParams, Session as RustSession};
use crate::loaded_model::LoadedModel;
use crate::parallel::Threads;
use crate::transformer::Scratch;
use crate::verification::Verifier as RustVerifier;

create_exception!(
    edgechain_native,
    EngineError,
    PyException,
    "An engine failure; args are (code: int, message: str) with ABI.md's codes."
);

fn to_py(err: RustEngineError) -> PyErr {
    EngineError::new_err((err.code(), err.to_string()))
}

/// A loaded llama2.c checkpoint and tokenizer.
#[pyclass(module = "edgechain_native", frozen)]
struct Model {
    inner: Arc<LoadedModel>,
    /// The activations of `step_batch`, reused from call to call.
    scratch: Mutex<Scratch>,
}

#[pymethods]
impl Model {
    /// `threads`: how many threads split the matrix products (None: the cores); the outputs
    /// are the same bits for any count.
    #[new]
    #[pyo3(signature = (checkpoint, tokenizer, threads = None))]
    fn new(
        py: Python<'_>,
        checkpoint: &[u8],
        tokenizer: &[u8],
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let threads = threads_or_cores(threads)?;
        // `&[u8]` borrows an immutable `bytes` object (no copy): safe to read without the GIL.
        let model = py
            .allow_threads(|| LoadedModel::load(checkpoint, tokenizer))
            .map_err(to_py)?;
        Ok(Self::wrap(model.with_threads(threads)))
    }

    /// Reads a checkpoint file straight into the weights (no copy of the file in memory) and a
    /// tokenizer.bin file; `threads` as for the constructor.
    #[staticmethod]
    #[pyo3(signature = (checkpoint, tokenizer, threads = None))]
    fn from_files(
        py: Python<'_>,
        checkpoint: std::path::PathBuf,
        tokenizer: std::path::PathBuf,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let threads = threads_or_cores(threads)?;
        let model = py
            .allow_threads(|| LoadedModel::from_files(&checkpoint, &tokenizer))
            .map_err(to_py)?;
        Ok(Self::wrap(model.with_threads(threads)))
    }

    /// How many threads split the matrix products.
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads().count()
    }

    /// The model's config (the checkpoint header's fields, as `CheckpointConfig` declares
    /// them): dim, hidden_dim, ..., shared_classifier, group_size (None for f32 weights).
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        let value = serde_json::to_value(self.inner.config())
            .map_err(|e| to_py(RustEngineError::Internal(e.to_string())))?;
        for (key, value) in value.as_object().into_iter().flatten() {
            match value {
                serde_json::Value::Bool(b) => dict.set_item(key, b)?,
                serde_json::Value::Number(n) => dict.set_item(key, n.as_u64())?,
                _ => dict.set_item(key, py.None())?,
            }
        }
        Ok(dict)
    }

    /// run.c's encoder.
    #[pyo3(signature = (text, bos = true, eos = false))]
    fn encode(&self, text: &str, bos: bool, eos: bool) -> Vec<u32> {
        self.inner.tokenizer().encode(text, bos, eos)
    }

    /// The ids as the generator prints them (space after BOS stripped, byte tokens raw).
    fn decode<'py>(&self, py: Python<'py>, ids: Vec<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let ids = ids
            .iter()
            .map(|&id| {
                u32::try_from(id).map_err(|_| {
                    to_py(RustEngineError::InvalidArgument(format!(
                        "token id {id} is negative or too large"
                    )))
                })
            })
            .collect::<PyResult<Vec<u32>>>()?;
        Ok(PyBytes::new(py, &self.inner.tokenizer().decode(&ids)))
    }

    /// Advances every session by one step with one weight pass for those plainly decoding
    /// (ABI.md's `ec_batch_step`). One tuple per session, in order: `(code, token, data,
    /// stop_reason, prompt_tokens, generated_tokens)`, `code` 0 with `token` None once stopped
    /// and `data` the token's bytes, or a negative error code with `data` its message.
    fn step_batch<'py>(
        &self,
        py: Python<'py>,
        mut sessions: Vec<PyRefMut<'py, Session>>,
    ) -> PyResult<Vec<BatchStep<'py>>> {
        let mut refs: Vec<&mut RustSession> = sessions.iter_mut().map(|s| &mut s.inner).collect();
        if refs.iter().any(|s| !Arc::ptr_eq(s.model(), &self.inner)) {
            return Err(to_py(RustEngineError::InvalidArgument(
                "the sessions of a batch step must belong to this model".into(),
            )));
        }
        let scratch = &self.scratch;
        let outcomes = py
            .allow_threads(|| {
                // A panic elsewhere cannot leave the scratch half-valid: it is only reused space.
                let mut scratch = scratch.lock().unwrap_or_else(|e| e.into_inner());
                step_batch(&mut refs, &mut scratch)
            })
            .map_err(to_py)?;
        Ok(sessions
            .iter()
            .zip(outcomes)
            .map(|(s, outcome)| {
                let s = &s.inner;
                let (code, token, data) = match outcome {
                    Ok(Some((id, bytes))) => (0, Some(id), bytes),
                    Ok(None) => (0, None, Vec::new()),
                    Err(err) => (err.code(), None, err.to_string().into_bytes()),
                };
                (
                    code,
                    token,
                    PyBytes::new(py, &data),
                    s.stop_reason() as i32,
                    s.prompt_tokens(),
                    s.generated_tokens(),
                )
            })
            .collect())
    }

    /// The logits (f32 little-endian bytes) after `tokens` fed one by one from position 0;
    /// with `every_position`, those at every position (`len(tokens)` rows of `vocab_size`).
    #[pyo3(signature = (tokens, every_position = false))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<u32>,
        every_position: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &self.inner;
        let logits = py
            .allow_threads(|| {
                if every_position {
                    inner.position_logits(&tokens)
                } else {
                    inner.logits(&tokens)
                }
            })
            .map_err(to_py)?;
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(PyBytes::new(py, &bytes))
    }

    /// Starts a generation session (ABI.md's parameters JSON; "" means all defaults).
    fn start(&self, prompt: &str, params_json: &str) -> PyResult<Session> {
        let params = params_from_json(params_json)?;
        let session = RustSession::start(self.inner.clone(), prompt, &params).map_err(to_py)?;
        Ok(Session { inner: session })
    }

    /// Starts a chat (run.c's `chat` mode) with the first rendered user turn;
    /// `Session.append` adds the next ones.
    fn start_chat(&self, turn: &str, params_json: &str) -> PyResult<Session> {
        let params = params_from_json(params_json)?;
        let session = RustSession::start_chat(self.inner.clone(), turn, &params).map_err(to_py)?;
        Ok(Session { inner: session })
    }

    /// Starts a chat of `messages_json` (`[{"role", "content"}]`) rendered in the model's chat
    /// template; `Session.append_messages` adds the next ones.
    fn start_messages(&self, messages_json: &str, params_json: &str) -> PyResult<Session> {
        let params = params_from_json(params_json)?;
        let messages = parse_messages(messages_json).map_err(to_py)?;
        let session =
            RustSession::start_messages(self.inner.clone(), messages, &params).map_err(to_py)?;
        Ok(Session { inner: session })
    }

    /// `messages_json` rendered in the model's chat template (ChatTemplate error without one).
    fn render_chat(&self, messages_json: &str, add_generation_prompt: bool) -> PyResult<String> {
        let messages = parse_messages(messages_json).map_err(to_py)?;
        self.inner
            .render_chat(&messages, add_generation_prompt)
            .map_err(to_py)
    }

    /// Starts verifying `claimed` token ids against a generation of `prompt` with the
    /// parameters (ABI.md, "Verification"); `Verifier.run` does the work. With `messages`,
    /// generate's chat form: `prompt` is messages JSON rendered in the model's chat template,
    /// `claimed` their answer.
    #[pyo3(signature = (prompt, params_json, claimed, messages = false))]
    fn verify_start(
        &self,
        prompt: &str,
        params_json: &str,
        claimed: Vec<u32>,
        messages: bool,
    ) -> PyResult<Verifier> {
        let params = params_from_json(params_json)?;
        let model = self.inner.clone();
        let verifier = if messages {
            parse_messages(prompt).and_then(|messages| {
                RustVerifier::start_messages(model, messages, &params, &claimed)
            })
        } else {
            RustVerifier::start(model, prompt, &params, &claimed)
        };
        Ok(Verifier {
            inner: verifier.map_err(to_py)?,
        })
    }
}

/// A verdict: `(valid, matched, expected | None, stop_reason, prompt_tokens, text)`.
type VerdictTuple<'py> = (bool, usize, Option<u32>, i32, usize, Bound<'py, PyBytes>);

/// A claim's verification in progress.
#[pyclass(module = "edgechain_native")]
struct Verifier {
    inner: RustVerifier,
}

#[pymethods]
impl Verifier {
    /// Checks up to `steps` more positions; the verdict once known, else None.
    fn run<'py>(&mut self, py: Python<'py>, steps: usize) -> PyResult<Option<VerdictTuple<'py>>> {
        let inner = &mut self.inner;
        let verdict = py
            .allow_threads(|| inner.run(steps).map(|v| v.cloned()))
            .map_err(to_py)?;
        Ok(verdict.map(|v| {
            (
                v.valid,
                v.matched,
                v.expected,
                v.stop_reason as i32,
                v.prompt_tokens,
                PyBytes::new(py, &v.text),
            )
        }))
    }
}

/// ABI.md's parameters JSON ("" means all defaults).
fn params_from_json(params_json: &str) -> PyResult<GenerationParams> {
    if params_json.trim().is_empty() {
        Ok(GenerationParams::default())
    } else {
        GenerationParams::from_json(params_json).map_err(to_py)
    }
}

impl Model {
    fn wrap(model: LoadedModel) -> Self {
        Self {
            inner: Arc::new(model),
            scratch: Mutex::default(),
        }
    }
}

/// `count` threads, or as many as the cores when None (InvalidArgument for 0 or too many).
fn threads_or_cores(count: Option<usize>) -> PyResult<Threads> {
    count
        .map_or_else(Threads::available, Threads::new)
        .map_err(to_py)
}

/// One session's outcome in `Model.step_batch`.
type BatchStep<'py> = (i32, Option<u32>, Bound<'py, PyBytes>, i32, usize, usize);

/// One generation.
#[pyclass(module = "edgechain_native")]
struct Session {
    inner: RustSession,
}

#[pymethods]
impl Session {
    /// Appends the next rendered user turn to a chat whose answer ended.
    fn append(&mut self, py: Python<'_>, turn: &str) -> PyResult<()> {
        let inner = &mut self.inner;
        py.allow_threads(|| inner.append(turn)).map_err(to_py)
    }

    /// Appends the next messages to a chat started from messages whose answer ended.
    fn append_messages(&mut self, py: Python<'_>, messages_json: &str) -> PyResult<()> {
        let messages = parse_messages(messages_json).map_err(to_py)?;
        let inner = &mut self.inner;
        py.allow_threads(|| inner.append_messages(&messages))
            .map_err(to_py)
    }

    /// The prompt as run.c prints it.
    fn prompt<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.prompt_text())
    }

    /// `(token_id, bytes)` for the next token, or None once stopped.
    fn step<'py>(&mut self, py: Python<'py>) -> PyResult<Option<(u32, Bound<'py, PyBytes>)>> {
        let inner = &mut self.inner;
        let produced = py.allow_threads(|| inner.step()).map_err(to_py)?;
        Ok(produced.map(|(id, bytes)| (id, PyBytes::new(py, &bytes))))
    }

    /// 0 running, 1 end of sequence, 2 max tokens/positions, 3 stop string, 4 context full.
    #[getter]
    fn stop_reason(&self) -> i32 {
        self.inner.stop_reason() as i32
    }

    /// `(prompt_tokens, generated_tokens)`.
    #[getter]
    fn counts(&self) -> (usize, usize) {
        (self.inner.prompt_tokens(), self.inner.generated_tokens())
    }
}

/// export.py's Q8_0 quantization of one tensor: `values` are its f32 values (little-endian
/// bytes), `group_size` divides their count; returns (int8 values, f32 LE scales), as bytes.
#[pyfunction]
fn quantize_q80<'py>(
    py: Python<'py>,
    values: &[u8],
    group_size: usize,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let (q, s) = py
        .allow_threads(|| crate::q8::quantize_bytes(values, group_size))
        .map_err(to_py)?;
    Ok((PyBytes::new(py, &q), PyBytes::new(py, &s)))
}

fn k_quant(kind: &str) -> PyResult<crate::kquants::KQuant> {
    match kind {
        "q4_k" => Ok(crate::kquants::KQuant::Q4K),
        "q6_k" => Ok(crate::kquants::KQuant::Q6K),
        other => Err(to_py(RustEngineError::InvalidArgument(format!(
            "K-quant type must be q4_k or q6_k, got {other:?}"
        )))),
    }
}

/// llama.cpp's reference Q4_K or Q6_K quantization (`kind` "q4_k" or "q6_k") of f32 values
/// (little-endian bytes, a multiple of 256 of them): the GGUF tensor's bytes.
#[pyfunction]
fn quantize_k<'py>(py: Python<'py>, kind: &str, values: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let kind = k_quant(kind)?;
    if !values.len().is_multiple_of(4 * crate::kquants::QK_K) {
        return Err(to_py(RustEngineError::InvalidArgument(format!(
            "{} bytes are not whole blocks of 256 f32 values",
            values.len()
        ))));
    }
    let x: Vec<f32> = values
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let out = py.allow_threads(|| crate::kquants::quantize(kind, &x));
    Ok(PyBytes::new(py, &out))
}

/// The values Q4_K or Q6_K blocks stand for as the engine decodes them, as f32 LE bytes.
#[pyfunction]
fn dequantize_k<'py>(py: Python<'py>, kind: &str, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let kind = k_quant(kind)?;
    if !data.len().is_multiple_of(kind.block_bytes()) {
        return Err(to_py(RustEngineError::InvalidArgument(format!(
            "{} bytes are not whole blocks",
            data.len()
        ))));
    }
    let out: Vec<u8> = crate::kquants::dequantize(kind, data)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    Ok(PyBytes::new(py, &out))
}

#[pymodule]
fn edgechain_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(quantize_q80, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_k, m)?)?;
    m.add_function(wrap_pyfunction!(dequantize_k, m)?)?;
    m.add_class::<Model>()?;
    m.add_class::<Session>()?;
    m.add_class::<Verifier>()?;
    m.add("EngineError", m.py().get_type::<EngineError>())?;
    Ok(())
}
