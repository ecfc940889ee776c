//! Unit tests of the derive without a compiler round trip: errors are collected, suggestions
//! are sensible, and the expansion is valid Rust.

use quote::quote;

use crate::attr::did_you_mean;
use crate::expand::expand;

fn errors(input: proc_macro2::TokenStream) -> Vec<String> {
    match expand(input) {
        Ok(tokens) => panic!("expected errors, got {tokens}"),
        Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn every_mistake_is_reported() {
    // Attribute errors in source order, then the cross-field checks.
    let errors = errors(quote! {
        #[popoto(nam = "X", name = "a:b")]
        struct X {
            #[popoto(kye)]
            a: String,
            #[popoto(key, sorted, tenant)]
            b: i64,
            #[popoto(sorted, partition_by("nope", "c"))]
            c: f64,
            #[popoto(confidence(initial = 2.0, evidence_cap = 0))]
            d: f64,
            key_of: String,
        }
    });
    assert_eq!(
        errors,
        [
            "unknown popoto container attribute `nam`; did you mean `name`?",
            "the model name cannot contain `:`, the separator of Redis key segments",
            "unknown popoto field attribute `kye`; did you mean `key`?",
            "`sorted` conflicts with `key`: a field is at most one of `key`, `auto_key`, \
             `unique_key`, `sorted`, `confidence`",
            "`initial` must be between 0 and 1, got 2",
            "`evidence_cap` must be at least 1, got 0",
            "a field cannot be named `key_of`: the derive generates `key_of` to build instance keys",
            "`partition_by` names `nope`, which is not a field of this struct",
            "`c` cannot be partitioned by itself",
        ]
        .map(str::to_owned)
    );
}

#[test]
fn shape_errors() {
    assert_eq!(
        errors(quote!(
            enum E {
                A,
            }
        )),
        ["`#[derive(Model)]` only supports structs with named fields, not enums"]
    );
    assert_eq!(
        errors(quote!(
            struct T(u8);
        ))
        .len(),
        1
    );
    assert_eq!(
        errors(quote!(
            struct U;
        ))
        .len(),
        1
    );
    assert_eq!(
        errors(quote!(
            struct G<T> {
                t: T,
            }
        ))
        .len(),
        1
    );
}

#[test]
fn suggestions() {
    let fields = [
        "key",
        "auto_key",
        "unique_key",
        "tenant",
        "sorted",
        "partition_by",
    ];
    assert_eq!(did_you_mean("sortd", &fields), Some("sorted"));
    assert_eq!(did_you_mean("kye", &fields), Some("key"));
    assert_eq!(did_you_mean("unique", &fields), Some("unique_key"));
    assert_eq!(did_you_mean("autokey", &fields), Some("auto_key"));
    assert_eq!(did_you_mean("partition", &fields), Some("partition_by"));
    assert_eq!(did_you_mean("frobnicate", &fields), None);
    assert_eq!(did_you_mean("index", &fields), None);
}

#[test]
fn expansion_is_valid_rust() {
    let tokens = expand(quote! {
        struct Episode {
            #[popoto(key, tenant)]
            project_id: String,
            #[popoto(auto_key)]
            episode_id: String,
            r#type: String,
            #[popoto(sorted, partition_by = "project_id")]
            score: f64,
            #[popoto(confidence(initial = 1, evidence_cap = 3))]
            certainty: f64,
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let file: syn::File = syn::parse2(tokens).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.items.len(), 1);
    let text = quote!(#file).to_string();
    // Alphabetical key order: episode_id (1) before project_id (0).
    assert!(text.contains("key_fields : & [1usize , 0usize]"), "{text}");
    assert!(
        text.contains("initial : 1f64 , evidence_cap : 3u32"),
        "{text}"
    );
    assert!(text.contains("b\"type\""), "{text}");
}

/// Every path into the popoto crate in `tokens`, as text (`:: popoto :: a :: b`).
fn crate_paths(tokens: proc_macro2::TokenStream, krate: &str) -> Vec<String> {
    let text = tokens.to_string();
    let prefix = format!("{krate} :: ");
    let mut paths = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&prefix) {
        let path: String = rest[at..].chars().take(prefix.len() + 24).collect();
        paths.push(path);
        rest = &rest[at + prefix.len()..];
    }
    paths
}

#[test]
fn generated_code_reaches_popoto_only_through_private() {
    let models = [
        quote! {
            #[popoto(change_feed, ttl = 60)]
            struct Episode {
                #[popoto(key, tenant)]
                project_id: String,
                #[popoto(auto_key)]
                episode_id: String,
                #[popoto(unique_key, per_tenant)]
                slug: String,
                #[popoto(sorted, partition_by = "project_id")]
                score: f64,
                #[popoto(confidence, partition_by = "project_id")]
                certainty: f64,
                #[popoto(version)]
                version: u64,
                #[popoto(expire_at)]
                expires: Option<u64>,
                title: String,
            }
        },
        quote! {
            #[popoto(shared)]
            struct Doc {
                body: String,
            }
        },
        quote! {
            #[popoto(crate = "pp")]
            struct Aliased {
                #[popoto(key)]
                id: String,
            }
        },
    ];
    for model in models {
        let tokens = expand(model).unwrap_or_else(|e| panic!("{e}"));
        let krate = if tokens.to_string().contains("pp :: __private") {
            "pp"
        } else {
            ":: popoto"
        };
        let paths = crate_paths(tokens, krate);
        assert!(!paths.is_empty());
        for path in paths {
            assert!(
                path.starts_with(&format!("{krate} :: __private ::")),
                "generated code reaches popoto outside `__private`: {path}"
            );
        }
    }
}
