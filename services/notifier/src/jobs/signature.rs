//! Standard Webhooks signatures: `v1,` and the base64 of
//! HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}"), where the secret
//! bytes are the base64 after `whsec_`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::Secrets;

/// The `webhook-signature` header: one signature per secret, space
/// separated (two while a rotated-out secret still signs). A secret that
/// is not `whsec_` + base64 signs nothing (it was never issued here).
pub fn header(secrets: &Secrets, id: &str, timestamp: i64, body: &str) -> String {
    std::iter::once(&secrets.current)
        .chain(secrets.old.as_ref())
        .filter_map(|secret| sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_example() {
        let secrets = Secrets {
            current: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            old: None,
        };
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            header(
                &secrets,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let secrets = Secrets {
            current: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            old: Some("whsec_c2VjcmV0".into()),
        };
        let header = header(&secrets, "evt_1", 1, "{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
    }
}
