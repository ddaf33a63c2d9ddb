//! A message that outlives a redirect: a page that fails after the browser arrived with
//! something that must not stay in its address bar (an authorization code) redirects to a clean
//! address, and that page shows the message once. Kept in memory per browser session: it is
//! read within a second, and losing it on a restart loses nothing but the sentence.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an unread message is kept.
const KEPT_FOR: Duration = Duration::from_secs(600);

/// An error for the page: what happened and what to do, and the protocol's side behind
/// "Details".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub message: String,
    pub detail: Option<String>,
}

#[derive(Default)]
pub struct Notices {
    waiting: Mutex<HashMap<[u8; 32], (Instant, Notice)>>,
}

impl Notices {
    /// Keeps `notice` for the session whose id hashes to `session`, replacing an unread one.
    pub fn put(&self, session: [u8; 32], notice: Notice) {
        let mut waiting = self.waiting.lock().expect("notices lock");
        waiting.retain(|_, (at, _)| at.elapsed() < KEPT_FOR);
        waiting.insert(session, (Instant::now(), notice));
    }

    /// The session's waiting notice, once.
    pub fn take(&self, session: &[u8; 32]) -> Option<Notice> {
        let mut waiting = self.waiting.lock().expect("notices lock");
        waiting
            .remove(session)
            .filter(|(at, _)| at.elapsed() < KEPT_FOR)
            .map(|(_, notice)| notice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_shown_once_and_only_to_its_session() {
        let notices = Notices::default();
        let notice = Notice {
            message: "Nothing was connected.".into(),
            detail: Some("invalid_client".into()),
        };
        notices.put([1; 32], notice.clone());
        assert_eq!(notices.take(&[2; 32]), None);
        assert_eq!(notices.take(&[1; 32]), Some(notice));
        assert_eq!(notices.take(&[1; 32]), None);
    }
}
