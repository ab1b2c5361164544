//! Architecture test: `src/` is built in layers (`LAYERS`, lowest first), and each imports only
//! from the ones before it: never from above, nor from another module of its own layer. So the
//! code reads bottom-up, and no change ripples upward into the layers below it.
//!
//! `check` parses every library file with `syn` and builds the graph of imports between FILES:
//! `use` items (grouped trees expanded, `pub use` too) and every `crate::`, `self::` and `super::`
//! path in code, attributes and macro tokens, leaving out `#[cfg(test)]` items. It fails on an
//! import against the layers, on a top-level module missing from `LAYERS`, and on any cycle
//! between files. `src/lib.rs` only declares modules; `src/main.rs` and `src/bin/` are binaries
//! outside the library: all three are exempt.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use syn::buffer::{Cursor, TokenBuffer};
use syn::visit::{self, Visit};
use syn::{Attribute, Item, UseTree};

/// The layers, lowest first. The modules of one row must not import each other.
const LAYERS: [&[&str]; 8] = [
    &["config"],
    &["telemetry"],
    &["domain"],
    &["db"],
    &["store"],
    &["service"],
    &["http", "dedupe"],
    &["startup"],
];

/// Each module with a file of its own (its path without `crate`) -> that file, under `src/`.
type Modules = BTreeMap<Vec<String>, PathBuf>;
/// An imported file -> the paths, as written, through which a file imports it.
type Edges = BTreeMap<PathBuf, BTreeSet<String>>;
/// Each file -> the files it imports from.
type Graph = BTreeMap<PathBuf, Edges>;

/// Returns every offence against the layers in the crate whose sources are in `src`.
fn check(src: &Path) -> Vec<String> {
    let modules = modules(src);
    let (mut graph, mut offences) = (Graph::new(), Vec::new());
    for (module, file) in &modules {
        let text = fs::read_to_string(src.join(file)).expect("read a source file");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{file:?} does not parse: {e}"));
        let mut imports = Imports {
            modules: &modules,
            module: module.clone(),
            edges: Edges::new(),
        };
        imports.visit_file(&ast);
        imports.edges.remove(file);
        graph.insert(file.clone(), imports.edges);
    }
    let tops: BTreeSet<&str> = modules.values().map(|file| top(file)).collect();
    for top in tops.into_iter().filter(|top| layer(top).is_none()) {
        let table = file!();
        offences.push(format!(
            "`{top}` is not in the layer table; place it in LAYERS in {table}"
        ));
    }
    for (from, edges) in &graph {
        for (to, paths) in edges {
            let (a, b) = (top(from), top(to));
            if let (Some(x), Some(y)) = (layer(a), layer(b))
                && a != b
                && x <= y
            {
                let why = if x == y { "the same" } else { "a higher" };
                let from = shown(from);
                offences.extend(paths.iter().map(|path| {
                    format!("{from} imports `{path}` ({a} -> {b}), but {b} is in {why} layer")
                }));
            }
        }
    }
    offences.extend(cycles(&graph));
    offences
}

/// Reports each set of files that import each other in a circle, with the imports that tie it.
fn cycles(graph: &Graph) -> Vec<String> {
    let (mut offences, mut done) = (Vec::new(), BTreeSet::new());
    for file in graph.keys() {
        let mut cycle = reachable(graph, file);
        cycle.retain(|other| reachable(graph, other).contains(file));
        if cycle.len() < 2 || done.contains(file) {
            continue;
        }
        let files: Vec<String> = cycle.iter().map(|file| shown(file)).collect();
        let mut message = format!("cycle between {}:", files.join(", "));
        for &from in &cycle {
            for (to, paths) in graph[from].iter().filter(|(to, _)| cycle.contains(to)) {
                for path in paths {
                    let (from, to) = (shown(from), shown(to));
                    message += &format!("\n    {from} -> {to} via `{path}`");
                }
            }
        }
        offences.push(message);
        done.extend(cycle);
    }
    offences
}

