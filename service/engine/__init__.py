"""The inference engine: one interface, two backends (wasm guest, native module)."""
