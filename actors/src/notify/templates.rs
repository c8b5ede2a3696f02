//! Email templates in English and Russian. Variables are HTML-escaped in the HTML part.

use keyward_messages::commands::Locale;
use keyward_messages::events::{EmailJob, EmailTemplate};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// (subject, text body, HTML body) for a job.
pub fn render(job: &EmailJob) -> (String, String, String) {
    let link = job.variables.get("link").map(String::as_str).unwrap_or("");
    let (subject, lines, action): (&str, &[&str], Option<&str>) = match (job.template, job.locale) {
        (EmailTemplate::VerifyEmail, Locale::En) => (
            "Confirm your email address",
            &["Welcome! Please confirm your email address to finish creating your account.", "The link is valid for 24 hours. If you did not sign up, ignore this email."],
            Some("Confirm email"),
        ),
        (EmailTemplate::VerifyEmail, Locale::Ru) => (
            "Подтвердите адрес электронной почты",
            &["Добро пожаловать! Подтвердите адрес электронной почты, чтобы завершить регистрацию.", "Ссылка действует 24 часа. Если вы не регистрировались, просто проигнорируйте это письмо."],
            Some("Подтвердить адрес"),
        ),
        (EmailTemplate::AccountExists, Locale::En) => (
            "Someone tried to sign up with your email",
            &["Someone tried to create an account with this email address, but you already have one.", "If it was you, log in or reset your password. If not, you can ignore this email."],
            None,
        ),
        (EmailTemplate::AccountExists, Locale::Ru) => (
            "Кто-то пытался зарегистрироваться с вашим адресом",
            &["Кто-то пытался создать учётную запись с этим адресом, но она у вас уже есть.", "Если это были вы, войдите или сбросьте пароль. Если нет, просто проигнорируйте письмо."],
            None,
        ),
        (EmailTemplate::PasswordReset, Locale::En) => (
            "Reset your password",
            &["We received a request to reset your password. The link is valid for one hour.", "If you did not ask for it, ignore this email: your password stays as it is."],
            Some("Reset password"),
        ),
        (EmailTemplate::PasswordReset, Locale::Ru) => (
            "Сброс пароля",
            &["Мы получили запрос на сброс пароля. Ссылка действует один час.", "Если вы не запрашивали сброс, проигнорируйте письмо: пароль останется прежним."],
            Some("Сбросить пароль"),
        ),
        (EmailTemplate::PasswordChanged, Locale::En) => (
            "Your password was changed",
            &["The password of your account was just changed, and your other sessions were signed out.", "If this was not you, reset your password now."],
            None,
        ),
        (EmailTemplate::PasswordChanged, Locale::Ru) => (
            "Ваш пароль изменён",
            &["Пароль вашей учётной записи только что изменён, остальные сеансы завершены.", "Если это были не вы, немедленно сбросьте пароль."],
            None,
        ),
        (EmailTemplate::Invitation, Locale::En) => (
            "You have been invited",
            &["An administrator created an account for this email address. Choose a password to start using it.", "The link is valid for 7 days. If you did not expect this, ignore this email."],
            Some("Choose a password"),
        ),
        (EmailTemplate::Invitation, Locale::Ru) => (
            "Вас пригласили",
            &["Администратор создал учётную запись для этого адреса. Выберите пароль, чтобы начать ею пользоваться.", "Ссылка действует 7 дней. Если вы не ждали этого письма, просто проигнорируйте его."],
            Some("Выбрать пароль"),
        ),
    };
    let mut text = lines.join("\n\n");
    let mut html = String::from("<!doctype html><html><body style=\"font-family:sans-serif\">");
    for l in lines {
        html.push_str(&format!("<p>{}</p>", escape(l)));
    }
    if let (Some(label), false) = (action, link.is_empty()) {
        text.push_str(&format!("\n\n{label}: {link}\n"));
        html.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>",
            escape(link),
            escape(label)
        ));
    }
    html.push_str("</body></html>");
    (subject.to_owned(), text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verification_mail_carries_its_link_in_both_parts_and_language() {
        let job = EmailJob {
            to: "a@example.com".into(),
            template: EmailTemplate::VerifyEmail,
            locale: Locale::Ru,
            variables: [("link".to_string(), "http://x/v?token=a&b".to_string())].into(),
        };
        let (subject, text, html) = render(&job);
        assert!(subject.contains("Подтвердите"));
        assert!(text.contains("http://x/v?token=a&b"));
        assert!(html.contains("http://x/v?token=a&amp;b"));
    }
}
