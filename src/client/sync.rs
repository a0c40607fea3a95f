//! Optional endpoint auto-sync: refresh the endpoint list from `Cluster/MemberList`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::scheme::{self, Origin};
use super::{Client, Inner, Member, Retry};
use crate::proto::etcdserverpb as pb;

/// The RPC the endpoint list is read from (the same call as `Client::member_list`, sent here
/// directly because the client sits below the `maintenance` module).
const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";

impl Client {
    /// Starts the auto-sync task (once). It holds only a weak reference to the client and is
    /// aborted when the last clone is dropped.
    pub(crate) fn start_auto_sync(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let _ = self
            .inner
            .sync_task
            .get_or_init(|| crate::support::spawn(sync_loop(weak, interval)));
    }

    /// Replaces the endpoint list with the members' client URLs, keeping existing connections
    /// for URLs that stay. Returns whether the list changed.
    pub(crate) async fn sync_endpoints(&self) -> crate::Result<bool> {
        let req = pb::MemberListRequest { linearizable: true };
        let list = self.unary(MEMBER_LIST, Retry::Idempotent, req).await?;
        // The scheme rules for advertised URLs: under TLS (configured, or in use by an
        // endpoint given as https://) every member is dialled with TLS, whatever it
        // advertises and however it spells it.
        let mut rules = self.scheme_rules();
        rules.tls |= self.members().iter().any(|m| !scheme::is_plaintext(&m.url));
        let mut urls: Vec<String> = list
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .filter_map(|m| {
                m.client_ur_ls
                    .iter()
                    .find_map(|u| scheme::dial_url(u, Origin::Advertised, rules).ok())
            })
            .collect();
        urls.sort();
        urls.dedup();
        if urls.is_empty() {
            return Ok(false);
        }
        let old = self.members();
        let mut current: Vec<&str> = old.iter().map(|m| m.url.as_str()).collect();
        current.sort_unstable();
        if current == urls.iter().map(String::as_str).collect::<Vec<_>>() {
            return Ok(false);
        }
        let mut members = Vec::with_capacity(urls.len());
        for url in urls {
            let channel = match old.iter().find(|m| m.url == url) {
                Some(m) => m.channel.clone(),
                None => (self.inner.make_channel)(&url)?,
            };
            members.push(Member { url, channel });
        }
        self.replace_members(members.into());
        Ok(true)
    }
}

async fn sync_loop(client: Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = client.upgrade() else {
            return;
        };
        // A failed sync keeps the current list; the next tick tries again.
        let _ = Client {
            inner,
            namespace: None,
        }
        .sync_endpoints()
        .await;
    }
}
