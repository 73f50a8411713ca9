//! How the CLI prints: records by a kcat-style format (`-f`) or as JSON
//! lines, and topics as aligned tables.

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

/// One piece of a record format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Text(String),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    KeyLen,
    Value,
    ValueLen,
    Headers,
}

/// How `silt consume` prints each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// One JSON object per line, as the API answers.
    Json,
    Tokens(Vec<Token>),
}

impl RecordFormat {
    /// kcat's format tokens: `%t` topic, `%p` partition, `%o` offset, `%T`
    /// timestamp (ms), `%k` key, `%K` key length, `%s` value, `%S` value
    /// length, `%h` headers (`k=v,…`), `%%`; escapes `\n`, `\t`, `\\`.
    pub fn parse(format: &str) -> anyhow::Result<Self> {
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            let token = match (c, chars.clone().next()) {
                ('%', Some(n)) => match n {
                    't' => Some(Token::Topic),
                    'p' => Some(Token::Partition),
                    'o' => Some(Token::Offset),
                    'T' => Some(Token::Timestamp),
                    'k' => Some(Token::Key),
                    'K' => Some(Token::KeyLen),
                    's' => Some(Token::Value),
                    'S' => Some(Token::ValueLen),
                    'h' => Some(Token::Headers),
                    '%' => {
                        text.push('%');
                        None
                    }
                    other => bail!("unknown format token %{other}"),
                },
                ('\\', Some(n)) => {
                    text.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        '\\' => '\\',
                        other => bail!("unknown escape \\{other}"),
                    });
                    None
                }
                ('%' | '\\', None) => bail!("format ends in {c:?}"),
                (c, _) => {
                    text.push(c);
                    continue;
                }
            };
            chars.next();
            if let Some(t) = token {
                if !text.is_empty() {
                    tokens.push(Token::Text(std::mem::take(&mut text)));
                }
                tokens.push(t);
            }
        }
        if !text.is_empty() {
            tokens.push(Token::Text(text));
        }
        Ok(Self::Tokens(tokens))
    }

    /// Prints one record (as the API answers it) of `topic`.
    pub fn print(&self, out: &mut impl Write, topic: &str, r: &Value) -> std::io::Result<()> {
        let tokens = match self {
            RecordFormat::Json => {
                let mut r = r.clone();
                r["topic"] = Value::from(topic);
                return writeln!(out, "{r}");
            }
            RecordFormat::Tokens(t) => t,
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        for t in tokens {
            match t {
                Token::Text(s) => out.write_all(s.as_bytes())?,
                Token::Topic => out.write_all(topic.as_bytes())?,
                Token::Partition => write!(out, "{}", r["partition"])?,
                Token::Offset => write!(out, "{}", r["offset"])?,
                Token::Timestamp => write!(out, "{}", r["timestamp"])?,
                Token::Key => out.write_all(text(&r["key"]).as_bytes())?,
                Token::KeyLen => {
                    write!(out, "{}", r["key"].as_str().map_or(-1, |k| k.len() as i64))?
                }
                Token::Value => out.write_all(text(&r["value"]).as_bytes())?,
                Token::ValueLen => write!(
                    out,
                    "{}",
                    r["value"].as_str().map_or(-1, |v| v.len() as i64)
                )?,
                Token::Headers => {
                    let headers: Vec<String> = r["headers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|h| format!("{}={}", text(&h["key"]), text(&h["value"])))
                        .collect();
                    out.write_all(headers.join(",").as_bytes())?;
                }
            }
        }
        Ok(())
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
#[allow(clippy::print_stdout)]
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(header.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kcat_formats_print_what_they_name() {
        let r = json!({"partition": 2, "offset": 7, "timestamp": 99, "key": "k1", "value": "hello",
                       "headers": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]});
        let f = RecordFormat::parse("%t/%p@%o %T %k(%K)=%s(%S) [%h] 100%%\\n").unwrap();
        let mut out = Vec::new();
        f.print(&mut out, "orders", &r).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "orders/2@7 99 k1(2)=hello(5) [a=1,b=2] 100%\n"
        );
        for bad in ["%x", "%", "\\q", "ends\\"] {
            assert!(RecordFormat::parse(bad).is_err(), "{bad}");
        }
        let mut json = Vec::new();
        RecordFormat::Json.print(&mut json, "orders", &r).unwrap();
        let back: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            (back["topic"].as_str(), back["offset"].as_u64()),
            (Some("orders"), Some(7))
        );
    }
}
