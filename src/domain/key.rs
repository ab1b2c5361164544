//! [`ProductKey`]: what makes two products "the same product", and the one canonical form of
//! a key field ([`canonical_key_field`]) that requests, filters and `dedupe` all go through.

use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// The canonical form of a key field (brand, serial or manufacturer): trimmed of whitespace at
/// both ends (Unicode `White_Space`, as [`str::trim`]), then in Unicode Normalization Form C
/// ([UAX #15](https://www.unicode.org/reports/tr15/)), so that canonically equivalent spellings
/// such as `"Caf\u{e9}"` (precomposed) and `"Cafe\u{301}"` (e + combining acute accent) are
/// one text. Otherwise nothing changes: case, compatibility characters (`"ﬁ"` is not `"fi"`)
/// and invisible characters stay as they are (the parsers refuse the latter with
/// [`format_character`]).
///
/// Idempotent: the canonical form of a canonical form is itself. Text that is already NFC (all
/// ASCII text is) is only trimmed.
pub fn canonical_key_field(raw: &str) -> String {
    let trimmed = raw.trim();
    // ASCII (most keys) is NFC: one pass over the bytes instead of one over the characters.
    if trimmed.is_ascii() || unicode_normalization::is_nfc(trimmed) {
        trimmed.to_owned()
    } else {
        // NFC never turns a character that is not whitespace into one, so this stays trimmed.
        trimmed.nfc().collect()
    }
}

/// The first invisible format character in `text`, if any: a character of Unicode general
/// category Cf ("Format"), such as U+200B ZERO WIDTH SPACE, U+200D ZERO WIDTH JOINER, U+FEFF
/// BYTE ORDER MARK, U+00AD SOFT HYPHEN or the bidirectional controls U+202A-U+202E and
/// U+2066-U+2069. They make two keys that look identical differ, so key fields refuse them.
pub fn format_character(text: &str) -> Option<char> {
    // No ASCII character is one (the first is U+00AD): ASCII text needs no table lookups.
    if text.is_ascii() {
        return None;
    }
    text.chars().find(|&c| is_format_character(c))
}

