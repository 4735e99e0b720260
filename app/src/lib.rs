//! Tidings' shared core, compiled into both the server and the browser.
//!
//! # Layout
//! - [`event`]: the vocabulary — event ids, user and event names, the JSON bodies of the API.
//! - [`sse`]: the SSE wire format — the encoder the hub writes with and a spec-faithful parser.
//! - [`console`]: the Leptos console, rendered by the hub (`ssr`) and hydrated in the browser
//!   (`hydrate`), or built client-only by Trunk (`csr`).

pub mod console;
pub mod event;
pub mod sse;
