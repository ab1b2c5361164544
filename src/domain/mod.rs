//! The product domain, pure: the natural key, prices, products, and the parsing of request
//! bodies and list filters into them. Knows nothing of HTTP, SQL or OpenAPI; its failures are
//! [`InputError`]s, which the HTTP layer renders.
//!
//! Bodies are parsed once, at the edge, into these types; nothing after checks them again.

pub mod input;
pub mod key;
pub mod list;
pub mod precondition;
pub mod price;
pub mod product;
#[cfg(test)]
mod properties;

pub use input::{BodyFormat, FIELDS, FieldErrors, InputError, READ_ONLY_FIELDS, REQUIRED_FIELDS};
pub use key::ProductKey;
pub use list::{ListPage, ListParams, ListQuery};
pub use precondition::{PreconditionFailed, Preconditions, TagList, entity_tag};
pub use price::Price;
pub use product::{Product, ProductInput, ProductPatch};
