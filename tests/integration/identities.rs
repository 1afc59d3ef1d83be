//! Identities carry their proof in their name: the same name proven another way is another
//! caller, and a policy that names an identity without its proof is refused.

use portal_gateway::proto;
use serde_json::json;
use tonic::Code;

use crate::{
    helpers::{
        ADMIN_TOKEN, API_KEY, Credentials, TestEmulator, bad_fields, reason, spawn_app_with,
        temp_path,
    },
    security::{claims, jwt_config, jwt_key, sign},
};

#[tokio::test]
async fn a_name_proven_another_way_is_another_caller() {
    let key = jwt_key("k1");
    let jwks_path = temp_path("jwks.json");
    std::fs::write(&jwks_path, json!({ "keys": [key.jwk] }).to_string()).expect("jwks");
    let emulator = TestEmulator::start().await;
    // The base policy's `token:admin` may do everything; mesh headers from loopback are believed.
    let config = jwt_config(
        &emulator.url,
        &format!("jwks_file = {:?}", jwks_path.display().to_string()),
    )
    .replacen(
        "[auth.jwt]",
        "[auth.mesh]\ntrusted_proxies = [\"127.0.0.1/32\", \"::1\"]\n[auth.jwt]",
        1,
    );
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let list = |credentials: Credentials| {
        let mut portal = app.clients(credentials).portal;
        async move { portal.list_intents(proto::ListIntentsRequest {}).await }
    };
    list(Credentials {
        token: Some(ADMIN_TOKEN.to_owned()),
        ..Default::default()
    })
    .await
    .expect("the static token admin");

    // A valid JWT whose subject is `admin`, and a Linkerd identity `admin`: neither is
    // `token:admin`, and no rule names them.
    let jwt_admin = sign(&key, &claims("admin"));
    for (what, credentials) in [
        (
            "a JWT for admin",
            Credentials {
                token: Some(jwt_admin.clone()),
                ..Default::default()
            },
        ),
        (
            "l5d-client-id admin",
            Credentials {
                headers: vec![("l5d-client-id", "admin".to_owned())],
                ..Default::default()
            },
        ),
    ] {
        let status = list(credentials).await.expect_err(what);
        assert_eq!(
            (status.code(), reason(&status)),
            (Code::PermissionDenied, "UNKNOWN_CALLER".to_owned()),
            "{what}: {status:?}"
        );
    }

    // CheckAccess names identities the same way, and refuses a name without its proof.
    let check = |identity: &str| proto::CheckAccessRequest {
        rpc: "ListIntents".into(),
        identity: identity.into(),
        ..Default::default()
    };
    let mut admin = app.as_token(ADMIN_TOKEN).access;
    for (identity, allowed) in [
        ("token:admin", true),
        ("jwt:admin", false),
        ("linkerd:admin", false),
    ] {
        let answer = admin
            .check_access(check(identity))
            .await
            .expect(identity)
            .into_inner();
        assert_eq!(
            (answer.allowed, answer.identity.as_str()),
            (allowed, identity)
        );
    }
    let status = admin.check_access(check("admin")).await.expect_err("bare");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["identity"]);
    assert!(
        status.message().contains("token:admin"),
        "{}",
        status.message()
    );
}

#[test]
fn every_policy_the_readme_shows_is_one_the_gateway_accepts() {
    use portal_gateway::auth::policy_file::{PolicySource, read_policy};
    let readme =
        std::fs::read_to_string(crate::helpers::repo_root().join("README.md")).expect("README");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .filter(|block| block.contains("[[callers]]"))
        .collect();
    assert!(blocks.len() >= 2, "the README shows policies");
    for block in blocks {
        let path = temp_path("readme-policy.toml");
        std::fs::write(&path, block).expect("write");
        let read = read_policy(&PolicySource {
            path: path.clone(),
            dedicated: true,
            allow_http_loopback: false,
        });
        let _ = std::fs::remove_file(&path);
        let (policy, _) = read.unwrap_or_else(|e| panic!("{e}\nin\n{block}"));
        assert!(!policy.rules.is_empty());
    }
}
