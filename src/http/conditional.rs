//! The preconditions of a request, read from `If-Match` and `If-None-Match` (RFC 9110, sections
//! 13.1.1 and 13.1.2), into the domain's [`Preconditions`].

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{Ready, ready};

use crate::domain::{Preconditions, TagList};
use crate::http::problem::ApiError;

/// The request's `If-Match` and `If-None-Match`, as [`Preconditions`] (no `version` yet: that
/// comes from the body, where PUT and PATCH read it).
///
/// Errors: 400 naming the header when it is not `*` or a list of entity-tags.
#[derive(Debug, Clone, Default)]
pub struct Conditions(pub Preconditions);

impl FromRequest for Conditions {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(read(req).map(Conditions))
    }
}

/// The entity-tags of one `If-Match` or `If-None-Match` value (RFC 9110, sections 8.8.3 and
/// 5.6.1): `*`, or a comma-separated list of `"opaque"` or `W/"opaque"` (`etagc`: ASCII
/// `!` and `#` to `~`, commas included, so a tag is read to its closing quote, not split at
/// commas); `None` when malformed. actix-web's typed headers split at every comma and read
/// `not a tag` as an empty list, so the grammar is read here.
fn tag_list(value: &str) -> Option<TagList> {
    let value = value.trim_matches([' ', '\t']);
    if value == "*" {
        return Some(TagList::Any);
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(TagList::Tags(tags));
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(quoted) => ("W/", quoted),
            None => ("", rest),
        };
        let opaque = quoted.strip_prefix('"')?;
        let end = opaque.find('"')?;
        if !opaque[..end]
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
        {
            return None;
        }
        tags.push(format!("{weak}\"{}\"", &opaque[..end]));
        rest = opaque[end + 1..].trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
}

/// Header `name`'s tag list, its lines taken together; `None` when absent or empty.
///
/// # Errors
/// 400 naming the header when a line is malformed.
fn header_tags(
    req: &HttpRequest,
    name: &header::HeaderName,
    shown: &str,
) -> Result<Option<TagList>, ApiError> {
    let mut found: Option<TagList> = None;
    for value in req.headers().get_all(name) {
        let list = value.to_str().ok().and_then(tag_list).ok_or_else(|| {
            ApiError::Validation(crate::domain::FieldErrors::from([(
                shown.to_owned(),
                vec!["must be * or a list of entity-tags such as \"7.3\"".to_owned()],
            )]))
        })?;
        found = Some(match (found, list) {
            (None, list) => list,
            (Some(TagList::Any), _) | (_, TagList::Any) => TagList::Any,
            (Some(TagList::Tags(mut tags)), TagList::Tags(more)) => {
                tags.extend(more);
                TagList::Tags(tags)
            }
        });
    }
    // An empty value lists nothing: as if the header were absent.
    Ok(found.filter(|list| *list != TagList::Tags(Vec::new())))
}

fn read(req: &HttpRequest) -> Result<Preconditions, ApiError> {
    Ok(Preconditions {
        if_match: header_tags(req, &header::IF_MATCH, "If-Match")?,
        if_none_match: header_tags(req, &header::IF_NONE_MATCH, "If-None-Match")?,
        version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::schemas::TAG_LIST_PATTERN;

    #[test]
    fn tag_lists_are_read_to_their_closing_quotes_as_the_document_says() {
        let tags = |list: &[&str]| {
            Some(TagList::Tags(
                list.iter().map(|t| (*t).to_owned()).collect(),
            ))
        };
        let pattern = regex::Regex::new(TAG_LIST_PATTERN).expect("pattern");
        for (value, read) in [
            ("*", Some(TagList::Any)),
            ("\"7.3\"", tags(&["\"7.3\""])),
            ("W/\"7.3\"", tags(&["W/\"7.3\""])),
            ("\"a,b\" ,\t W/\"c\"", tags(&["\"a,b\"", "W/\"c\""])),
            ("\"\"", tags(&["\"\""])),
            ("", tags(&[])),
            ("not a tag", None),
            ("\"unclosed", None),
            ("\"a\" \"b\"", None),
            ("\"sp ace\"", None),
            ("w/\"x\"", None),
            ("*, \"a\"", None),
        ] {
            assert_eq!(tag_list(value), read, "{value:?}");
            assert_eq!(
                pattern.is_match(value),
                read.is_some(),
                "the document on {value:?}"
            );
        }
    }
}
