//! Pure rules of the notify context: categories and their default channels, what a user's
//! preferences mean, and who may send.

use std::collections::BTreeMap;

use keyward_config::NotifySettings;
use keyward_messages::notify::{Channel, Preferences, SECURITY};
use keyward_messages::FieldError;

/// The declared categories, each with the channels a send uses when it names none.
#[derive(Clone, Debug)]
pub struct Categories(pub BTreeMap<String, Vec<Channel>>);

impl Categories {
    /// From validated settings (an unknown channel there was refused at start).
    pub fn from_settings(n: &NotifySettings) -> Self {
        Self(
            n.category_list()
                .into_iter()
                .map(|c| {
                    let channels = c
                        .channels
                        .iter()
                        .filter_map(|ch| Channel::parse("", ch).ok())
                        .collect();
                    (c.name, channels)
                })
                .collect(),
        )
    }

    pub fn defaults(&self, category: &str) -> Option<&[Channel]> {
        self.0.get(category).map(Vec::as_slice)
    }

    /// What each category and channel does for a user who chose `stored`: their choice, else
    /// on. `security` is always on.
    pub fn effective(&self, stored: &keyward_storage::Preferences) -> Preferences {
        self.0
            .keys()
            .map(|cat| {
                let per = Channel::ALL
                    .into_iter()
                    .map(|ch| (ch, wants(stored, cat, ch)))
                    .collect();
                (cat.clone(), per)
            })
            .collect()
    }

    /// Checks a preferences update: declared categories only, and `security` never off.
    pub fn check_update(&self, update: &Preferences) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        for (cat, per) in update {
            if !self.0.contains_key(cat) {
                errors.push(FieldError::new(
                    cat,
                    "unknown_category",
                    format!(
                        "the categories are {}",
                        self.0.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
                continue;
            }
            if cat == SECURITY {
                for (ch, on) in per {
                    if !on {
                        errors.push(FieldError::new(
                            &format!("{cat}.{}", ch.as_str()),
                            "security_cannot_be_muted",
                            "security notifications (sign-ins, password changes) always reach you",
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Whether a user who chose `stored` gets `category` on `channel`.
pub fn wants(stored: &keyward_storage::Preferences, category: &str, channel: Channel) -> bool {
    category == SECURITY
        || stored
            .get(category)
            .and_then(|per| per.get(channel.as_str()))
            .copied()
            .unwrap_or(true)
}

/// `stored` with `update` applied over it.
pub fn merged(
    mut stored: keyward_storage::Preferences,
    update: &Preferences,
) -> keyward_storage::Preferences {
    for (cat, per) in update {
        let entry = stored.entry(cat.clone()).or_default();
        for (ch, on) in per {
            entry.insert(ch.as_str().to_owned(), *on);
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyward_config::CategorySettings;

    fn categories() -> Categories {
        Categories::from_settings(&NotifySettings {
            categories: vec![CategorySettings {
                name: "marketing".into(),
                channels: vec!["email".into()],
            }],
            ..NotifySettings::default()
        })
    }

    #[test]
    fn unset_choices_are_on_and_security_is_always_on() {
        let stored = [
            (
                "marketing".to_string(),
                [("email".to_string(), false)].into(),
            ),
            (
                "security".to_string(),
                [("email".to_string(), false)].into(),
            ),
        ]
        .into();
        let eff = categories().effective(&stored);
        assert_eq!(
            eff.keys().collect::<Vec<_>>(),
            ["general", "marketing", "security"]
        );
        assert!(!eff["marketing"][&Channel::Email]);
        assert!(eff["marketing"][&Channel::Sms]);
        assert!(eff["security"][&Channel::Email]);
    }

    #[test]
    fn an_update_may_not_name_unknown_categories_or_mute_security() {
        let c = categories();
        let bad: Preferences = [
            ("nope".to_string(), [(Channel::Email, false)].into()),
            (
                "security".to_string(),
                [(Channel::Sms, false), (Channel::Email, true)].into(),
            ),
        ]
        .into();
        let e = c.check_update(&bad).unwrap_err();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("nope", "unknown_category"),
                ("security.sms", "security_cannot_be_muted")
            ]
        );
        let ok: Preferences = [("marketing".to_string(), [(Channel::Email, false)].into())].into();
        assert!(c.check_update(&ok).is_ok());
        let m = merged(Default::default(), &ok);
        assert!(!wants(&m, "marketing", Channel::Email));
        assert!(wants(&m, "marketing", Channel::InApp));
    }

    #[test]
    fn the_defaults_come_from_the_declaration() {
        let c = categories();
        assert_eq!(c.defaults("marketing"), Some(&[Channel::Email][..]));
        assert_eq!(
            c.defaults("security"),
            Some(&[Channel::Email, Channel::InApp][..])
        );
        assert_eq!(c.defaults("nope"), None);
    }
}
