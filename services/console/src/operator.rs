//! Who may act through the console: a person signed in with
//! `CONSOLE_OPERATOR_TOKEN`, by a form of the console's own.
//!
//! Signing in gives the browser a session cookie (`HttpOnly`,
//! `SameSite=Strict`, 12 hours): a random id and its issue time, signed
//! with a key derived from the token, so that every replica of the console
//! accepts it, and changing the token signs everyone out. The token itself
//! never leaves the sign-in form.
//!
//! Every action is a POST that carries a CSRF token bound to the session
//! (an HMAC of its id), checked in constant time; and a POST whose
//! `Origin` or `Sec-Fetch-Site` says it came from another site is refused
//! before that.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "jetsaga_console_session";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// The keys derived from the operator token.
pub struct Keys {
    key: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: String,
}

impl Keys {
    pub fn new(token: &str) -> Self {
        Self {
            key: derive(token.as_bytes()),
        }
    }

    /// Whether `offered` is the operator token. Both are put through the
    /// same derivation and the results compared in constant time, so
    /// neither the token's length nor its prefix leaks.
    pub fn is_token(&self, offered: &str) -> bool {
        let mut mac = HmacSha256::new_from_slice(offered.as_bytes()).expect("any key length");
        mac.update(LABEL);
        mac.verify_slice(&self.key).is_ok()
    }

    /// A new session's cookie value, issued at `now` (Unix seconds).
    pub fn new_session(&self, now: i64) -> String {
        let id = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
        let signed = format!("{id}.{now}");
        let signature = self.sign(&format!("session:{signed}"));
        format!("{signed}.{signature}")
    }

    /// The session a cookie value stands for, if it is one of ours, signed
    /// and not expired at `now`.
    pub fn session(&self, cookie: &str, now: i64) -> Option<Session> {
        let (signed, signature) = cookie.rsplit_once('.')?;
        let (id, issued) = signed.split_once('.')?;
        self.verify(&format!("session:{signed}"), signature)
            .then_some(())?;
        let issued: i64 = issued.parse().ok()?;
        let age = now.checked_sub(issued)?;
        (0..SESSION_SECONDS)
            .contains(&age)
            .then(|| Session { id: id.to_owned() })
    }

    /// The CSRF token of a session's forms.
    pub fn csrf(&self, session: &Session) -> String {
        self.sign(&format!("csrf:{}", session.id))
    }

    pub fn is_csrf(&self, session: &Session, offered: &str) -> bool {
        self.verify(&format!("csrf:{}", session.id), offered)
    }

    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(message.as_bytes());
        mac
    }

    fn sign(&self, message: &str) -> String {
        data_encoding::HEXLOWER.encode(&self.mac(message).finalize().into_bytes())
    }

    fn verify(&self, message: &str, signature: &str) -> bool {
        data_encoding::HEXLOWER
            .decode(signature.as_bytes())
            .is_ok_and(|signature| self.mac(message).verify_slice(&signature).is_ok())
    }
}

const LABEL: &[u8] = b"jetsaga-console operator key v1";

fn derive(token: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(token).expect("any key length");
    mac.update(LABEL);
    mac.finalize().into_bytes().into()
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Why a form post is refused before it is read: it came from another
/// site. Browsers send `Sec-Fetch-Site` with every request, and it decides;
/// an older browser's `Origin` must name this host (an opaque origin,
/// `null`, is refused). A request with neither (a script, curl) is judged
/// by its CSRF token alone.
pub fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return (!matches!(site, "same-origin" | "none"))
            .then_some("the form was sent from another site");
    }
    if let Some(origin) = header("origin") {
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if origin_host.is_none() || origin_host != header("host") {
            return Some("the form was sent from another origin");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_token_is_recognised_and_nothing_else() {
        let keys = Keys::new("correct horse battery staple");
        assert!(keys.is_token("correct horse battery staple"));
        assert!(!keys.is_token("correct horse battery stapl"));
        assert!(!keys.is_token(""));
    }

    #[test]
    fn a_session_holds_for_its_lifetime_and_only_under_its_key() {
        let keys = Keys::new("correct horse battery staple");
        let cookie = keys.new_session(NOW);
        let session = keys.session(&cookie, NOW + 60).expect("valid");
        assert!(
            keys.session(&cookie, NOW + SESSION_SECONDS).is_none(),
            "expired"
        );
        assert!(keys.session(&cookie, NOW - 5).is_none(), "from the future");
        assert!(Keys::new("another token, rotated")
            .session(&cookie, NOW)
            .is_none());
        let (signed, _) = cookie.rsplit_once('.').unwrap();
        let (id, _) = signed.split_once('.').unwrap();
        let extended = format!("{id}.{}.{}", NOW + 9999, &cookie[cookie.len() - 64..]);
        assert!(keys.session(&extended, NOW + 10_000).is_none(), "re-dated");
        assert!(keys.session("garbage", NOW).is_none());

        let csrf = keys.csrf(&session);
        assert!(keys.is_csrf(&session, &csrf));
        let other = keys.session(&keys.new_session(NOW), NOW).unwrap();
        assert!(!keys.is_csrf(&other, &csrf), "bound to its session");
        assert!(!keys.is_csrf(&session, "00"));
    }

    #[test]
    fn posts_from_another_site_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "console.example:8085".parse().unwrap());
        assert_eq!(cross_site(&headers), None, "no browser headers");
        headers.insert("origin", "http://console.example:8085".parse().unwrap());
        headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert_eq!(cross_site(&headers), None);
        headers.insert("origin", "http://evil.example".parse().unwrap());
        headers.remove("sec-fetch-site");
        assert!(cross_site(&headers).is_some());
        headers.insert("origin", "http://console.example:8085".parse().unwrap());
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(cross_site(&headers).is_some());
        // A browser that says where the form came from is believed; one
        // that does not must name this origin.
        headers.insert("origin", "null".parse().unwrap());
        headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert_eq!(cross_site(&headers), None);
        headers.remove("sec-fetch-site");
        assert!(cross_site(&headers).is_some());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("a=1; {COOKIE}=abc.1.def; b=2").parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc.1.def"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
