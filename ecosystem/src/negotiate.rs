//! HTTP content negotiation: the items of an `Accept` or `Accept-Encoding` header with their
//! q-values, for adapters choosing a representation and for the server choosing gzip.

/// Each item of a comma-separated header value as (lower-cased value, q-value; 1 when absent).
pub fn q_values(header: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    header.split(',').filter_map(|item| {
        let mut parts = item.split(';');
        let value = parts.next()?.trim().to_ascii_lowercase();
        if value.is_empty() {
            return None;
        }
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        Some((value, q))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_q_values() {
        let items: Vec<(String, f32)> = q_values(
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*, ,GZIP;q=0",
        )
        .collect();
        assert_eq!(
            items,
            [
                ("application/vnd.npm.install-v1+json".to_owned(), 1.0),
                ("application/json".to_owned(), 0.8),
                ("*/*".to_owned(), 1.0),
                ("gzip".to_owned(), 0.0),
            ]
        );
    }
}
