//! A raw HTTP/1.1 client for the console's tests and benchmark: one request
//! per connection, so a test sees exactly the status, headers and body the
//! console sent (a browser hides status codes and follows redirects).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header lines, as sent.
    pub headers: String,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The `name=value` of each `Set-Cookie` (without its attributes).
    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, value)| value.trim().split(';').next().map(str::to_owned))
            .collect()
    }
}

/// One request to `addr` (`host:port`); `form` is sent urlencoded with POST.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> std::io::Result<Answer> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(form);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    })
}

/// The value of the hidden input `name` in a page, if there is one.
pub fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    page[start..].split('"').next().map(str::to_owned)
}

/// Signs in to the console at `addr` with `api_key`; the session cookie
/// (`console_session=…`), or None when the console refused.
pub async fn sign_in(addr: &str, api_key: &str) -> std::io::Result<Option<String>> {
    let form = request(addr, "GET", "/sign-in", "", "").await?;
    let Some(csrf) = hidden(&form.body, "csrf") else {
        return Ok(None);
    };
    let pre = form.cookies().into_iter().next().unwrap_or_default();
    let body = format!("csrf={csrf}&api_key={api_key}");
    let answer = request(addr, "POST", "/sign-in", &pre, &body).await?;
    Ok(answer
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("console_session=") && c.len() > "console_session=".len()))
}
