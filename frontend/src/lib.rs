//! The browser entry. With `hydrate` (cargo-leptos) it brings the page the hub rendered to life;
//! with `csr` (Trunk) it renders the console by itself, for pages hosted apart from the hub.
#![recursion_limit = "256"]

/// Called by the `tidings.js` glue that cargo-leptos emits, once the wasm is loaded.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::console::App);
}

/// Runs as soon as Trunk's glue loads the wasm.
#[cfg(all(feature = "csr", not(feature = "hydrate")))]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::console::App);
}
