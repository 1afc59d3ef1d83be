//! The policy's decisions.
use super::*;

fn rule() -> Rule {
    Rule {
        name: "billing".into(),
        identities: ["billing".to_owned()].into(),
        rpcs: Some([Rpc::GenerateLink, Rpc::GetOrganization].into()),
        intents: Some([Intent::Sso].into()),
        organizations: OrganizationScope::Listed {
            ids: ["org_A".to_owned()].into(),
            external_ids: vec![Pattern::new("acme-*")],
        },
        return_origins: vec![
            OriginRule::parse("https://billing.example.com/settings", false).expect("origin"),
        ],
        require_acting_user: true,
        requests_per_minute: None,
        max_watchers: crate::auth::policy::DEFAULT_MAX_WATCHERS,
        invite_email_domains: Default::default(),
    }
}

#[test]
fn patterns_match_globs() {
    assert!(Pattern::new("acme-*").matches("acme-eu"));
    assert!(!Pattern::new("acme-*").matches("xacme-eu"));
    assert!(Pattern::new("*-prod").matches("a-prod"));
    assert!(Pattern::new("t-*-prod").matches("t-1-prod"));
    assert!(!Pattern::new("t-*-prod").matches("t-prod"));
    assert!(Pattern::new("exact").matches("exact") && !Pattern::new("exact").matches("exactly"));
    assert!(Pattern::new("*").matches(""));
}

#[test]
fn each_check_denies_with_its_reason() {
    let policy = Policy {
        rules: vec![rule()],
    };
    let url = RedirectUrl::parse("https://billing.example.com/settings/sso", false).expect("url");
    let evil = RedirectUrl::parse("https://billing.example.com/settingsevil", false).expect("url");
    let org = OrganizationFacts {
        id: Some("org_B"),
        external_id: Some("acme-eu"),
    };
    let ok = AccessRequest {
        rpc: Rpc::GenerateLink,
        organization: Some(org),
        intent: Some(Intent::Sso),
        return_url: Some(&url),
        success_url: None,
        acting_user: Some("admin"),
    };
    assert!(policy.authorize("billing", &ok).allowed());
    let reason = |r: AccessRequest<'_>| policy.authorize("billing", &r).denial.map(Denial::reason);
    assert_eq!(
        policy.authorize("nobody", &ok).denial,
        Some(Denial::UnknownCaller)
    );
    assert_eq!(
        reason(AccessRequest {
            rpc: Rpc::DeleteOrganization,
            ..ok
        }),
        Some("RPC_NOT_ALLOWED")
    );
    assert_eq!(
        reason(AccessRequest {
            acting_user: None,
            ..ok
        }),
        Some("ACTING_USER_REQUIRED")
    );
    assert_eq!(
        reason(AccessRequest {
            intent: Some(Intent::Dsync),
            ..ok
        }),
        Some("INTENT_NOT_ALLOWED")
    );
    assert_eq!(
        reason(AccessRequest {
            success_url: Some(&evil),
            ..ok
        }),
        Some("RETURN_URL_NOT_ALLOWED")
    );
    let other = OrganizationFacts {
        id: Some("org_C"),
        external_id: Some("globex"),
    };
    assert_eq!(
        reason(AccessRequest {
            organization: Some(other),
            ..ok
        }),
        Some("ORGANIZATION_NOT_ALLOWED")
    );
    let by_id = OrganizationFacts {
        id: Some("org_A"),
        external_id: None,
    };
    assert_eq!(
        reason(AccessRequest {
            organization: Some(by_id),
            ..ok
        }),
        None
    );
}
