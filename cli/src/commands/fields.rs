//! `--fields`: names of profile fields, checked against the profile's own list.

use pam_totp_proto::text::sanitize;
use pam_totp_proto::{profile_fields, ApiError};

/// `--fields` names, checked against the profile's fields, in the given order, without
/// repeats.
pub fn parse_fields(names: &[String]) -> Result<Vec<&'static str>, ApiError> {
    let mut fields: Vec<&'static str> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::invalid("fields", "empty field name in --fields"));
        }
        let Some(field) = profile_fields().iter().find(|known| **known == name) else {
            return Err(ApiError::invalid(
                "fields",
                format!(
                    "unknown field '{}' (known: {})",
                    sanitize(name),
                    profile_fields().join(", ")
                ),
            ));
        };
        if !fields.contains(field) {
            fields.push(field);
        }
    }
    if fields.is_empty() {
        return Err(ApiError::invalid("fields", "--fields names no field"));
    }
    Ok(fields)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_keep_order_and_drop_repeats() {
        assert_eq!(
            parse_fields(&strings(&["uid", "account", " uid ", "can"])).unwrap(),
            vec!["uid", "account", "can"]
        );
        let error = parse_fields(&strings(&["account", "nope"])).err().unwrap();
        assert_eq!(error.target.as_deref(), Some("fields"));
        assert!(error.message.contains("'nope'"));
        assert!(parse_fields(&strings(&["account", ""])).is_err());
        assert!(parse_fields(&[]).is_err());
    }
}
