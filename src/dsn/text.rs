//! Connection strings as text: a URL's query parameters, libpq's `key = value`
//! pairs (quotes and escapes), and the text without its TLS parameters.

use super::tls;

/// `text` without its TLS parameters, which the drivers would refuse or read
/// their own way (wraith applies them itself).
pub(super) fn without_tls(text: &str, url: bool, mysql: bool) -> String {
    let keep = |k: &str| !tls::is_key(k, mysql);
    if !url {
        return split_key_values(text)
            .into_iter()
            .filter(|p| keep(p.split('=').next().unwrap_or_default().trim()))
            .collect::<Vec<_>>()
            .join(" ");
    }
    let Some((base, query)) = text.split_once('?') else {
        return text.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| keep(kv.split('=').next().unwrap_or_default()))
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The query parameters of a URL (`?a=1&b=2`), values as written.
pub(super) fn url_options(text: &str) -> Vec<(String, String)> {
    let Some((_, query)) = text.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `key=value` pairs of a libpq connection string, quotes removed.
pub(super) fn key_values(text: &str) -> Vec<(String, String)> {
    split_key_values(text)
        .into_iter()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v)
                .replace("\\'", "'")
                .replace("\\\\", "\\");
            Some((k.trim().to_string(), v))
        })
        .collect()
}

/// A libpq connection string split into `key = value` pieces: a quoted value may
/// hold spaces and `=`, `\` escapes the next character, spaces may surround `=`.
pub(super) fn split_key_values(text: &str) -> Vec<String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return pairs;
        }
        let mut pair = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            pair.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
            pair.push('=');
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let quoted = chars.peek() == Some(&'\'');
            if quoted {
                pair.push('\'');
                chars.next();
            }
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        pair.push('\\');
                        if let Some(n) = chars.next() {
                            pair.push(n);
                        }
                    }
                    '\'' if quoted => {
                        pair.push('\'');
                        break;
                    }
                    c if c.is_whitespace() && !quoted => break,
                    c => pair.push(c),
                }
            }
        }
        pairs.push(pair);
    }
}
