//! The node's live inbox streams: who is connected here, and what to push to them. A new
//! in-app item reaches every node as `notification.sent` (on `keyward.broadcast`, with the
//! outbox feed as the backstop), so a user sees it on whichever node holds their stream.
//!
//! Refuses: buffering for a consumer that does not read: a stream whose queue is full is
//! ended (the client reconnects and reads the inbox).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use keyward_messages::events::Envelope;
use keyward_messages::notify::{InboxItem, LiveEvent};
use keyward_messages::UserId;
use keyward_storage::Store;
use uuid::Uuid;

use crate::caches::NodeCache;

/// Events queued per stream before it is ended as too slow.
const QUEUE: usize = 64;
/// Notifications remembered as pushed, so the broadcast and the feed push each once.
const RECENT: usize = 16_384;

#[derive(Default)]
struct State {
    streams: HashMap<UserId, Vec<mpsc::Sender<LiveEvent>>>,
    recent: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl State {
    /// False when `id` was pushed already.
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.recent.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.recent.remove(&old);
            }
        }
        true
    }
}

/// This node's open inbox streams.
pub struct LiveInbox {
    store: Store,
    state: Mutex<State>,
}

impl LiveInbox {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            state: Mutex::new(State::default()),
        }
    }

    /// A new stream for `user`.
    pub fn subscribe(&self, user: UserId) -> mpsc::Receiver<LiveEvent> {
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Ok(mut s) = self.state.lock() {
            let list = s.streams.entry(user).or_default();
            list.retain(|t| !t.is_closed());
            list.push(tx);
        }
        rx
    }

    /// Streams open on this node (closed ones are dropped as they are found).
    pub fn open_streams(&self) -> usize {
        self.state.lock().map_or(0, |s| {
            s.streams
                .values()
                .map(|l| l.iter().filter(|t| !t.is_closed()).count())
                .sum()
        })
    }

    /// Drops every closed stream.
    pub fn prune(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.streams.retain(|_, l| {
                l.retain(|t| !t.is_closed());
                !l.is_empty()
            });
        }
    }

    fn push(&self, user: UserId, event: &LiveEvent) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(list) = s.streams.get_mut(&user) {
                // A full or closed stream is dropped: its client reconnects.
                list.retain_mut(|t| t.try_send(event.clone()).is_ok());
                if list.is_empty() {
                    s.streams.remove(&user);
                }
            }
        }
    }

    /// The item and the unread count after it, read once for every stream of the user.
    async fn deliver(self: Arc<Self>, user: UserId, id: Uuid) {
        let reads = self.store.reads().notices();
        let item = match reads.inbox_item(id).await {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "live inbox: cannot read a new item");
                return;
            }
        };
        let unread = reads.unread_count(user).await.unwrap_or(0);
        let event = LiveEvent::Notification {
            item: InboxItem {
                id: item.id,
                category: item.category,
                title: item.title,
                body: item.body,
                action_url: item.action_url,
                created_at: item.created_at,
                read_at: item.read_at,
            },
            unread,
        };
        self.push(user, &event);
    }
}

/// Applies `notification.sent` of the in-app channel: pushes the new item to the user's
/// streams on this node, once.
pub struct LiveFeed(pub Arc<LiveInbox>);

impl NodeCache for LiveFeed {
    fn apply(&self, env: &Envelope) {
        if env.kind != "notification.sent" || env.data["channel"] != "in_app" {
            return;
        }
        let (Some(user), Some(id)) = (
            env.data["user_id"].as_str().and_then(|u| u.parse().ok()),
            env.data["notification_id"]
                .as_str()
                .and_then(|u| u.parse::<Uuid>().ok()),
        ) else {
            return;
        };
        let user = UserId(user);
        let wanted = self
            .0
            .state
            .lock()
            .is_ok_and(|mut s| s.streams.contains_key(&user) && s.first_time(id));
        if wanted {
            tokio::spawn(self.0.clone().deliver(user, id));
        }
    }

    fn forget_beliefs(&self) {}
}
