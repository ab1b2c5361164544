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
