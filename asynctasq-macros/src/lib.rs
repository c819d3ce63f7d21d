//! # asynctasq-macros
//!
//! `#[task]`: turns an `async fn` into an asynctasq task. Use it through `asynctasq_core::task`.
//!
//! ```text
//! #[asynctasq_core::task(queue = "emails", max_attempts = 5, timeout = "30s")]
//! async fn send_email(ctx: TaskContext, to: String, subject: String) -> Result<(), TaskError> { .. }
//! ```
//!
//! expands to the function as written, plus:
//! * `struct SendEmail { pub to: String, pub subject: String }`: the task's arguments, serde
//!   (de)serializable, named after the function in CamelCase (a parameter written `_to`, to
//!   silence a warning, is still the field `to`, so the wire format does not change);
//! * `impl Task for SendEmail` with wire name `"send_email"` (or `name = "..."`) and the options
//!   given, whose `run` calls the function (a `TaskContext` parameter receives the context);
//! * a link-time registration, so every worker in the binary knows the task.
//!
//! Dispatch with `client.dispatch(SendEmail { to, subject }).queue("high").await?`.
//!
//! A plain `fn` (or `blocking`, which says so) is a **blocking task**: for CPU-bound work or
//! blocking calls, its body runs on the worker's bounded blocking pool, never on the async
//! runtime (see `asynctasq_core::blocking`).
//!
//! Options: `name`, `queue`, `max_attempts`, `timeout`, `lease`, `result_ttl` (how long the
//! task and its result stay findable once it succeeded; `"0s"` keeps nothing), `failure_ttl`
//! (how long it stays findable, with its errors, once dead-lettered or cancelled) (durations as
//! `"30s"`, `"500ms"`, `"5m"`), and the retry policy: `retry = "exponential"` (the default: doubling
//! from `backoff`, capped at `backoff_cap`, with `jitter = true`) or `retry = "fixed"` (every
//! retry after `backoff`); `backoff` defaults to `"1s"`, `backoff_cap` to `"1h"`.
//!
//! `cron = "0 */5 * * * *"` runs the task on a schedule (see `asynctasq_core::schedule`): every
//! worker of the binary knows it, and each slot runs once however many workers there are.
//! 5 fields, or 6 with seconds first; `tz = "Europe/Berlin"` (default `UTC`); `catch_up` is
//! `"latest"` (the default: after downtime, the most recent missed slot runs once), `"none"` or
//! `"all:N"`. A cron task takes no arguments (a `TaskContext` only).
//!
//! `unique` makes the task unique (see `asynctasq_core::unique`): a dispatch whose key is held
//! stores nothing. `unique(by = [user_id], until = "start", ttl = "10m", mode = "debounce")`:
//! `by` names the parameters the key is derived from (default: all of them, with the task's
//! name); `until` is `"done"` (the default: one live task per key, retries included),
//! `"start"` (one waiting task per key) or `"expiry"` (the key stays taken until `ttl` has
//! passed, even after the task finished: the default when only `ttl` is given); `ttl` bounds
//! every lock (default a day); `mode` is `"skip"` (the default), `"replace"` (a duplicate gives
//! the waiting holder its arguments) or `"debounce"` (and its due time).
//!
//! `key = customer_id` gives each task the named parameter as its key (as text): a queue's
//! per-key limit (`asynctasq_core::QueueLimits::per_key`) counts running tasks by it.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitInt, LitStr, Pat, Type};

/// Makes an `async fn` (or a plain, blocking `fn`) a task. See the crate documentation.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    if let Err(e) = syn::parse::Parser::parse(parser, attr) {
        return e.to_compile_error().into();
    }
    let function = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    expand(options, function).unwrap_or_else(|e| e.to_compile_error()).into()
}

#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    queue: Option<LitStr>,
    max_attempts: Option<LitInt>,
    timeout: Option<(LitStr, u64)>,
    lease: Option<(LitStr, u64)>,
    result_ttl: Option<(LitStr, u64)>,
    failure_ttl: Option<(LitStr, u64)>,
    retry: Option<LitStr>,
    backoff: Option<(LitStr, u64)>,
    backoff_cap: Option<(LitStr, u64)>,
    jitter: Option<syn::LitBool>,
    blocking: Option<Span>,
    unique: Option<Unique>,
    cron: Option<LitStr>,
    tz: Option<LitStr>,
    catch_up: Option<LitStr>,
    key: Option<Ident>,
}

