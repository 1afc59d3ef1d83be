//! Arbitrary request messages, built from the API's own descriptors: every field of every
//! request (fields added later included) gets values of its type, often ones that mean something
//! to the gateway (ids, URLs, domains, update-mask paths) and sometimes anything at all, and
//! repeated fields sometimes hold more items than any limit allows. Each message goes through
//! [`crate::fuzzing::request`], the fuzz target's check.

use proptest::prelude::*;
use prost_types::{
    DescriptorProto, FieldDescriptorProto,
    field_descriptor_proto::{Label, Type},
};

use super::{cases, one_of};
use crate::fuzzing::{REQUESTS, message_descriptor, request};

/// Encoded protobuf: a varint.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Encoded protobuf: one field record of wire type 0 (varint) or 2 (length-delimited).
fn record(number: i32, wire_type: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    varint((number as u64) << 3 | wire_type, &mut out);
    if wire_type == 2 {
        varint(payload.len() as u64, &mut out);
    }
    out.extend_from_slice(payload);
    out
}

/// Strings a field of this name is likely to be given, good and bad.
fn meaningful(field: &str) -> &'static [&'static str] {
    match field {
        "paths" => &[
            "name",
            "domains",
            "metadata",
            "external_id",
            "stripe_customer_id",
            "id",
            "organization.name",
            "",
        ],
        "id" | "organization_id" => &[
            "org_01EHWNCE74X7JSDV0X3SZ3KJNY",
            "org_01ehwnce74x7jsdv0x3sz3kjny",
            "org_",
            "01EHWNCE74X7JSDV0X3SZ3KJNY",
        ],
        "external_id" | "external_user_id" | "key" => &["acme", ".", "..", "a b", "ümlaut"],
        "domain" | "domains" => &["acme.com", "ACME.com", "-a.com", "com", "a..b", "a_b.com"],
        "email" | "it_contact_emails" => &["it@acme.com", "it@", "@acme.com", "a@b", "a@b..c"],
        "return_url" | "success_url" => &[
            "https://app.example.com/settings",
            "http://localhost:3000/",
            "https://user@app.example.com/",
            "https://app.example.com/#x",
            "https://127.0.0.1/",
        ],
        "rpc" => &[
            "GenerateLink",
            "adminportal.v1.PortalService/GenerateLink",
            "Nope",
        ],
        "resume_cursor" => &["t1.1700000000000", "a1.event_01HX", "a1.", "t1.x"],
        "name" | "stripe_customer_id" | "value" | "request_id" | "acting_user" | "identity" => {
            &["Acme", "  Acme  ", "", "a\u{202e}b", "a\nb", "cus_123"]
        }
        _ => &["", "x"],
    }
}

fn text(field: &str) -> BoxedStrategy<String> {
    prop_oneof![
        4 => one_of(meaningful(field)),
        2 => any::<String>(),
        1 => "[ -~]{200,300}",
    ]
    .boxed()
}

/// Zero or one record of a singular field, or some records of a repeated one.
fn field(descriptor: &'static FieldDescriptorProto, depth: u32) -> BoxedStrategy<Vec<u8>> {
    let number = descriptor.number();
    let one: BoxedStrategy<Vec<u8>> = match descriptor.r#type() {
        Type::String => text(descriptor.name())
            .prop_map(move |s| record(number, 2, s.as_bytes()))
            .boxed(),
        Type::Int32 | Type::Enum | Type::Int64 | Type::Uint32 | Type::Uint64 => {
            prop_oneof![4 => -1i64..12, 1 => any::<i32>().prop_map(i64::from)]
                .prop_map(move |v| {
                    let mut payload = Vec::new();
                    varint(v as u64, &mut payload);
                    record(number, 0, &payload)
                })
                .boxed()
        }
        Type::Bool => any::<bool>()
            .prop_map(move |b| record(number, 0, &[u8::from(b)]))
            .boxed(),
        Type::Message if depth > 0 => match message_descriptor(descriptor.type_name()) {
            Some(nested) => message(nested, depth - 1)
                .prop_map(move |m| record(number, 2, &m))
                .boxed(),
            None => Just(Vec::new()).boxed(),
        },
        _ => Just(Vec::new()).boxed(),
    };
    if descriptor.label() == Label::Repeated {
        prop_oneof![
            6 => prop::collection::vec(one.clone(), 0..4),
            1 => prop::collection::vec(one, 0..30),
        ]
        .prop_map(|records| records.concat())
        .boxed()
    } else {
        prop::option::of(one)
            .prop_map(Option::unwrap_or_default)
            .boxed()
    }
}

/// An encoded message with any of its fields set.
fn message(descriptor: &'static DescriptorProto, depth: u32) -> BoxedStrategy<Vec<u8>> {
    let fields: Vec<BoxedStrategy<Vec<u8>>> =
        descriptor.field.iter().map(|f| field(f, depth)).collect();
    fields.prop_map(|records| records.concat()).boxed()
}

/// The first byte [`request`] reads, then an encoded request.
fn any_request() -> impl Strategy<Value = Vec<u8>> {
    let all: Vec<BoxedStrategy<Vec<u8>>> = REQUESTS
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let descriptor = message_descriptor(name).expect("a request message");
            (any::<bool>(), message(descriptor, 3))
                .prop_map(move |(loopback, body)| {
                    let selector = index as u8 | if loopback { 0x80 } else { 0 };
                    [vec![selector], body].concat()
                })
                .boxed()
        })
        .collect();
    proptest::strategy::Union::new(all)
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_request_converts_or_is_refused_field_by_field(data in any_request()) {
        prop_assert!(request(&data), "the generator wrote a message that does not decode");
    }
}

#[test]
fn every_request_message_is_in_the_descriptors() {
    for name in REQUESTS {
        assert!(message_descriptor(name).is_some(), "{name}");
    }
    assert!(message_descriptor("google.protobuf.FieldMask").is_some());
}
