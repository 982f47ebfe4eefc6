//! Reading a Prometheus text exposition (a service's `/metrics`): the one
//! parser the benchmark and the tests share.

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the sample has every `(key, value)` of `labels`.
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

/// Every sample of an exposition, in order; comments, blank lines and
/// lines that are not a sample are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(sample).collect()
}

/// The sum of the samples called `name` that have every one of `labels`
/// (`None` when there is none).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parse(text)
        .into_iter()
        .filter(|s| s.name == name && s.has(labels))
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="1",b="x\"y"}` and what follows the closing brace.
fn label_set(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &after[1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP jetsaga_messages_handled_total Messages handled.
# TYPE jetsaga_messages_handled_total counter
jetsaga_messages_handled_total{consumer="order-place",outcome="ok"} 2
jetsaga_messages_handled_total{consumer="order-place",outcome="dead_letter"} 1
jetsaga_messages_handled_total{consumer="order-saga",outcome="ok"} 3
jetsaga_sagas_in_flight 0
odd{reason="a \"quoted\", comma",le="+Inf"} 7 1712345678
"#;

    #[test]
    fn samples_keep_their_names_labels_and_values() {
        let samples = parse(TEXT);
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].name, "jetsaga_messages_handled_total");
        assert_eq!(samples[0].label("consumer"), Some("order-place"));
        assert_eq!(samples[0].value, 2.0);
        assert_eq!(samples[3].name, "jetsaga_sagas_in_flight");
        assert!(samples[3].labels.is_empty());
    }

    #[test]
    fn quoted_label_values_may_hold_commas_quotes_and_braces() {
        let odd = &parse(TEXT)[4];
        assert_eq!(odd.label("reason"), Some("a \"quoted\", comma"));
        assert_eq!(odd.label("le"), Some("+Inf"));
        assert_eq!(odd.value, 7.0);
    }

    #[test]
    fn a_value_sums_the_samples_that_match_every_label() {
        let handled = "jetsaga_messages_handled_total";
        assert_eq!(value(TEXT, handled, &[("outcome", "ok")]), Some(5.0));
        assert_eq!(
            value(
                TEXT,
                handled,
                &[("consumer", "order-place"), ("outcome", "ok")]
            ),
            Some(2.0)
        );
        assert_eq!(value(TEXT, handled, &[("consumer", "nobody")]), None);
        assert_eq!(value(TEXT, "jetsaga_sagas_in_flight", &[]), Some(0.0));
    }

    #[test]
    fn lines_that_are_not_samples_are_skipped() {
        assert!(parse("# only a comment\n\nbroken{a=\"1\" 2\nno_value\n").is_empty());
    }
}
