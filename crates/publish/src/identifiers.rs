//! Normalising and hashing the identifiers of a feed: which address a channel uses,
//! whether it is valid, and the digests ad platforms match on.
//!
//! - SHA-256 (Google Customer Match, Meta): of the email trimmed and lower-cased, for
//!   `gmail.com`/`googlemail.com` also without dots and `+suffix` in the local part; of
//!   the phone in E.164 with the `+`.
//! - MD5 (Yandex Audiences): of the lower-cased email and of the phone's digits only.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A valid email, trimmed and lower-cased (the rule of ingest).
pub fn valid_email(raw: &str) -> Option<String> {
    crmflow_core::normalize::email(raw).map(std::borrow::Cow::into_owned)
}

/// A valid phone in E.164 (`+` and 8 to 15 digits; `+7` numbers have 11 digits).
/// Feeds only take what ingest normalised, so anything else is rejected.
pub fn valid_phone(raw: &str) -> Option<String> {
    let digits = raw.strip_prefix('+')?;
    let n = digits.len();
    let valid = (8..=15).contains(&n)
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
        && (!digits.starts_with('7') || n == 11);
    valid.then(|| raw.to_string())
}

/// The email as ad platforms match it: valid, lower-cased, and for Gmail without dots
/// and `+suffix` in the local part.
pub fn ad_email(raw: &str) -> Option<String> {
    let email = valid_email(raw)?;
    let (local, domain) = email.split_once('@')?;
    if domain == "gmail.com" || domain == "googlemail.com" {
        let local = local.split('+').next().unwrap_or(local).replace('.', "");
        if local.is_empty() {
            return None;
        }
        return Some(format!("{local}@{domain}"));
    }
    Some(email)
}

/// SHA-256 hex (lower case) of a string.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// MD5 hex (lower case) of a string.
pub fn md5_hex(value: &str) -> String {
    hex::encode(Md5::digest(value.as_bytes()))
}

/// Google Customer Match / Meta: SHA-256 of the normalised email.
pub fn hashed_email(raw: &str) -> Option<String> {
    ad_email(raw).map(|e| sha256_hex(&e))
}

/// Google Customer Match / Meta: SHA-256 of the E.164 phone with its `+`.
pub fn hashed_phone(raw: &str) -> Option<String> {
    valid_phone(raw).map(|p| sha256_hex(&p))
}

/// Yandex Audiences: MD5 of the lower-cased email.
pub fn yandex_email(raw: &str) -> Option<String> {
    valid_email(raw).map(|e| md5_hex(&e))
}

/// Yandex Audiences: MD5 of the phone's digits (`79995551111`).
pub fn yandex_phone(raw: &str) -> Option<String> {
    valid_phone(raw).map(|p| md5_hex(&p[1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vectors computed independently with `printf '%s' VALUE | sha256sum` / `md5sum`.
    #[test]
    fn known_vectors() {
        assert_eq!(
            sha256_hex("test@example.com"),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
        assert_eq!(
            hashed_email(" John.Smith+promo@GMail.com ").as_deref(),
            Some("3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586")
        );
        assert_eq!(
            hashed_phone("+79995551111").as_deref(),
            Some("86cc60992d2e0fde2e5511d462b755057f8f5c6b259a1ff7c2eee2ea284eb113")
        );
        assert_eq!(
            yandex_email("Test@Example.com ").as_deref(),
            Some("55502f40dc8b7c769880b10874abc9d0")
        );
        assert_eq!(
            yandex_phone("+79995551111").as_deref(),
            Some("f09f2c3d48f31e2a802944ade2e5aec5")
        );
    }

    #[test]
    fn gmail_rule() {
        assert_eq!(
            ad_email("  John.Smith+promo@GMail.com ").as_deref(),
            Some("johnsmith@gmail.com")
        );
        assert_eq!(
            ad_email("j.o.h.n+x+y@googlemail.com").as_deref(),
            Some("john@googlemail.com")
        );
        // Other domains keep dots and suffixes.
        assert_eq!(
            ad_email("John.Smith+promo@Example.com").as_deref(),
            Some("john.smith+promo@example.com")
        );
        assert_eq!(ad_email("+promo@gmail.com"), None);
        assert_eq!(ad_email("not an email"), None);
    }

    #[test]
    fn phones() {
        assert_eq!(valid_phone("+79995551111").as_deref(), Some("+79995551111"));
        assert_eq!(valid_phone("79995551111"), None);
        assert_eq!(valid_phone("+7999555111"), None);
        assert_eq!(
            valid_phone("+4915112345678").as_deref(),
            Some("+4915112345678")
        );
        assert_eq!(valid_phone("+7 999 555 11 11"), None);
        assert_eq!(valid_phone("+0123456789"), None);
    }

    proptest! {
        #[test]
        fn hashes_never_leak_and_are_hex(s in ".{0,40}") {
            for h in [hashed_email(&s), hashed_phone(&s), yandex_email(&s), yandex_phone(&s)].into_iter().flatten() {
                prop_assert!(h.len() == 64 || h.len() == 32);
                prop_assert!(h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
        }
    }
}