/// The files that `start` imports from, directly or not, and `start` itself.
fn reachable<'a>(graph: &'a Graph, start: &'a PathBuf) -> BTreeSet<&'a PathBuf> {
    let (mut seen, mut todo) = (BTreeSet::new(), vec![start]);
    while let Some(file) = todo.pop() {
        if seen.insert(file) {
            todo.extend(graph.get(file).into_iter().flat_map(Edges::keys));
        }
    }
    seen
}

/// Finds the module files under `src`, leaving out the exempt `lib.rs`, `main.rs` and `bin/`.
fn modules(src: &Path) -> Modules {
    let (mut modules, mut dirs) = (Modules::new(), vec![src.to_path_buf()]);
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("list a source directory") {
            let path = entry.expect("read a directory entry").path();
            let file = PathBuf::from(path.strip_prefix(src).expect("a path under src"));
            if matches!(file.to_str(), Some("lib.rs" | "main.rs" | "bin")) {
                continue;
            } else if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let names = file.with_extension("");
                let module = names.iter().map(|c| c.to_string_lossy().into_owned());
                modules.insert(module.filter(|name| name != "mod").collect(), file);
            }
        }
    }
    modules
}

/// The top-level module of a file: `store` for `store.rs`, `store/mod.rs` and `store/x.rs`.
fn top(file: &Path) -> &str {
    let first = file.iter().next().expect("a non-empty path");
    let name = Path::new(first).file_stem().expect("a module name");
    name.to_str().expect("a UTF-8 module name")
}

/// The index in `LAYERS` of a top-level module, if it has one.
fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&top))
}

/// A file as the offences name it, e.g. `src/store/mod.rs`.
fn shown(file: &Path) -> String {
    Path::new("src").join(file).display().to_string()
}

/// Whether an item is compiled only for unit tests.
fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let arg = attr.parse_args::<syn::Ident>();
        attr.path().is_ident("cfg") && arg.is_ok_and(|arg| arg == "test")
    })
}

/// Expands a `use` tree into the full path of each name it imports (a group's `self` is its prefix).
fn use_paths(tree: &UseTree, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let name = match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            return use_paths(&p.tree, prefix, out);
        }
        UseTree::Group(g) => {
            for tree in &g.items {
                use_paths(tree, prefix.clone(), out);
            }
            return;
        }
        UseTree::Glob(_) => None,
        UseTree::Name(n) => Some(&n.ident),
        UseTree::Rename(r) => Some(&r.ident),
    };
    prefix.extend(name.filter(|name| *name != "self").map(ToString::to_string));
    out.push(prefix);
}

/// Steps over a `::` in raw tokens, if there is one at `cursor`.
fn path_sep(cursor: Cursor<'_>) -> Option<Cursor<'_>> {
    let (first, rest) = cursor.punct()?;
    let (second, rest) = rest.punct()?;
    (first.as_char() == ':' && second.as_char() == ':').then_some(rest)
}

/// Collects the files that one file imports from.
struct Imports<'a> {
    modules: &'a Modules,
    /// The module the visitor is in: the file's own, plus any inline `mod x { ... }` around it.
    module: Vec<String>,
    edges: Edges,
}

