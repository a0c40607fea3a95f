//! Taking a leadership back after a restart, as Go's `concurrency.ResumeElection` does.
//!
//! A leader process that stops without resigning leaves its key `NAME/<lease hex>` behind,
//! attached to a lease that lives on until its TTL runs out. A new process that adopts the lease
//! (`SessionOptions::with_lease`, which also keeps it alive) and knows the key and its create
//! revision (`Leadership::leader_key`, saved by the old process) is still the leader: nobody
//! else could have won while the key existed. Resuming checks that with one read-only
//! `KV/Txn` and rebuilds the [`Leadership`]; nothing is written.
//!
//! Go's `ResumeElection` trusts its arguments and checks nothing; here a key that is gone,
//! was re-created (another create revision), hangs on another lease, or is not the oldest
//! under the prefix is refused, so a `Leadership` always means "was leading at resume time".

use crate::error::{Error, Result};
use crate::kv::GetOptions;
use crate::lock::queue::range_kvs;
use crate::lock::{key_for, key_gone_error, OwnedKey};
use crate::session::Session;
use crate::txn::{Txn, TxnOp};

use super::leadership::{Flavour, Leadership};
use super::prefix_for;
use super::recipe::first_created;

/// Rebuilds the leadership of `session` in election `name` from its leader `key` and that
/// key's create `revision`, for proclaiming and resigning the way `flavour` does.
///
/// One `KV/Txn` without compares or writes: `Range(key)`, `Range(NAME/, sort create asc,
/// limit 1)`. Fails with [`Error::InvalidArgument`] when `key` is not `NAME/<session lease
/// in hex>` or `revision` is not positive, [`Error::AlreadyHeld`] when the session already
/// campaigns for `name`, [`Error::SessionLost`] when the lease is gone, and [`Error::NotHeld`]
/// when the key no longer exists with that create revision and lease, or when an older
/// candidate leads (the key is then left as it is: a `campaign` with the same session adopts it
/// and waits for its turn).
pub(crate) async fn resume(
    session: &Session,
    name: &[u8],
    key: &[u8],
    revision: i64,
    flavour: Flavour,
) -> Result<Leadership> {
    let prefix = prefix_for(name)?;
    if revision <= 0 {
        return Err(Error::invalid(
            "revision",
            format!("{revision} is not a create revision (they start at 1)"),
        ));
    }
    let expected = key_for(&prefix, session.lease());
    if key != expected.as_slice() {
        return Err(Error::invalid(
            "key",
            format!(
                "`{}` is not the key of lease {:x} in this election (`{}`): resume with a \
                 session on the lease the leader key was written with",
                key.escape_ascii(),
                session.lease(),
                expected.escape_ascii()
            ),
        ));
    }
    let claim = session.claim(name).await?;
    if session.is_lost() {
        return Err(session.lost_error());
    }
    // Until the checks pass, the key is not ours to delete: only the claim is held, so a
    // refusal, a failure or a dropped future here deletes nothing.
    let check = Txn::new().and_then([
        TxnOp::get(expected.clone(), GetOptions::new()),
        TxnOp::get(prefix, first_created()),
    ]);
    let response = session.client().txn(check).await?;
    let mine = range_kvs(&response, 0).first().cloned();
    let oldest = range_kvs(&response, 1)
        .first()
        .map(|kv| (kv.key.clone(), kv.create_revision));
    let Some(kv) = mine.filter(|kv| kv.create_revision == revision && kv.lease == session.lease())
    else {
        drop(claim);
        return Err(key_gone_error(session, &expected).await);
    };
    if oldest != Some((expected.clone(), revision)) {
        return Err(Error::NotHeld {
            key: String::from_utf8_lossy(&expected).into_owned(),
        });
    }
    // Checked: from here the key is ours, and a dropped leadership deletes it (conditionally).
    let mut owned = OwnedKey::new(expected.clone(), claim);
    owned.set_token(revision);
    Ok(Leadership::new(
        name.to_vec(),
        expected,
        revision,
        kv.value,
        session.clone(),
        flavour,
        owned,
    ))
}
