//! `#[derive(Model)]` for popoto.
use proc_macro::TokenStream;

/// Derives `popoto::Model`.
#[proc_macro_derive(Model, attributes(popoto))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
