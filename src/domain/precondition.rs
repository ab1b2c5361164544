//! Conditional writes and reads (RFC 9110, section 13): a product's entity tag, and the
//! preconditions a request sets with `If-Match`, `If-None-Match` or a `version` member.

use crate::domain::product::Product;

/// A product's strong entity tag, as the `ETag` header carries it (quoted): `"<id>.<version>"`.
/// The id is part of it, so that a product deleted and created again under the same key
/// (version 1 again) does not match a tag of the one before.
pub fn entity_tag(product: &Product) -> String {
    format!("\"{}.{}\"", product.id, product.version)
}

/// The entity tags of an `If-Match` or `If-None-Match` header (RFC 9110, sections 13.1.1 and
/// 13.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// `*`: any current representation.
    Any,
    /// The listed tags, each as sent: `"x"` (strong) or `W/"x"` (weak).
    Tags(Vec<String>),
}

impl TagList {
    /// Whether `tag` (a strong tag of ours, quoted) is listed: under the strong comparison a
    /// weak tag never matches (`If-Match`); under the weak one `W/"x"` matches `"x"`
    /// (`If-None-Match`). RFC 9110, section 8.8.3.2.
    fn lists(&self, tag: &str, weak_comparison: bool) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|listed| {
                let listed = listed.trim();
                match listed.strip_prefix("W/") {
                    Some(opaque) => weak_comparison && opaque == tag,
                    None => listed == tag,
                }
            }),
        }
    }
}

/// What a write requires of the product's current state; each unset part requires nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `If-Match`: the product exists and (unless `*`) its tag is listed.
    pub if_match: Option<TagList>,
    /// `If-None-Match`: the product does not exist (`*`), or its tag is not listed.
    pub if_none_match: Option<TagList>,
    /// A body's `version` member (PUT, PATCH): the product exists with this version.
    pub version: Option<i64>,
}

/// A precondition was false: nothing was written. Carries the product as it is, if there is
/// one, whose tag the answer sends (412, RFC 9110 section 15.5.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreconditionFailed {
    /// The product's current state, if it exists.
    pub current: Option<Box<Product>>,
}

impl Preconditions {
    /// No precondition at all: the unconditional write.
    pub const NONE: Self = Self {
        if_match: None,
        if_none_match: None,
        version: None,
    };

    /// Whether the request set no precondition at all.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none() && self.version.is_none()
    }

    /// Whether the request names the version it changes (`If-Match` with entity-tags, not `*`,
    /// or a `version`), as `REQUIRE_IF_MATCH` demands of PUT, PATCH and DELETE: `*` only says
    /// the product exists, which does not prevent a lost update.
    pub fn names_a_version(&self) -> bool {
        matches!(&self.if_match, Some(TagList::Tags(tags)) if !tags.is_empty())
            || self.version.is_some()
    }

    /// Evaluates the preconditions against the product as it is (`None`: there is none), in
    /// the order of RFC 9110, section 13.2.2: `If-Match`, then `If-None-Match`; then the
    /// `version` member.
    ///
    /// # Errors
    /// [`PreconditionFailed`] with the current product when one is false.
    pub fn check(&self, current: Option<&Product>) -> Result<(), PreconditionFailed> {
        let tag = current.map(entity_tag);
        let holds = self
            .if_match
            .as_ref()
            .is_none_or(|tags| tag.as_deref().is_some_and(|tag| tags.lists(tag, false)))
            && self
                .if_none_match
                .as_ref()
                .is_none_or(|tags| tag.as_deref().is_none_or(|tag| !tags.lists(tag, true)))
            && self
                .version
                .is_none_or(|version| current.is_some_and(|p| p.version == version));
        if holds {
            Ok(())
        } else {
            Err(PreconditionFailed {
                current: current.cloned().map(Box::new),
            })
        }
    }

    /// For a read (`GET`): whether the client's copy, named by `If-None-Match`, is still
    /// current, so that 304 Not Modified answers (RFC 9110, section 13.1.2).
    pub fn not_modified(&self, current: &Product) -> bool {
        self.if_none_match
            .as_ref()
            .is_some_and(|tags| tags.lists(&entity_tag(current), true))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::price::Price;

    fn product(id: i64, version: i64) -> Product {
        Product {
            id,
            brand: "B".into(),
            serial: "S".into(),
            manufacturer: "M".into(),
            name: "N".into(),
            description: String::new(),
            price: Price::zero(),
            version,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn tags(list: &[&str]) -> Option<TagList> {
        Some(TagList::Tags(
            list.iter().map(|t| (*t).to_owned()).collect(),
        ))
    }

    #[test]
    fn if_match_compares_strongly_and_fails_without_a_product() {
        let current = product(7, 3);
        let if_match = |list| Preconditions {
            if_match: list,
            ..Preconditions::default()
        };
        assert!(if_match(tags(&["\"7.3\""])).check(Some(&current)).is_ok());
        assert!(
            if_match(tags(&["\"1.1\"", "\"7.3\""]))
                .check(Some(&current))
                .is_ok()
        );
        assert!(if_match(tags(&["\"7.2\""])).check(Some(&current)).is_err());
        assert!(
            if_match(tags(&["W/\"7.3\""]))
                .check(Some(&current))
                .is_err()
        );
        assert!(if_match(Some(TagList::Any)).check(Some(&current)).is_ok());
        assert!(if_match(Some(TagList::Any)).check(None).is_err());
        let failed = if_match(tags(&["\"7.2\""])).check(Some(&current));
        assert_eq!(
            failed.map_err(|f| f.current.map(|p| p.version)),
            Err(Some(3))
        );
    }

    #[test]
    fn if_none_match_any_means_create_only_and_tags_compare_weakly() {
        let current = product(7, 3);
        let create_only = Preconditions {
            if_none_match: Some(TagList::Any),
            ..Preconditions::default()
        };
        assert!(create_only.check(None).is_ok());
        assert!(create_only.check(Some(&current)).is_err());
        let cached = Preconditions {
            if_none_match: tags(&["W/\"7.3\""]),
            ..Preconditions::default()
        };
        assert!(cached.not_modified(&current));
        assert!(!cached.not_modified(&product(7, 4)));
    }

    #[test]
    fn a_version_member_is_the_same_precondition() {
        let expect = |version| Preconditions {
            version: Some(version),
            ..Preconditions::default()
        };
        assert!(expect(3).check(Some(&product(7, 3))).is_ok());
        assert!(expect(2).check(Some(&product(7, 3))).is_err());
        assert!(expect(1).check(None).is_err());
        assert!(expect(1).names_a_version());
        assert!(!Preconditions::default().names_a_version());
        let any = Preconditions {
            if_match: Some(TagList::Any),
            ..Preconditions::default()
        };
        assert!(!any.names_a_version(), "* names no version");
    }
}
