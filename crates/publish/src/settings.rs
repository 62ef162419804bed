//! Segment settings: the `[publish]` table of a segment's `<segment>.toml`, parsed
//! strictly (an unknown key or a wrong value names the file and what to write).

use std::path::Path;

use serde::Deserialize;

use crate::error::{PublishError, Result};

/// Where a segment's contacts are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An email service: the customer's email.
    Email,
    /// An SMS service or call centre: the customer's E.164 phone.
    Sms,
    /// Ad platforms: hashed email and phone only.
    Ads,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Ads => "ads",
        }
    }
}

/// A file format written into a publication besides `snapshot.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// UTF-8 CSV with a header: key, address, fields (email and SMS services).
    Csv,
    /// `hashed_email,hashed_phone`: SHA-256 hex (Google Customer Match, Meta).
    Sha256Audience,
    /// `email,phone`: MD5 hex of the lower-cased email and of the phone's digits
    /// (Yandex Audiences).
    YandexAudience,
}

impl Format {
    /// The file name of the format in a publication.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Csv => "feed.csv",
            Format::Sha256Audience => "audience_sha256.csv",
            Format::YandexAudience => "audience_yandex_md5.csv",
        }
    }
}

/// `[publish]` of a segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSettings {
    /// Channels to publish to; one feed each.
    pub channels: Vec<Channel>,
    /// The column that identifies a row across publications (diffs are by key).
    #[serde(default = "default_key")]
    pub key: String,
    /// Segment columns carried in email/SMS feeds (default: every column but the key).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Below this many rows the feed is not published (default 100 for ads, else 1).
    #[serde(default)]
    pub min_size: Option<u64>,
    /// Refuse a publication that removes more than this share of the previous
    /// audience, unless forced.
    #[serde(default = "default_max_removed_share")]
    pub max_removed_share: f64,
    /// Publish only contacts whose latest statement for the channel is a grant.
    #[serde(default)]
    pub require_consent: bool,
    /// Apply the job's contact pressure cap (`[publish] pressure_*`) to this segment.
    #[serde(default = "yes")]
    pub contact_pressure: bool,
    /// Formats to write (default: `csv` for email and SMS; `sha256_audience` and
    /// `yandex_audience` for ads).
    #[serde(default)]
    pub formats: Option<Vec<Format>>,
}

fn default_key() -> String {
    "customer_id".into()
}

fn default_max_removed_share() -> f64 {
    0.5
}

fn yes() -> bool {
    true
}

impl SegmentSettings {
    /// Parses the `[publish]` table of a segment file.
    pub fn from_table(table: &toml::Table, file: &Path) -> Result<Self> {
        let invalid = |message: String| PublishError::Settings {
            file: file.to_path_buf(),
            message,
        };
        let settings: SegmentSettings = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("[publish]: {}", e.message())))?;
        if settings.channels.is_empty() {
            return Err(invalid(
                "[publish]: `channels` is empty; name at least one of email, sms, ads".into(),
            ));
        }
        if !(0.0..=1.0).contains(&settings.max_removed_share) {
            return Err(invalid(
                "[publish]: `max_removed_share` must be between 0 and 1".into(),
            ));
        }
        for format in settings.formats.iter().flatten() {
            let ad_format = matches!(format, Format::Sha256Audience | Format::YandexAudience);
            for channel in &settings.channels {
                if ad_format != (*channel == Channel::Ads) {
                    return Err(invalid(format!(
                        "[publish]: format {format:?} does not fit channel `{}`; ads take sha256_audience/yandex_audience, email and sms take csv",
                        channel.as_str()
                    )));
                }
            }
        }
        Ok(settings)
    }

    /// The minimum size for a channel.
    pub fn min_size(&self, channel: Channel) -> u64 {
        self.min_size.unwrap_or(match channel {
            Channel::Ads => 100,
            _ => 1,
        })
    }

    /// The formats written for a channel.
    pub fn formats(&self, channel: Channel) -> Vec<Format> {
        match (&self.formats, channel) {
            (Some(f), _) => f.clone(),
            (None, Channel::Ads) => vec![Format::Sha256Audience, Format::YandexAudience],
            (None, _) => vec![Format::Csv],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SegmentSettings> {
        let table: toml::Table = toml::from_str(text).unwrap();
        SegmentSettings::from_table(&table, Path::new("sql/segments/x.toml"))
    }

    #[test]
    fn defaults_and_errors() {
        let s = parse("channels = [\"ads\"]").unwrap();
        assert_eq!(s.key, "customer_id");
        assert_eq!(s.min_size(Channel::Ads), 100);
        assert_eq!(s.max_removed_share, 0.5);
        assert_eq!(s.formats(Channel::Ads).len(), 2);
        let s = parse("channels = [\"email\", \"sms\"]").unwrap();
        assert_eq!(s.min_size(Channel::Sms), 1);
        let e = parse("channels = [\"fax\"]").unwrap_err().to_string();
        assert!(
            e.contains("sql/segments/x.toml") && e.contains("fax"),
            "{e}"
        );
        let e = parse("channels = [\"email\"]\nmin_sise = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_sise"), "{e}");
        let e = parse("channels = [\"email\"]\nformats = [\"sha256_audience\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not fit"), "{e}");
        assert!(parse("channels = []").is_err());
        assert!(parse("channels = [\"sms\"]\nmax_removed_share = 2.0").is_err());
    }
}