/// `unique` or `unique(by = [..], until = "..", ttl = "..", mode = "..")`.
#[derive(Default)]
struct Unique {
    by: Option<Vec<Ident>>,
    until: Option<LitStr>,
    ttl: Option<(LitStr, u64)>,
    mode: Option<LitStr>,
}

impl Unique {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        match key.as_str() {
            "by" => {
                let list: syn::ExprArray = meta.value()?.parse()?;
                let mut by = Vec::new();
                for e in &list.elems {
                    match e {
                        syn::Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                            by.push(p.path.get_ident().expect("an ident").clone())
                        }
                        other => {
                            return Err(syn::Error::new(other.span(), "`by` lists the task's parameters by name: `by = [user_id, kind]`"));
                        }
                    }
                }
                if by.is_empty() {
                    return Err(syn::Error::new(list.span(), "`by` names at least one parameter (leave it out to use them all)"));
                }
                self.by = Some(by);
            }
            "until" => self.until = Some(one_of(meta.value()?.parse()?, "until", &["start", "done", "expiry"])?),
            "ttl" => {
                let ttl = duration(meta.value()?.parse()?)?;
                if ttl.1 == 0 {
                    return Err(syn::Error::new(ttl.0.span(), "a unique key's `ttl` must be more than zero"));
                }
                self.ttl = Some(ttl);
            }
            "mode" => self.mode = Some(one_of(meta.value()?.parse()?, "mode", &["skip", "replace", "debounce"])?),
            _ => return Err(meta.error("unknown `unique` option; expected `by`, `until`, `ttl` or `mode`")),
        }
        Ok(())
    }

    /// The `Uniqueness` these options describe: held until done, or with only a `ttl` until
    /// its expiry; a day unless `ttl` says.
    fn policy(&self, krate: &TokenStream2) -> TokenStream2 {
        let until = match (self.until.as_ref().map(LitStr::value).as_deref(), &self.ttl) {
            (Some("start"), _) => quote!(Start),
            (Some("expiry"), _) | (None, Some(_)) => quote!(Expiry),
            _ => quote!(Done),
        };
        let mode = match self.mode.as_ref().map(LitStr::value).as_deref() {
            Some("replace") => quote!(Replace),
            Some("debounce") => quote!(Debounce),
            _ => quote!(Skip),
        };
        let ttl = match &self.ttl {
            Some((_, ms)) => quote!(::core::time::Duration::from_millis(#ms)),
            None => quote!(#krate::unique::DEFAULT_UNIQUE_TTL),
        };
        quote!(#krate::Uniqueness { until: #krate::UniqueUntil::#until, ttl: #ttl, mode: #krate::UniqueMode::#mode })
    }
}

fn one_of(lit: LitStr, what: &str, allowed: &[&str]) -> syn::Result<LitStr> {
    if !allowed.contains(&lit.value().as_str()) {
        let expected = allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
        return Err(syn::Error::new(lit.span(), format!("unknown {what} `{}`; expected one of {expected}", lit.value())));
    }
    Ok(lit)
}

impl Options {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        match key.as_str() {
            "name" => {
                let lit: LitStr = meta.value()?.parse()?;
                check_name(&lit)?;
                self.name = Some(lit);
            }
            "queue" => self.queue = Some(meta.value()?.parse()?),
            "max_attempts" => {
                let lit: LitInt = meta.value()?.parse()?;
                if lit.base10_parse::<u32>().map_err(|_| syn::Error::new(lit.span(), "max_attempts must be a whole number"))? == 0 {
                    return Err(syn::Error::new(lit.span(), "max_attempts must be at least 1"));
                }
                self.max_attempts = Some(lit);
            }
            "timeout" => self.timeout = Some(duration(meta.value()?.parse()?)?),
            "lease" => self.lease = Some(duration(meta.value()?.parse()?)?),
            "result_ttl" => self.result_ttl = Some(duration(meta.value()?.parse()?)?),
            "failure_ttl" => self.failure_ttl = Some(duration(meta.value()?.parse()?)?),
            "retry" => {
                let lit: LitStr = meta.value()?.parse()?;
                if !matches!(lit.value().as_str(), "exponential" | "fixed") {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("unknown retry `{}`; expected \"exponential\" or \"fixed\"", lit.value()),
                    ));
                }
                self.retry = Some(lit);
            }
            "backoff" => self.backoff = Some(duration(meta.value()?.parse()?)?),
            "backoff_cap" => self.backoff_cap = Some(duration(meta.value()?.parse()?)?),
            "jitter" => self.jitter = Some(meta.value()?.parse()?),
            "blocking" => self.blocking = Some(meta.path.span()),
            "cron" => {
                let lit: LitStr = meta.value()?.parse()?;
                croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Optional)
                    .build()
                    .parse(&lit.value())
                    .map_err(|e| syn::Error::new(lit.span(), format!("invalid cron pattern `{}`: {e}", lit.value())))?;
                self.cron = Some(lit);
            }
            "tz" => self.tz = Some(meta.value()?.parse()?),
            "key" => {
                let value = meta.value()?;
                let span = value.span();
                self.key =
                    Some(value.parse().map_err(|_| syn::Error::new(span, "`key` names a parameter of the task: `key = customer_id`"))?);
            }
            "catch_up" => {
                let lit: LitStr = meta.value()?.parse()?;
                let v = lit.value();
                let all_n = v.strip_prefix("all:").is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0));
                if !matches!(v.as_str(), "none" | "latest" | "all") && !all_n {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("unknown catch_up `{v}`; expected \"none\", \"latest\", \"all\" or \"all:N\""),
                    ));
                }
                self.catch_up = Some(lit);
            }
            "unique" => {
                let mut unique = Unique::default();
                if meta.input.peek(syn::token::Paren) {
                    meta.parse_nested_meta(|m| unique.parse(m))?;
                }
                self.unique = Some(unique);
            }
            _ => {
                let path = &meta.path;
                return Err(meta.error(format!(
                    "unknown `#[task]` option `{}`; expected one of `name`, `queue`, `max_attempts`, `timeout`, `lease`, `result_ttl`, `failure_ttl`, `retry`, `backoff`, `backoff_cap`, `jitter`, `blocking`, `unique`, `cron`, `tz`, `catch_up`, `key`",
                    quote!(#path).to_string().replace(' ', "")
                )));
            }
        }
        Ok(())
    }

    /// The retry policy the options describe, checked; `None` when they name none.
    fn retry_policy(&self, krate: &TokenStream2) -> syn::Result<Option<TokenStream2>> {
        let fixed = self.retry.as_ref().is_some_and(|r| r.value() == "fixed");
        if self.retry.is_none() && self.backoff.is_none() && self.backoff_cap.is_none() && self.jitter.is_none() {
            return Ok(None);
        }
        let base = self.backoff.as_ref().map_or(1_000, |(_, ms)| *ms);
        if fixed {
            if let Some((lit, _)) = &self.backoff_cap {
                return Err(syn::Error::new(
                    lit.span(),
                    "`backoff_cap` applies to `retry = \"exponential\"`; a fixed retry waits `backoff` every time",
                ));
            }
            if let Some(lit) = &self.jitter {
                return Err(syn::Error::new(lit.span(), "`jitter` applies to `retry = \"exponential\"`"));
            }
            return Ok(Some(quote!(#krate::RetryPolicy::Fixed(::core::time::Duration::from_millis(#base)))));
        }
        let cap = self.backoff_cap.as_ref().map_or(3_600_000, |(_, ms)| *ms);
        if cap < base {
            let span = self.backoff_cap.as_ref().map_or_else(Span::call_site, |(lit, _)| lit.span());
            return Err(syn::Error::new(span, "`backoff_cap` must be at least `backoff`"));
        }
        let jitter = self.jitter.as_ref().is_none_or(syn::LitBool::value);
        Ok(Some(quote!(#krate::RetryPolicy::Exponential {
            base: ::core::time::Duration::from_millis(#base),
            max: ::core::time::Duration::from_millis(#cap),
            jitter: #jitter,
        })))
    }
}

fn duration(lit: LitStr) -> syn::Result<(LitStr, u64)> {
    let d = humantime::parse_duration(&lit.value())
        .map_err(|e| syn::Error::new(lit.span(), format!("invalid duration `{}`: {e} (write e.g. \"30s\" or \"500ms\")", lit.value())))?;
    let ms = u64::try_from(d.as_millis()).map_err(|_| syn::Error::new(lit.span(), "duration too long"))?;
    Ok((lit, ms))
}

fn check_name(lit: &LitStr) -> syn::Result<()> {
    let v = lit.value();
    if v.is_empty() || v.len() > 200 || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')) {
        return Err(syn::Error::new(lit.span(), "task names are 1 to 200 characters of letters, digits, `_`, `-`, `.` or `:`"));
    }
    Ok(())
}

fn expand(options: Options, function: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &function.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    // A plain `fn` is a blocking task: its body runs on the worker's blocking pool.
    let blocking = sig.asyncness.is_none();
    if let (Some(span), Some(_)) = (options.blocking, &sig.asyncness) {
        errors.push(syn::Error::new(
            span,
            "a blocking task is a plain `fn` (its body runs on the blocking pool): remove `async`, or remove `blocking`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new(
            sig.generics.span(),
            "`#[task]` functions cannot be generic: a task's argument types must be known to decode them",
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new(u.span(), "`#[task]` functions cannot be `unsafe`"));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new(v.span(), "`#[task]` functions cannot be variadic"));
    }

    let mut fields: Vec<(Ident, Type)> = Vec::new();
    let mut call_args: Vec<TokenStream2> = Vec::new();
    let mut has_ctx = false;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.push(syn::Error::new(r.span(), "`#[task]` cannot be a method: use a free `async fn`")),
            FnArg::Typed(arg) => {
                if is_task_context(&arg.ty) {
                    if has_ctx {
                        errors.push(syn::Error::new(arg.ty.span(), "only one `TaskContext` parameter is allowed"));
                    }
                    has_ctx = true;
                    call_args.push(quote!(__ctx));
                    continue;
                }
                let Pat::Ident(pat) = &*arg.pat else {
                    errors.push(syn::Error::new(
                        arg.pat.span(),
                        "`#[task]` parameters must be plain names (they become the fields of the arguments struct)",
                    ));
                    continue;
                };
                if let Type::Reference(r) = &*arg.ty {
                    errors.push(syn::Error::new(
                        r.span(),
                        "task arguments are deserialized, so they must be owned: use `String` for `&str`, `Vec<T>` for `&[T]`",
                    ));
                    continue;
                }
                // `_user_id` (a parameter silenced for a warning) keeps the wire field
                // `user_id`: renaming a parameter must not rename what producers send.
                let name = pat.ident.to_string();
                let trimmed = name.trim_start_matches('_');
                let ident = if trimmed.is_empty() || trimmed == name { pat.ident.clone() } else { Ident::new(trimmed, pat.ident.span()) };
                call_args.push(quote!(__args.#ident));
                fields.push((ident, (*arg.ty).clone()));
            }
        }
    }
    if let Some(first) = errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        return Err(first);
    }

    let fn_name = &sig.ident;
    let vis = &function.vis;
    let struct_name = format_ident!("{}", camel_case(&fn_name.to_string()), span = fn_name.span());
    let wire_name = options.name.clone().unwrap_or_else(|| LitStr::new(&fn_name.to_string(), fn_name.span()));
    let field_names: Vec<&Ident> = fields.iter().map(|(i, _)| i).collect();
    let field_types: Vec<&Type> = fields.iter().map(|(_, t)| t).collect();

    let core = core_path();
    let krate: TokenStream2 = core.parse().map_err(|_| syn::Error::new(Span::call_site(), "bad core path"))?;
    let mut option_fields = Vec::new();
    if let Some(q) = &options.queue {
        option_fields.push(quote!(queue: ::core::option::Option::Some(::std::string::String::from(#q))));
    }
    if let Some(n) = &options.max_attempts {
        option_fields.push(quote!(max_attempts: ::core::option::Option::Some(#n)));
    }
    if let Some((_, ms)) = &options.timeout {
        option_fields.push(quote!(timeout: ::core::option::Option::Some(::core::time::Duration::from_millis(#ms))));
    }
    if let Some((_, ms)) = &options.lease {
        option_fields.push(quote!(lease: ::core::option::Option::Some(::core::time::Duration::from_millis(#ms))));
    }
    if let Some((_, ms)) = &options.result_ttl {
        option_fields.push(quote!(result_ttl: ::core::option::Option::Some(::core::time::Duration::from_millis(#ms))));
    }
    if let Some((_, ms)) = &options.failure_ttl {
        option_fields.push(quote!(failure_ttl: ::core::option::Option::Some(::core::time::Duration::from_millis(#ms))));
    }
    if let Some(policy) = options.retry_policy(&krate)? {
        option_fields.push(quote!(retry: ::core::option::Option::Some(#policy)));
    }
    let mut unique_fields = quote!();
    if let Some(unique) = &options.unique {
        let policy = unique.policy(&krate);
        option_fields.push(quote!(unique: ::core::option::Option::Some(#policy)));
        if let Some(by) = &unique.by {
            for b in by {
                if !fields.iter().any(|(f, _)| f == b) {
                    return Err(syn::Error::new(b.span(), format!("`{b}` is not a parameter of `{}`", sig.ident)));
                }
            }
            unique_fields = quote! {
                fn unique_fields(&self) -> ::core::result::Result<::core::option::Option<::std::vec::Vec<u8>>, #krate::CodecError> {
                    #krate::unique::encode_fields(&( #( &self.#by, )* )).map(::core::option::Option::Some)
                }
            };
        }
    }
    let mut key_fn = quote!();
    if let Some(key) = &options.key {
        if !fields.iter().any(|(f, _)| f == key) {
            return Err(syn::Error::new(key.span(), format!("`{key}` is not a parameter of `{}`", sig.ident)));
        }
        key_fn = quote! {
            fn key(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::std::string::ToString::to_string(&self.#key))
            }
        };
    }
    let run = if blocking {
        quote! {
            async fn run(self, __ctx: #krate::TaskContext) -> #krate::TaskResult {
                let __args = self;
                let __pool = ::core::clone::Clone::clone(__ctx.blocking_pool());
                let __slot = ::core::clone::Clone::clone(__ctx.result_slot());
                __pool.run(move || #krate::IntoTaskResult::into_task_result(#fn_name( #( #call_args ),* ), &__slot)).await
            }
        }
    } else {
        quote! {
            async fn run(self, __ctx: #krate::TaskContext) -> #krate::TaskResult {
                let __args = self;
                let __slot = ::core::clone::Clone::clone(__ctx.result_slot());
                #krate::IntoTaskResult::into_task_result(#fn_name( #( #call_args ),* ).await, &__slot)
            }
        }
    };
    let registration = match &options.cron {
        Some(pattern) => {
            if let Some((first, _)) = fields.first() {
                return Err(syn::Error::new(
                    first.span(),
                    "a cron task takes no arguments: its schedule dispatches it with none (read what it needs when it runs)",
                ));
            }
            let tz = options.tz.clone().unwrap_or_else(|| LitStr::new("UTC", Span::call_site()));
            let catch_up = options.catch_up.clone().unwrap_or_else(|| LitStr::new("latest", Span::call_site()));
            quote!(#krate::TaskRegistration::of::<#struct_name>().with_cron(#pattern, #tz, #catch_up))
        }
        None => {
            if let Some(lit) = options.tz.as_ref().or(options.catch_up.as_ref()) {
                return Err(syn::Error::new(lit.span(), "`tz` and `catch_up` apply to a schedule: add `cron = \"…\"`"));
            }
            quote!(#krate::TaskRegistration::of::<#struct_name>())
        }
    };
    let doc = format!("Arguments of the `{fn_name}` task; dispatch it with `Client::dispatch`. Generated by `#[task]`.");
    let serde_path = LitStr::new(&format!("{core}::__private::serde"), Span::call_site());

    Ok(quote! {
        #function

        #[doc = #doc]
        #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        #vis struct #struct_name {
            #( #[allow(missing_docs)] pub #field_names: #field_types, )*
        }

        impl #krate::Task for #struct_name {
            const NAME: &'static str = #wire_name;

            fn options() -> #krate::TaskOptions {
                #krate::TaskOptions { #( #option_fields, )* ..::core::default::Default::default() }
            }

            #unique_fields

            #key_fn

            #run
        }

        #krate::__private::inventory::submit! {
            #registration
        }
    })
}

/// The path of asynctasq-core as the crate using `#[task]` names it: `::asynctasq_core` when
/// it depends on asynctasq-core, or the core re-exported by asynctasq-cli when that is its one
/// dependency (`asynctasq = { package = "asynctasq-cli", … }` gives `::asynctasq::core`). Read
/// from the using crate's `Cargo.toml` (the keys of its dependency tables); `::asynctasq_core`
/// when it cannot tell.
fn core_path() -> String {
    if std::env::var("CARGO_PKG_NAME").is_ok_and(|p| p == "asynctasq-core") {
        return "::asynctasq_core".into();
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").ok().and_then(|dir| std::fs::read_to_string(format!("{dir}/Cargo.toml")).ok());
    let Some(manifest) = manifest else { return "::asynctasq_core".into() };
    // Keys of [dependencies] (and target-specific ones) first, then of [dev-dependencies]: a
    // dev-dependency is missing from the library's own build.
    let (mut normal, mut dev) = (Vec::new(), Vec::new());
    let mut section: Option<bool> = None;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            let is_dev = header.contains("dev-dependencies");
            section = (header.contains("dependencies") && !header.contains("build-dependencies")).then_some(is_dev);
            if let Some((_, key)) = header.rsplit_once("dependencies.") {
                if is_dev { &mut dev } else { &mut normal }.push(key.trim().to_owned());
                section = None;
            }
            continue;
        }
        if let (Some(is_dev), Some((key, _))) = (section, line.split_once('=')) {
            let key = key.trim().trim_end_matches(".workspace").trim().to_owned();
            if is_dev { &mut dev } else { &mut normal }.push(key);
        }
    }
    for keys in [&normal, &dev] {
        let has = |k: &str| keys.iter().any(|key| key == k);
        if has("asynctasq-core") {
            return "::asynctasq_core".into();
        }
        if let Some(name) = ["asynctasq", "asynctasq-cli"].into_iter().find(|k| has(k)) {
            return format!("::{}::core", name.replace('-', "_"));
        }
    }
    "::asynctasq_core".into()
}

fn is_task_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "TaskContext"))
}

fn camel_case(snake: &str) -> String {
    snake
        .trim_start_matches("r#")
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// An ignored conformance test, for the suite's `conformance_tests!`: `__ignored_rule!(rule,
/// Capability)` is `#[tokio::test] #[ignore = "driver lacks Capability"] async fn rule() {}`.
/// A `macro_rules` macro cannot build the reason's literal (`#[ignore = concat!(…)]` loses it),
/// so this one does, and the test output names the gap.
#[doc(hidden)]
#[proc_macro]
pub fn __ignored_rule(input: TokenStream) -> TokenStream {
    let parser = syn::punctuated::Punctuated::<Ident, syn::Token![,]>::parse_terminated;
    let idents = match syn::parse::Parser::parse(parser, input) {
        Ok(idents) if idents.len() == 2 => idents,
        Ok(idents) => return syn::Error::new(idents.span(), "expected `rule, Capability`").to_compile_error().into(),
        Err(e) => return e.to_compile_error().into(),
    };
    let (rule, capability) = (&idents[0], &idents[1]);
    let reason = LitStr::new(&format!("driver lacks {capability}"), capability.span());
    quote! {
        #[::tokio::test]
        #[ignore = #reason]
        async fn #rule() {}
    }
    .into()
}
