//! What the TestValidator tests share: the model files served over loopback, and the registry
//! application created on a fresh TestValidator whose committee allows that loopback host.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::time::Instant;

use axum::{routing::get, Router};
use edgechain_linera::{FileRef, Registration, RegistryAbi};
use linera_sdk::{
    linera_base_types::ApplicationId,
    test::{ActiveChain, HttpServer, TestValidator},
};

/// A file's reference as the registry stores it, served at `url`.
pub fn file_ref(bytes: &[u8], url: String) -> FileRef {
    FileRef {
        blake3: blake3::hash(bytes).to_hex().to_string(),
        size: bytes.len() as u64,
        urls: vec![url],
    }
}

/// The registration of llama2.c model `name` `version` with these files (no description, no
/// license).
pub fn registration(
    name: &str,
    version: &str,
    weights: FileRef,
    tokenizer: FileRef,
) -> Registration {
    Registration {
        name: name.into(),
        version: version.into(),
        format: "llama2c".into(),
        weights,
        tokenizer,
        description: None,
        license: None,
    }
}

/// Serves each `(name, bytes)` at `/name` on loopback; returns the server (serving until
/// dropped) and each file's reference, in order.
pub async fn serve(files: Vec<(&str, Vec<u8>)>) -> (HttpServer, Vec<FileRef>) {
    let mut router = Router::new();
    for (name, bytes) in &files {
        let bytes = bytes.clone();
        router = router.route(
            &format!("/{name}"),
            get(move || async move { bytes.clone() }),
        );
    }
    let server = HttpServer::start(router)
        .await
        .expect("a loopback HTTP server");
    let base = format!("http://127.0.0.1:{}", server.port());
    let refs = files
        .iter()
        .map(|(name, bytes)| file_ref(bytes, format!("{base}/{name}")))
        .collect();
    (server, refs)
}

/// The registry application on a fresh TestValidator.
pub struct Registry {
    pub validator: TestValidator,
    pub chain: ActiveChain,
    pub app: ApplicationId<RegistryAbi>,
    /// Building the wasm modules (nothing to do when scripts/build_linera_app.sh ran first) and
    /// publishing them.
    pub publish_seconds: f64,
}

/// Publishes this crate's modules on a new TestValidator (which builds them for wasm32), lets
/// the committee's HTTP allow-list name 127.0.0.1 (where [`serve`] serves), and creates the
/// application on a new chain.
pub async fn registry_on_validator() -> Registry {
    let started = Instant::now();
    let (mut validator, module_id) =
        TestValidator::with_current_module::<RegistryAbi, (), ()>().await;
    let publish_seconds = started.elapsed().as_secs_f64();
    validator
        .change_resource_control_policy(|policy| {
            policy
                .http_request_allow_list
                .insert("127.0.0.1".to_owned());
        })
        .await;
    let mut chain = validator.new_chain().await;
    let app = chain.create_application(module_id, (), (), vec![]).await;
    Registry {
        validator,
        chain,
        app,
        publish_seconds,
    }
}
