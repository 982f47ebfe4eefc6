//! Speaking HTTP to a saga-console as a browser would, without one: its
//! pages, its forms (with the session cookie it sets), and its live stream.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

/// The operator token the tests' consoles are given.
pub const TOKEN: &str = "test-operator-token-0123456789";

/// One visitor of a console: its cookie, if it signed in.
#[derive(Debug, Clone)]
pub struct Visitor {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

/// An answer: its status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// Where a redirect goes.
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value of the hidden input `name` of the page's form.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }

    /// The order ids the page links to, in order, once each.
    pub fn order_links(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for part in self.body.split("href=\"/sagas/").skip(1) {
            let id: String = part.chars().take_while(|c| *c != '"').collect();
            if !id.contains('/') && !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

impl Visitor {
    pub fn new(console: SocketAddr) -> Self {
        // reqwest's TLS is built without a crypto provider (the suite's is
        // ring's, as in runtime::telemetry); plain HTTP needs one too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(15))
                .build()
                .expect("an HTTP client"),
            base: format!("http://{console}"),
            cookie: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie),
            None => request,
        }
    }

    async fn answer(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the console answers");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("a body"),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(self.with_cookie(self.http.get(self.url(path)))).await
    }

    /// Posts a form, with extra headers (`Origin`, `Sec-Fetch-Site`).
    pub async fn post(&self, path: &str, form: &[(&str, &str)], extra: &[(&str, &str)]) -> Answer {
        let mut request = self.with_cookie(self.http.post(self.url(path))).form(form);
        for (name, value) in extra {
            request = request.header(*name, HeaderValue::from_str(value).expect("a header"));
        }
        Self::answer(request).await
    }

    /// Signs in with `token`; the answer, and the visitor keeps the
    /// session cookie it was given.
    pub async fn sign_in(&mut self, token: &str, next: &str) -> Answer {
        let answer = self
            .post("/sign-in", &[("token", token), ("next", next)], &[])
            .await;
        if let Some(cookie) = answer.headers.get(SET_COOKIE) {
            let pair = cookie.to_str().unwrap().split(';').next().unwrap();
            self.cookie = Some(pair.to_owned());
        }
        answer
    }

    /// Reads the live stream until a snapshot satisfies `want`, within
    /// `within`; the snapshot.
    pub async fn live_until(
        &self,
        within: Duration,
        mut want: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let read = async {
            let mut response = self
                .http
                .get(self.url("/live"))
                .timeout(within)
                .send()
                .await
                .expect("the live stream opens");
            assert_eq!(
                response.headers().get(CONTENT_TYPE).unwrap(),
                "text/event-stream"
            );
            let mut buffer = String::new();
            loop {
                let chunk = response
                    .chunk()
                    .await
                    .expect("the stream goes on")
                    .expect("the stream is not over");
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let snapshot: serde_json::Value =
                        serde_json::from_str(data.trim()).expect("a snapshot is JSON");
                    if want(&snapshot) {
                        return snapshot;
                    }
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("no snapshot as wanted within {within:?}"))
    }
}