impl Imports<'_> {
    /// Records `path` as an import of the deepest module with a file that it names, if any.
    fn record(&mut self, path: &[String]) {
        let here = &self.module[..];
        let supers = path.iter().take_while(|s| *s == "super").count();
        // A child module named without `self::`, as in `mod upsert; pub use upsert::upsert;`.
        let child = path.len() > 1 && self.modules.contains_key(&[here, &path[..1]].concat());
        let absolute = match path.first().map(String::as_str) {
            Some("crate") => path[1..].to_vec(),
            Some("self") => [here, &path[1..]].concat(),
            Some("super") if supers <= here.len() => {
                [&here[..here.len() - supers], &path[supers..]].concat()
            }
            Some(_) if child => [here, path].concat(),
            _ => return,
        };
        let mut prefixes = (1..=absolute.len()).rev().map(|n| &absolute[..n]);
        if let Some(file) = prefixes.find_map(|module| self.modules.get(module)) {
            let paths = self.edges.entry(file.clone()).or_default();
            paths.insert(path.join("::"));
        }
    }

    /// Records the paths spelled out in raw tokens: macro bodies and attribute arguments.
    fn scan(&mut self, mut cursor: Cursor<'_>) {
        while let Some((_, mut next)) = cursor.token_tree() {
            if let Some((inside, ..)) = cursor.any_group() {
                self.scan(inside);
            } else if let Some((first, mut rest)) = cursor.ident() {
                let mut path = vec![first.to_string()];
                while let Some((ident, after)) = path_sep(rest).and_then(Cursor::ident) {
                    path.push(ident.to_string());
                    rest = after;
                }
                if path.len() > 1 {
                    self.record(&path);
                }
                next = rest;
            }
            cursor = next;
        }
    }
}

/// The attributes of an item of one of the listed kinds.
macro_rules! attrs_of {
    ($item:expr, $($kind:ident)*) => {
        match $item { $(Item::$kind(item) => &item.attrs[..],)* _ => &[] }
    };
}