/// Whether `c` is an invisible format character: Unicode general category Cf.
pub fn is_format_character(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// Whether a key field or filter refuses `c` wherever it stands: a control character (general
/// category Cc, as [`char::is_control`]) or an invisible format character (Cf).
pub fn refused_in_key(c: char) -> bool {
    c.is_control() || is_format_character(c)
}

/// The validation message for a key field or filter that holds the format character `c`, naming
/// its code point (`U+200B`), since the character itself cannot be seen.
pub fn format_character_message(c: char) -> String {
    format!(
        "must not contain invisible format characters (U+{:04X})",
        u32::from(c)
    )
}

/// Most bytes of UTF-8 that brand, serial and manufacturer take together, once canonical: the
/// three fit one entry of the key index (a B-tree entry holds at most 2,704 bytes on 8 kB pages,
/// headers included; PostgreSQL docs, "B-Tree Indexes"; SQLSTATE 54000 beyond). Three fields of
/// 255 characters of the Basic Multilingual Plane (at most 3 bytes each) always fit.
pub const MAX_KEY_BYTES: usize = 2_600;

/// The natural key of a product: (brand, serial, manufacturer).
///
/// Request parsing puts each field in its canonical form ([`canonical_key_field`]: trimmed, NFC)
/// and refuses control and invisible format characters; otherwise fields compare exactly
/// (case-sensitive). The database has no unique constraint on it: the write path's advisory lock
/// on the key is what keeps it unique (README, "How the lock works"). Rows written before keys
/// were normalised may hold other spellings; `product-service dedupe` finds and merges them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
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

    /// Bytes of the three fields together in UTF-8, as the key index stores them (compare
    /// with [`MAX_KEY_BYTES`]).
    pub fn utf8_len(&self) -> usize {
        self.brand.len() + self.serial.len() + self.manufacturer.len()
    }

    /// This key with each field in its canonical form ([`canonical_key_field`]): the key a
    /// request naming these fields would address.
    pub fn canonical(&self) -> Self {
        Self::new(
            canonical_key_field(&self.brand),
            canonical_key_field(&self.serial),
            canonical_key_field(&self.manufacturer),
        )
    }

    /// Why no request could name this (canonical) key, if none can: a field that is blank, or
    /// holds a control or an invisible format character (which key fields refuse); as a
    /// sentence naming the field and the code point; or the three over [`MAX_KEY_BYTES`] bytes
    /// (which normalising can cause). Only rows written before the rules, or outside the
    /// service, can hold such a key.
    pub fn unaddressable(&self) -> Option<String> {
        [
            ("brand", &self.brand),
            ("serial", &self.serial),
            ("manufacturer", &self.manufacturer),
        ]
        .into_iter()
        .find_map(|(name, field)| {
            if field.trim().is_empty() {
                return Some(format!("its {name} is blank"));
            }
            let c = field.chars().find(|&c| refused_in_key(c))?;
            let kind = if c.is_control() {
                "a control character"
            } else {
                "an invisible format character"
            };
            Some(format!("its {name} holds {kind}, U+{:04X}", u32::from(c)))
        })
        .or_else(|| {
            // Normalising can lengthen a field: U+0958 is 3 bytes, its NFC form 6.
            (self.utf8_len() > MAX_KEY_BYTES).then(|| {
                format!(
                    "brand, serial and manufacturer together are {} bytes of UTF-8, over the \
                     {MAX_KEY_BYTES} a request may name",
                    self.utf8_len()
                )
            })
        })
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
    fn canonical_key_fields_are_trimmed_then_nfc_and_otherwise_unchanged() {
        let cases = [
            ("already canonical", "Acme", "Acme"),
            ("trimmed at both ends", " \t Acme \n", "Acme"),
            ("inner spaces kept", "Acme  Corp", "Acme  Corp"),
            ("decomposed e-acute composed", "Cafe\u{301}", "Caf\u{e9}"),
            ("precomposed stays", "Caf\u{e9}", "Caf\u{e9}"),
            ("trimmed, then composed", "  Cafe\u{301} ", "Caf\u{e9}"),
            (
                "marks reordered, then composed",
                "a\u{302}\u{323}",
                "\u{1ead}",
            ),
            ("Hangul jamo composed", "\u{1100}\u{1161}", "\u{ac00}"),
            ("singleton Angstrom sign", "\u{212b}", "\u{c5}"),
            ("case kept", "CAF\u{c9}", "CAF\u{c9}"),
            (
                "compatibility ligature kept (NFC, not NFKC)",
                "\u{fb01}",
                "\u{fb01}",
            ),
            (
                "invisible characters kept (refused elsewhere)",
                "a\u{200b}b",
                "a\u{200b}b",
            ),
            ("BOM is not whitespace", "\u{feff}SN", "\u{feff}SN"),
        ];
        for (case, raw, canonical) in cases {
            assert_eq!(canonical_key_field(raw), canonical, "{case}");
            assert_eq!(
                canonical_key_field(&canonical_key_field(raw)),
                canonical,
                "{case}: idempotent"
            );
        }
    }

    #[test]
    fn format_characters_are_found_and_named_by_code_point() {
        for c in [
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{feff}', '\u{202e}', '\u{2066}', '\u{ad}',
        ] {
            assert_eq!(
                format_character(&format!("S{c}N")),
                Some(c),
                "{:04X}",
                u32::from(c)
            );
        }
        for text in ["Acme", "Caf\u{e9}", "a b", "\u{1f600}", "a\tb"] {
            assert_eq!(format_character(text), None, "{text:?}");
        }
        assert_eq!(
            format_character_message('\u{200b}'),
            "must not contain invisible format characters (U+200B)"
        );
    }

    #[test]
    fn a_key_no_request_can_name_says_why() {
        let why = |key: ProductKey| key.unaddressable();
        assert_eq!(why(ProductKey::new("A", "S", "M")), None);
        assert_eq!(
            why(ProductKey::new("A", "S", "M\u{feff}")).as_deref(),
            Some("its manufacturer holds an invisible format character, U+FEFF")
        );
        assert_eq!(
            why(ProductKey::new("A", "S\u{1}", "M")).as_deref(),
            Some("its serial holds a control character, U+0001")
        );
        assert_eq!(
            why(ProductKey::new("   ", "S", "M").canonical()).as_deref(),
            Some("its brand is blank")
        );
        // 300 x U+0958 is 900 bytes, and 1,800 once normalised (U+0915 U+093C).
        let grows = ProductKey::new("\u{958}".repeat(300), "s".repeat(849), "M");
        assert_eq!(why(grows.clone()), None);
        assert_eq!(
            why(grows.canonical()).as_deref(),
            Some(
                "brand, serial and manufacturer together are 2650 bytes of UTF-8, over the 2600 \
                 a request may name"
            )
        );
    }

    #[test]
    fn a_key_and_its_canonical_form() {
        let legacy = ProductKey::new(" Cafe\u{301}", "SN", "M ");
        assert_eq!(legacy.canonical(), ProductKey::new("Caf\u{e9}", "SN", "M"));
        assert_eq!(legacy.canonical().canonical(), legacy.canonical());
    }

    #[test]
    fn a_key_is_shown_with_each_field_named_quoted_and_escaped() {
        let key = ProductKey::new("Acme \"Co\"", "SN 1", "M\n");
        assert_eq!(
            key.to_string(),
            r#"brand="Acme \"Co\"" serial="SN 1" manufacturer="M\n""#
        );
    }
}
