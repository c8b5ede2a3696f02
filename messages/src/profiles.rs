//! The profiles context's vocabulary: who may see a profile, who is asking, and (as the context
//! grows) its commands, queries and replies.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::UserId;

/// Who may see a profile beyond its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone, signed in or not.
    Public,
    /// Signed-in users.
    Users,
    /// Only the owner (and admins).
    Private,
}

impl Visibility {
    pub const ALL: [Visibility; 3] = [Visibility::Public, Visibility::Users, Visibility::Private];

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Users => "users",
            Visibility::Private => "private",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new(field, "invalid_visibility", "use public, users or private")
            })
    }
}

/// Who is asking to see profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    User(UserId),
}

impl Viewer {
    /// Whether this viewer may see a profile of `owner` with `visibility` (admins aside).
    pub fn may_see(self, owner: UserId, visibility: Visibility) -> bool {
        match (self, visibility) {
            (_, Visibility::Public) => true,
            (Viewer::User(me), _) if me == owner => true,
            (Viewer::User(_), Visibility::Users) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_decides_who_sees_a_profile() {
        let (owner, other) = (UserId::new(), UserId::new());
        assert!(Viewer::Anonymous.may_see(owner, Visibility::Public));
        assert!(!Viewer::Anonymous.may_see(owner, Visibility::Users));
        assert!(Viewer::User(other).may_see(owner, Visibility::Users));
        assert!(!Viewer::User(other).may_see(owner, Visibility::Private));
        assert!(Viewer::User(owner).may_see(owner, Visibility::Private));
        assert_eq!(
            Visibility::parse("visibility", "friends").unwrap_err().code,
            "invalid_visibility"
        );
    }
}
