//! Tests of request conversion that count the work a request causes: what the mask or a list
//! repeats must not repeat a check.

use super::*;

fn update_request(
    organization: proto::Organization,
    paths: Vec<String>,
) -> proto::UpdateOrganizationRequest {
    proto::UpdateOrganizationRequest {
        organization: Some(proto::Organization {
            id: "org_01EHWNCE74X7JSDV0X3SZ3KJNY".into(),
            ..organization
        }),
        update_mask: Some(prost_types::FieldMask { paths }),
    }
}

fn violations_on(invalid: &Invalid, field: &str) -> usize {
    invalid
        .violations
        .iter()
        .filter(|v| v.field == field)
        .count()
}

#[test]
fn a_field_the_mask_repeats_is_checked_once() {
    // Each check of an invalid field records one violation, so the count of violations counts
    // the checks. Each repetition of "metadata" once copied and checked all the metadata again:
    // 4 ms per repetition with a megabyte of it, so a 4 MiB request (2 MiB of metadata, 200,000
    // repetitions) held a core for about half an hour.
    let too_long = "a".repeat(domain::NAME_MAX + 1);
    let metadata = (0..=domain::METADATA_MAX_PAIRS)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let mut paths = vec!["name".to_owned(); 1_000];
    paths.extend(vec!["metadata".to_owned(); 1_000]);
    paths.extend(vec!["stripe_customer_id".to_owned(); 1_000]);
    paths.extend(vec!["unknown".to_owned(); 1_000]);
    let request = update_request(
        proto::Organization {
            name: too_long.clone(),
            metadata,
            stripe_customer_id: too_long,
            ..Default::default()
        },
        paths,
    );
    let invalid = update(request).expect_err("invalid fields");
    assert_eq!(
        violations_on(&invalid, "organization.name"),
        1,
        "{invalid:?}"
    );
    assert_eq!(
        violations_on(&invalid, "organization.metadata"),
        1,
        "{invalid:?}"
    );
    assert_eq!(
        violations_on(&invalid, "organization.stripe_customer_id"),
        1,
        "{invalid:?}"
    );
    assert_eq!(
        violations_on(&invalid, "update_mask.paths"),
        1,
        "{invalid:?}"
    );
    assert_eq!(invalid.violations.len(), 4, "{invalid:?}");
}

#[test]
fn a_repeated_path_still_applies_its_change() {
    let request = update_request(
        proto::Organization {
            name: "Acme".into(),
            ..Default::default()
        },
        vec!["name".into(), "name".into()],
    );
    let (_, changes) = update(request).expect("valid");
    assert_eq!(changes.name.as_deref(), Some("Acme"));
}

#[test]
fn oversized_metadata_is_refused_on_its_count() {
    let metadata = (0..10_000)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let invalid = new_organization(proto::CreateOrganizationRequest {
        name: "Acme".into(),
        metadata,
        ..Default::default()
    })
    .expect_err("too many pairs");
    assert_eq!(invalid.violations.len(), 1, "{invalid:?}");
    assert_eq!(invalid.violations[0].field, "metadata");
    assert!(
        invalid.violations[0]
            .description
            .contains("at most 10 keys"),
        "{invalid:?}"
    );
}
