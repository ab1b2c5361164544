//! [`ProductKey`]: what makes two products "the same product".

/// The natural key of a product: (brand, serial, manufacturer).
///
/// Request parsing trims each field of whitespace at both ends; otherwise fields compare exactly
/// (case-sensitive). The database has no unique constraint on it: the write path's advisory lock
/// on the key is what keeps it unique (README, "How the lock works").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductKey {
    pub brand: String,
    pub serial: String,
    pub manufacturer: String,
}

impl ProductKey {
    /// The key of these three fields, taken as they are.
    pub fn new(
        brand: impl Into<String>,
        serial: impl Into<String>,
        manufacturer: impl Into<String>,
    ) -> Self {
        Self {
            brand: brand.into(),
            serial: serial.into(),
            manufacturer: manufacturer.into(),
        }
    }
}

impl std::fmt::Display for ProductKey {
    /// `brand="…" serial="…" manufacturer="…"`, each field quoted and escaped as in Rust string
    /// literals (so a quote, a newline or trailing spaces stay visible), for log lines and
    /// reports.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "brand={:?} serial={:?} manufacturer={:?}",
            self.brand, self.serial, self.manufacturer
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_shown_with_each_field_named_quoted_and_escaped() {
        let key = ProductKey::new("Acme \"Co\"", "SN 1", "M\n");
        assert_eq!(
            key.to_string(),
            r#"brand="Acme \"Co\"" serial="SN 1" manufacturer="M\n""#
        );
    }
}
