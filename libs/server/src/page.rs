//! AIP-158 pagination: `page_size` (default 20, max 100) and an opaque token.
//!
//! Lists are ordered by id descending (ids are time-ordered, so newest first);
//! the token is the hex of `v1:<last id returned>`.

use crate::status::FieldViolation;

/// Page size when the request leaves it 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page size.
pub const MAX_PAGE_SIZE: u32 = 100;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows to return.
    pub size: u32,
    /// Return ids strictly below this one.
    pub before_id: Option<String>,
}

impl PageRequest {
    /// Validates `page_size` and `page_token`.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, FieldViolation> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(FieldViolation::new("page_size", "must not be negative")),
            n => u32::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        let before_id = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(page_token).ok_or_else(|| {
                FieldViolation::new("page_token", "is not a token returned by this list")
            })?)
        };
        Ok(Self { size, before_id })
    }

    /// Rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// Cuts the fetched rows to the page and makes the next token.
    pub fn finish<T>(&self, mut rows: Vec<T>, id_of: impl Fn(&T) -> &str) -> (Vec<T>, String) {
        let size = self.size as usize;
        if rows.len() <= size {
            return (rows, String::new());
        }
        rows.truncate(size);
        let token = rows
            .last()
            .map(|row| encode_token(id_of(row)))
            .unwrap_or_default();
        (rows, token)
    }
}

/// The token of a page that continues below `id` (for lists that stop
/// early for a reason of their own, such as a bounded search).
pub fn token_before(id: &str) -> String {
    encode_token(id)
}

fn encode_token(id: &str) -> String {
    hex::encode(format!("v1:{id}"))
}

fn decode_token(token: &str) -> Option<String> {
    let bytes = hex::decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix("v1:")?;
    (!id.is_empty() && id.len() <= 100).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_tokens() {
        assert_eq!(PageRequest::parse(0, "").unwrap().size, 20);
        assert_eq!(PageRequest::parse(1000, "").unwrap().size, 100);
        assert_eq!(PageRequest::parse(-1, "").unwrap_err().field, "page_size");
        assert_eq!(
            PageRequest::parse(10, "zz").unwrap_err().field,
            "page_token"
        );
        let page = PageRequest::parse(2, "").unwrap();
        let (rows, token) = page.finish(vec!["c", "b", "a"], |s| s);
        assert_eq!(rows, vec!["c", "b"]);
        assert_eq!(
            PageRequest::parse(2, &token).unwrap().before_id.as_deref(),
            Some("b")
        );
    }
}
