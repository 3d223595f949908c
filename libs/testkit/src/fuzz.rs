//! A seeded, structure-aware generator of hostile request bodies: for every
//! RPC in the descriptor set, encodings of its request message with
//! surprising values (empty, huge, control characters, negative and huge
//! numbers, far timestamps, deep nesting), then byte-level mutations, and
//! plain random bytes. The same seed gives the same bodies.

use std::collections::HashMap;

use prost::Message;
use prost::encoding::encode_varint;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// One RPC: its path and whether the client streams.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// `/billing.ledger.v1.LedgerService/GetCreditGrant`
    pub path: &'static str,
    /// The fully qualified input type (`.billing.ledger.v1.GetCreditGrantRequest`).
    pub input: String,
    /// Client streaming (StreamEvents).
    pub client_streaming: bool,
    /// Server streaming only (WatchEvents: it follows the feed forever).
    pub server_streaming: bool,
}

/// xorshift64*: small, seedable, good enough to pick values.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.bits() % n.max(1) as u64).unwrap_or(0)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.bits() % 100 < percent
    }
}

/// The billing services' descriptors: every RPC, and message lookup.
#[derive(Debug)]
pub struct Schema {
    messages: HashMap<String, DescriptorProto>,
    /// Every RPC of every billing service.
    pub rpcs: Vec<Rpc>,
}

impl Schema {
    /// Reads the billing descriptor set.
    pub fn load() -> Self {
        let set = FileDescriptorSet::decode(billing_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let mut messages = HashMap::new();
        let mut rpcs = Vec::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                collect(&format!(".{package}"), message, &mut messages);
            }
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    rpcs.push(Rpc {
                        path: Box::leak(path.into_boxed_str()),
                        input: method.input_type().to_owned(),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming() && !method.client_streaming(),
                    });
                }
            }
        }
        Self { messages, rpcs }
    }

    /// A body for `rpc`: a generated encoding (maybe mutated) or random bytes.
    pub fn body(&self, rpc: &Rpc, rng: &mut Rng) -> Vec<u8> {
        if rng.chance(10) {
            let len = rng.below(64);
            return (0..len).map(|_| rng.bits() as u8).collect();
        }
        let mut body = Vec::new();
        self.encode(&rpc.input, rng, 0, &mut body);
        if rng.chance(30) {
            mutate(&mut body, rng);
        }
        body
    }

    fn encode(&self, type_name: &str, rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        if type_name == ".google.protobuf.Timestamp" {
            let seconds: i64 = *pick(
                rng,
                &[
                    0,
                    -1,
                    1_767_225_600,
                    1_768_435_200,
                    4_102_444_800,
                    253_402_300_800,
                    i64::MIN,
                    i64::MAX,
                ],
            );
            field_varint(1, seconds as u64, out);
            field_varint(
                2,
                *pick(rng, &[0_u64, 999_999_999, 1_000_000_000, u64::MAX]),
                out,
            );
            return;
        }
        let Some(message) = self.messages.get(type_name) else {
            return;
        };
        for field in &message.field {
            if !rng.chance(70) {
                continue;
            }
            let count = if field.label() == Label::Repeated {
                rng.below(4)
            } else {
                1
            };
            for _ in 0..count {
                let number = u64::try_from(field.number()).unwrap_or(1);
                match field.r#type() {
                    Type::String => {
                        let text = string(rng);
                        field_bytes(number, text.as_bytes(), out);
                    }
                    Type::Message if depth < 4 => {
                        let mut inner = Vec::new();
                        if self.map_entry(field.type_name()).is_some() {
                            field_bytes(1, string(rng).as_bytes(), &mut inner);
                            field_bytes(2, string(rng).as_bytes(), &mut inner);
                        } else {
                            self.encode(field.type_name(), rng, depth + 1, &mut inner);
                        }
                        field_bytes(number, &inner, out);
                    }
                    Type::Bool => field_varint(number, rng.bits() % 2, out),
                    Type::Message | Type::Group | Type::Bytes => {}
                    _ => {
                        let value: u64 = *pick(
                            rng,
                            &[
                                0,
                                1,
                                2,
                                3,
                                7,
                                42,
                                99,
                                u64::MAX,
                                i64::MAX as u64,
                                1 << 31,
                                1_000_001,
                            ],
                        );
                        field_varint(number, value, out);
                    }
                }
            }
        }
    }

    fn map_entry(&self, type_name: &str) -> Option<&DescriptorProto> {
        self.messages
            .get(type_name)
            .filter(|m| m.options.as_ref().is_some_and(|o| o.map_entry()))
    }
}

fn collect(scope: &str, message: &DescriptorProto, out: &mut HashMap<String, DescriptorProto>) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect(&name, nested, out);
    }
    out.insert(name, message.clone());
}

fn pick<'a, T>(rng: &mut Rng, values: &'a [T]) -> &'a T {
    &values[rng.below(values.len())]
}

fn string(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => "x".repeat(5_000),
        2 => "cus_\0nul".to_owned(),
        3 => "\u{1b}[31mred\u{7}".to_owned(),
        4 => "12.5".to_owned(),
        5 => format!("0.{}1", "0".repeat(30)),
        6 => "-1".to_owned(),
        7 => "usd".to_owned(),
        8 => "🦀 ünïcode".to_owned(),
        9 => "9".repeat(60),
        10 => format!(
            "{}_{}",
            pick(rng, &["cus", "price", "mtr", "credgr", "in", "sub", "pu"]),
            rng.bits()
        ),
        _ => "1e3".to_owned(),
    }
}

fn field_varint(number: u64, value: u64, out: &mut Vec<u8>) {
    encode_varint(number << 3, out);
    encode_varint(value, out);
}

fn field_bytes(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
    encode_varint((number << 3) | 2, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn mutate(body: &mut Vec<u8>, rng: &mut Rng) {
    match rng.below(4) {
        0 if !body.is_empty() => {
            let at = rng.below(body.len());
            body[at] ^= 1 << rng.below(8);
        }
        1 if !body.is_empty() => {
            let len = rng.below(body.len());
            body.truncate(len);
        }
        2 => {
            let at = rng.below(body.len() + 1);
            body.insert(at, rng.bits() as u8);
        }
        _ => body.extend_from_slice(&[0x0f, 0xff, 0x01]),
    }
}

/// Fails when an answer to hostile input is our fault (INTERNAL or
/// UNKNOWN) or its message passes 1 KiB; names the RPC and the seed.
///
/// # Panics
/// On either (that is the check).
pub fn check_answer(path: &str, seed: u64, status: &tonic::Status) {
    assert!(
        !matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown),
        "seed {seed}: {path} answered {status:?}"
    );
    assert!(
        status.message().len() <= 1024,
        "seed {seed}: {path} answered a {}-byte message",
        status.message().len()
    );
}
