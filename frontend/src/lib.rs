//! The browser entry: hydrates the page the hub rendered, so the console's buttons come alive.
#![recursion_limit = "256"]

/// Called by the `tidings.js` glue that cargo-leptos emits, once the wasm is loaded.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::console::App);
}
