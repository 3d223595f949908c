//! The proto3 JSON form of a message, through the descriptor set: what a
//! webhook body carries (DESIGN.md §9). Field names are the proto names
//! (`snake_case`, as Stripe's JSON), which every proto3 JSON parser accepts.

use prost_reflect::{DynamicMessage, SerializeOptions};

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The embedded descriptor set is unreadable (a build problem).
    #[error("descriptor set: {0}")]
    Descriptors(String),
    /// The message is not in the descriptor set.
    #[error("unknown message {0}")]
    Unknown(String),
    /// Decoding or serializing failed.
    #[error("{0}")]
    Render(String),
}

fn pool() -> Result<&'static prost_reflect::DescriptorPool, JsonError> {
    crate::descriptors::pool().map_err(|e| JsonError::Descriptors(e.to_owned()))
}

/// `message` (of the proto type `full_name`, e.g. `billing.events.v1.Event`)
/// as compact proto3 JSON.
pub fn to_json(message: &impl prost::Message, full_name: &str) -> Result<String, JsonError> {
    let descriptor = pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::Unknown(full_name.to_owned()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| JsonError::Render(e.to_string()))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    dynamic
        .serialize_with_options(&mut serializer, &options)
        .map_err(|e| JsonError::Render(e.to_string()))?;
    String::from_utf8(out).map_err(|e| JsonError::Render(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_renders_with_proto_field_names_and_rfc3339_times() {
        let event = crate::events::v1::Event {
            id: "evt_1".into(),
            r#type: "meter.created".into(),
            created: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            }),
            cursor: "5_0".into(),
            data: Some(crate::events::v1::event::Data::Meter(
                crate::meter::v1::Meter {
                    id: "mtr_1".into(),
                    event_name: "api_calls".into(),
                    ..Default::default()
                },
            )),
        };
        let json = to_json(&event, "billing.events.v1.Event").unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["id"], "evt_1");
        assert_eq!(value["created"], "2026-01-01T00:00:00Z");
        assert_eq!(value["meter"]["event_name"], "api_calls");
    }
}
