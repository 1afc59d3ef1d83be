//! ListOrganizations: the query in, the page out, and the opaque page token between them, bound
//! to the query it was issued for.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::{PAGE_TOKEN_VERSION, organization};
use crate::{
    domain::{self, Cursor, DomainClaim, ListOrder, ListQuery, OrganizationId},
    error::Invalid,
    proto,
};

fn filter_digest(order: ListOrder, domains: &[String]) -> String {
    let mut sorted: Vec<&str> = domains.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(format!("{order:?}|{}", sorted.join(",")));
    let digest = hasher.finalize();
    crate::domain::hex(&digest[..6])
}

fn page_token(cursor: &Cursor, order: ListOrder, domains: &[String]) -> String {
    let (direction, id) = match cursor {
        Cursor::Before(id) => ("b", id),
        Cursor::After(id) => ("a", id),
    };
    let raw = format!(
        "{PAGE_TOKEN_VERSION}|{direction}|{id}|{}",
        filter_digest(order, domains)
    );
    URL_SAFE_NO_PAD.encode(raw)
}

fn parse_page_token(token: &str, order: ListOrder, domains: &[String]) -> Result<Cursor, String> {
    let bad = || "is not a page token from this query".to_owned();
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.split('|').collect();
    let [PAGE_TOKEN_VERSION, direction, id, digest] = parts.as_slice() else {
        return Err(bad());
    };
    if *digest != filter_digest(order, domains) {
        return Err("belongs to a query with other domains or order".into());
    }
    let id = OrganizationId::parse(id).map_err(|_| bad())?;
    match *direction {
        "a" => Ok(Cursor::After(id)),
        "b" => Ok(Cursor::Before(id)),
        _ => Err(bad()),
    }
}

pub(crate) fn list_query(req: proto::ListOrganizationsRequest) -> Result<ListQuery, Invalid> {
    let mut invalid = Invalid::default();
    let limit = match req.page_size {
        0 => 10,
        n @ 1..=100 => n as u8,
        _ => {
            invalid.add("page_size", "must be between 1 and 100 (0 means 10)");
            10
        }
    };
    let order = match proto::ListOrder::try_from(req.order) {
        Ok(proto::ListOrder::Ascending) => ListOrder::Ascending,
        Ok(proto::ListOrder::Unspecified | proto::ListOrder::Descending) => ListOrder::Descending,
        Err(_) => {
            invalid.add("order", format!("{} is not a known order", req.order));
            ListOrder::Descending
        }
    };
    let mut domains = Vec::with_capacity(req.domains.len().min(domain::DOMAIN_FILTERS_MAX));
    if req.domains.len() > domain::DOMAIN_FILTERS_MAX {
        invalid.add(
            "domains",
            format!("must hold at most {} domains", domain::DOMAIN_FILTERS_MAX),
        );
    }
    for (i, d) in req
        .domains
        .iter()
        .enumerate()
        .take(domain::DOMAIN_FILTERS_MAX)
    {
        if let Some(claim) = invalid.check(&format!("domains[{i}]"), DomainClaim::parse(d, false)) {
            domains.push(claim.domain);
        }
    }
    let cursor = if req.page_token.is_empty() {
        None
    } else {
        invalid.check(
            "page_token",
            parse_page_token(&req.page_token, order, &domains),
        )
    };
    invalid.into_result()?;
    Ok(ListQuery {
        limit,
        cursor,
        domains,
        order,
    })
}

pub(crate) fn list_response(
    page: domain::OrganizationPage,
    query: &ListQuery,
) -> proto::ListOrganizationsResponse {
    let token = |cursor: Option<Cursor>| {
        cursor
            .map(|c| page_token(&c, query.order, &query.domains))
            .unwrap_or_default()
    };
    proto::ListOrganizationsResponse {
        next_page_token: token(page.after.map(Cursor::After)),
        previous_page_token: token(page.before.map(Cursor::Before)),
        organizations: page.organizations.into_iter().map(organization).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_query() {
        let id = OrganizationId::parse("org_01EHWNCE74X7JSDV0X3SZ3KJNY").expect("valid id");
        let domains = vec!["a.example".to_owned()];
        let token = page_token(&Cursor::After(id.clone()), ListOrder::Ascending, &domains);
        assert_eq!(
            parse_page_token(&token, ListOrder::Ascending, &domains),
            Ok(Cursor::After(id))
        );
        assert!(parse_page_token(&token, ListOrder::Descending, &domains).is_err());
        assert!(parse_page_token(&token, ListOrder::Ascending, &[]).is_err());
        assert!(parse_page_token("not-a-token", ListOrder::Ascending, &domains).is_err());
    }
}
