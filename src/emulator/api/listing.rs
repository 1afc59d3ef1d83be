//! WorkOS's cursor pagination, shared by every list route: `limit` 1..100 (default 10), `order`
//! `asc`, `desc` or `normal` (default `desc`), and `before` / `after` object ids. Items are
//! ordered by id, which for ULIDs is creation order.

use serde_json::{Value, json};

use crate::emulator::wire::{ApiError, FieldError};

/// The paging part of a list query.
#[derive(Debug, Clone)]
pub(crate) struct Paging {
    limit: usize,
    ascending: bool,
    /// `normal`: descending, with the meanings of `before` and `after` swapped.
    normal: bool,
    before: Option<String>,
    after: Option<String>,
}

/// Parses a list route's query string. `filter` is offered every key that is not a paging key
/// and says whether it knew it; it may record its own errors. Any other key is a 422, as WorkOS
/// rejects properties it does not know.
pub(crate) fn parse_query(
    query: Option<&str>,
    mut filter: impl FnMut(&str, String, &mut Vec<FieldError>) -> bool,
) -> Result<Paging, ApiError> {
    let mut errors = Vec::new();
    let mut paging = Paging {
        limit: 10,
        ascending: false,
        normal: false,
        before: None,
        after: None,
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => match parse_limit(&value) {
                Some(n) => paging.limit = n,
                None => errors.push(limit_error()),
            },
            "order" => match value.as_ref() {
                "asc" | "desc" | "normal" => {
                    paging.ascending = value == "asc";
                    paging.normal = value == "normal";
                }
                _ => errors.push(order_error()),
            },
            "before" if !value.is_empty() => paging.before = Some(value.into_owned()),
            "after" if !value.is_empty() => paging.after = Some(value.into_owned()),
            "before" | "after" => {}
            other => {
                let other = other.to_owned();
                if !filter(&other, value.into_owned(), &mut errors) {
                    errors.push(unknown_property(&other));
                }
            }
        }
    }
    if paging.before.is_some() && paging.after.is_some() {
        errors.push(FieldError {
            field: "before".into(),
            code: "before and after cannot both be set".into(),
        });
    }
    if errors.is_empty() {
        Ok(paging)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// `limit` as WorkOS bounds it: 1 to 100.
pub(crate) fn parse_limit(value: &str) -> Option<usize> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=100).contains(n))
}

pub(crate) fn limit_error() -> FieldError {
    FieldError {
        field: "limit".into(),
        code: "limit must be a number between 1 and 100".into(),
    }
}

pub(crate) fn order_error() -> FieldError {
    FieldError {
        field: "order".into(),
        code: "order must be one of the following values: asc, desc, normal".into(),
    }
}

pub(crate) fn unknown_property(key: &str) -> FieldError {
    FieldError {
        field: "query".into(),
        code: format!("property {key} should not exist"),
    }
}

impl Paging {
    /// One page of `items` (in any order) and WorkOS's list body around it.
    pub(crate) fn page<T>(
        &self,
        mut items: Vec<T>,
        id: impl Fn(&T) -> &str,
        render: impl Fn(&T) -> Value,
    ) -> Value {
        items.sort_by(|a, b| id(a).cmp(id(b)));
        if !self.ascending {
            items.reverse();
        }
        let (mut before, mut after) = (self.before.as_deref(), self.after.as_deref());
        if self.normal {
            std::mem::swap(&mut before, &mut after);
        }
        // Whether an item comes strictly after the cursor in the chosen order.
        let follows = |item: &T, cursor: &str| {
            if self.ascending {
                id(item) > cursor
            } else {
                id(item) < cursor
            }
        };
        let (start, end) = if let Some(cursor) = after {
            let start = items
                .iter()
                .position(|i| follows(i, cursor))
                .unwrap_or(items.len());
            (start, (start + self.limit).min(items.len()))
        } else if let Some(cursor) = before {
            // Items before the cursor form a prefix of the ordered list.
            let end = items
                .iter()
                .position(|i| id(i) == cursor || follows(i, cursor))
                .unwrap_or(items.len());
            (end.saturating_sub(self.limit), end)
        } else {
            (0, self.limit.min(items.len()))
        };
        let page = &items[start..end];
        let mut meta_before = (start > 0)
            .then(|| page.first().map(|i| id(i).to_owned()))
            .flatten();
        let mut meta_after = (end < items.len())
            .then(|| page.last().map(|i| id(i).to_owned()))
            .flatten();
        if self.normal {
            std::mem::swap(&mut meta_before, &mut meta_after);
        }
        json!({
            "object": "list",
            "data": page.iter().map(render).collect::<Vec<_>>(),
            "list_metadata": { "before": meta_before, "after": meta_after },
        })
    }
}