impl Visit<'_> for Imports<'_> {
    fn visit_item(&mut self, item: &Item) {
        let attrs = attrs_of!(item, Const Enum ExternCrate Fn ForeignMod Impl Macro Mod Static
            Struct Trait TraitAlias Type Union Use);
        if !is_cfg_test(attrs) {
            visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &syn::ItemMod) {
        self.module.push(item.ident.to_string());
        visit::visit_item_mod(self, item);
        self.module.pop();
    }

    fn visit_item_use(&mut self, item: &syn::ItemUse) {
        let mut paths = Vec::new();
        if item.leading_colon.is_none() {
            use_paths(&item.tree, Vec::new(), &mut paths);
        }
        paths.iter().for_each(|path| self.record(path));
    }

    fn visit_path(&mut self, path: &syn::Path) {
        if path.leading_colon.is_none() {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.record(&segments);
        }
        visit::visit_path(self, path);
    }

    /// `pub(super)` and `pub(in crate::x)` say who may see an item: they import nothing.
    fn visit_vis_restricted(&mut self, _: &syn::VisRestricted) {}

    fn visit_macro(&mut self, mac: &syn::Macro) {
        self.scan(TokenBuffer::new2(mac.tokens.clone()).begin());
        visit::visit_macro(self, mac);
    }

    fn visit_meta_list(&mut self, meta: &syn::MetaList) {
        self.scan(TokenBuffer::new2(meta.tokens.clone()).begin());
        visit::visit_meta_list(self, meta);
    }
}

#[test]
fn src_imports_point_only_down_the_layers_and_never_in_a_circle() {
    let offences = check(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")));
    let (count, list) = (offences.len(), offences.join("\n"));
    assert!(offences.is_empty(), "{count} offence(s):\n{list}");
}

/// A small tree that keeps to the layers, one `file: source` a line.
const CLEAN: &[&str] = &[
    "lib.rs: pub mod config; pub mod telemetry; pub mod domain; pub mod db; pub mod store;",
    "main.rs: use product_service::startup::run; fn main() { run(); }",
    "bin/tool.rs: use product_service::http::Problem; fn main() {}",
    "config.rs: pub struct Config; #[cfg(feature = \"x\")] pub struct TestHooks;",
    "telemetry.rs: use crate::config::Config; pub fn init(_: &Config) {}",
    "domain.rs: use std::fmt; use crate::telemetry; pub struct Key;",
    "db/mod.rs: use crate::{config::{self, Config}, domain::Key}; pub fn connect() {}",
    "store/mod.rs: mod upsert; pub use upsert::upsert; pub struct StoreError;",
    "store/upsert.rs: pub fn upsert(_: crate::domain::Key) { crate::db::connect(); }",
    "service.rs: use crate::store::{self, StoreError}; pub fn x() {}",
    "http/mod.rs: pub mod problem; pub use self::problem::Problem;",
    "http/problem.rs: #[derive(Debug)] pub struct Problem(crate::store::StoreError);",
    "dedupe.rs: pub fn run() { crate::service::x(); }",
    "startup.rs: use crate::{dedupe, http::Problem}; pub fn run() {}",
];

/// Writes `CLEAN` with one `file: source` line changed or added under a temporary `src/`, and
/// asserts that an offence found there contains `expected`, or if that is empty, that none is.
fn assert_offence(change: &str, expected: &str) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let src = dir.path().join("src");
    for line in CLEAN.iter().chain([&change]) {
        let (file, text) = line.split_once(": ").expect("a `file: source` line");
        let path = src.join(file);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create a directory");
        fs::write(path, text).expect("write a source file");
    }
    let offences = check(&src);
    if expected.is_empty() {
        assert_eq!(offences, Vec::<String>::new());
    } else {
        let found = offences.iter().any(|offence| offence.contains(expected));
        assert!(found, "no offence contains {expected:?}: {offences:#?}");
    }
}

#[test]
fn a_clean_layered_tree_passes() {
    // `lib.rs` is exempt, so rewriting it leaves exactly `CLEAN` to check.
    assert_offence("lib.rs: pub mod config;", "");
}

#[test]
fn an_import_from_a_higher_layer_fails() {
    assert_offence(
        "domain.rs: use crate::http::problem::ApiError;",
        "src/domain.rs imports `crate::http::problem::ApiError` (domain -> http)",
    );
}

#[test]
fn a_grouped_import_from_a_higher_layer_fails() {
    assert_offence(
        "db/mod.rs: use crate::{config::Config, startup::Application};",
        "src/db/mod.rs imports `crate::startup::Application` (db -> startup)",
    );
}

#[test]
fn a_path_in_a_function_body_a_macro_or_an_attribute_fails() {
    assert_offence(
        "store/upsert.rs: pub fn upsert() { crate::service::x(); }",
        "src/store/upsert.rs imports `crate::service::x` (store -> service)",
    );
    let domain = "domain.rs: #[doc(alias = crate::db::A)] fn f() { g!(crate::db::B); }";
    assert_offence(
        domain,
        "src/domain.rs imports `crate::db::A` (domain -> db)",
    );
    assert_offence(
        domain,
        "src/domain.rs imports `crate::db::B` (domain -> db)",
    );
}

#[test]
fn an_import_within_the_same_layer_fails() {
    assert_offence(
        "dedupe.rs: pub fn run(_: crate::http::Problem) {}",
        "(dedupe -> http), but http is in the same layer",
    );
}

#[test]
fn a_cycle_between_mod_rs_and_its_child_fails() {
    let upsert = "store/upsert.rs: use crate::store::StoreError; pub fn upsert() {}";
    let expected = concat!(
        "cycle between src/store/mod.rs, src/store/upsert.rs:\n",
        "    src/store/mod.rs -> src/store/upsert.rs via `upsert::upsert`\n",
        "    src/store/upsert.rs -> src/store/mod.rs via `crate::store::StoreError`",
    );
    assert_offence(upsert, expected);
}

#[test]
fn super_counts_as_the_module_it_names() {
    assert_offence(
        "store/upsert.rs: pub fn upsert() -> super::StoreError { todo!() }",
        "src/store/upsert.rs -> src/store/mod.rs via `super::StoreError`",
    );
}

#[test]
fn unit_tests_are_left_out() {
    assert_offence(
        "domain.rs: pub struct Key; #[cfg(test)] mod tests { use crate::http::x; use super::*; }",
        "",
    );
}

#[test]
fn a_top_level_module_missing_from_the_layers_fails() {
    assert_offence(
        "error.rs: pub struct ApiError;",
        "`error` is not in the layer table; place it in LAYERS",
    );
}
